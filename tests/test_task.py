"""The prompt generator (bindlib.core.task): every prompt is well formed and its target is right.

The targets are checked against an independent parser/solver written here, which reads
only token ids and the vocabulary layout (specials, then colours, shapes, items).
"""
from __future__ import annotations

import pytest
import torch

from bindlib.core import task as T
from bindlib.core.task import TaskConfig, Vocab, sample_batch

TASK = TaskConfig()  # 16 colours, 16 shapes, 32 items; ID 2..8, OOD 9..16
ORDERS = ("shuffled", "declared", "reversed")



# ---------------------------------------------------------------- independent solver
def token_class(t: int, vocab: Vocab) -> str:
    n_special = 8  # PAD BOS CTX_END QUE QSHAPE NOISE IMG FILL
    if t < n_special:
        return "special"
    t -= n_special
    if t < vocab.n_colors:
        return "color"
    t -= vocab.n_colors
    if t < vocab.n_shapes:
        return "shape"
    t -= vocab.n_shapes
    if t < vocab.n_items:
        return "item"
    raise AssertionError(f"token id out of vocabulary: {t}")


def parse_prompt(row, vocab: Vocab) -> dict:
    """Parse one right-padded prompt; assert it follows the grammar; return its parts with positions."""
    toks = [int(t) for t in (row.tolist() if torch.is_tensor(row) else row)]
    n_real = len(toks)
    while n_real and toks[n_real - 1] == T.PAD:
        n_real -= 1
    toks = toks[:n_real]
    assert T.PAD not in toks, "PAD inside a prompt"
    assert toks[0] == T.BOS
    i, n_fill = 1, 0
    while toks[i] == T.FILL:
        i, n_fill = i + 1, n_fill + 1
    decl = []  # (colour, shape, colour_pos, shape_pos)
    while toks[i] != T.CTX_END:
        c, s = toks[i], toks[i + 1]
        assert token_class(c, vocab) == "color" and token_class(s, vocab) == "shape", (i, toks)
        decl.append((c, s, i, i + 1))
        i += 2
    ctx_end = i
    i += 1
    assoc = []  # (shape, item, shape_pos, item_pos)
    while toks[i] not in (T.QUE, T.QSHAPE):
        s, it = toks[i], toks[i + 1]
        assert token_class(s, vocab) == "shape" and token_class(it, vocab) == "item", (i, toks)
        assoc.append((s, it, i, i + 1))
        i += 2
    marker, query = toks[i], toks[i + 1]
    assert i + 2 == n_real, "the query must be the last real token"
    return dict(n_fill=n_fill, decl=decl, assoc=assoc, ctx_end=ctx_end, marker=marker, query=query,
                query_pos=i + 1, n_real=n_real)


def solve(p: dict) -> int:
    """The answer of a parsed prompt, by its query marker and query token."""
    color_to_shape = {c: s for c, s, _, _ in p["decl"]}
    shape_to_item = {s: it for s, it, _, _ in p["assoc"]}
    if p["marker"] == T.QSHAPE:  # colour -> shape
        return color_to_shape[p["query"]]
    if p["query"] in shape_to_item:  # shape -> item
        return shape_to_item[p["query"]]
    return shape_to_item[color_to_shape[p["query"]]]  # colour -> shape -> item


def check_batch(b, vocab: Vocab, *, order: str = "shuffled", offset: int = 0, kind: str = "two_hop"):
    B, L = b.tokens.shape
    assert b.position_ids.shape == b.key_mask.shape == (B, L)
    assert torch.equal(b.position_ids, torch.arange(L).expand(B, L))
    # key mask covers exactly the real tokens, which are a prefix ending at query_pos
    assert torch.equal(b.key_mask, b.tokens != T.PAD)
    assert torch.equal(b.key_mask, torch.arange(L)[None, :] <= b.query_pos[:, None])
    assert b.query_kind == [kind] * B
    f = {k: v.tolist() for k, v in b.__dict__.items() if torch.is_tensor(v)}  # plain lists: fast to check
    for r in range(B):
        toks = f["tokens"][r]
        p = parse_prompt(toks, vocab)
        n = f["n_objects"][r]
        decl, assoc = p["decl"], p["assoc"]
        # structure
        assert p["n_fill"] == offset
        assert len(decl) == len(assoc) == n
        assert len({c for c, *_ in decl}) == n and len({s for _, s, *_ in decl}) == n
        assert len({it for _, it, *_ in assoc}) == n
        assert sorted(s for s, *_ in assoc) == sorted(s for _, s, *_ in decl), "every declared shape gets one item"
        assert p["query_pos"] == f["query_pos"][r]
        assert p["marker"] == (T.QSHAPE if kind == "color_to_shape" else T.QUE)
        # the target, from the independent solver
        target = f["target"][r]
        assert target == solve(p)
        assert token_class(target, vocab) == ("shape" if kind == "color_to_shape" else "item")
        # association order
        decl_shapes = [s for _, s, *_ in decl]
        assoc_shapes = [s for s, *_ in assoc]
        if order == "declared":
            assert assoc_shapes == decl_shapes
        elif order == "reversed":
            assert assoc_shapes == decl_shapes[::-1]
        # object-indexed fields, in declaration order, padded with -1
        shape_to_item = {s: it for s, it, _, _ in assoc}
        assoc_pos = {s: (sp, ip) for s, _, sp, ip in assoc}
        colors, shapes, items = f["colors"][r], f["shapes"][r], f["items"][r]
        cpos, spos, aspos, aipos = f["color_pos"][r], f["shape_pos"][r], f["assoc_shape_pos"][r], f["assoc_item_pos"][r]
        for k in range(n):
            c, s, cp, sp = decl[k]
            assert (colors[k], shapes[k], items[k]) == (c, s, shape_to_item[s])
            assert (cpos[k], spos[k]) == (cp, sp)
            assert (aspos[k], aipos[k]) == assoc_pos[s]
            # the positions point at the right tokens
            assert toks[cpos[k]] == colors[k] and toks[spos[k]] == shapes[k]
            assert toks[aspos[k]] == shapes[k] and toks[aipos[k]] == items[k]
        for name in ("colors", "shapes", "items", "color_pos", "shape_pos", "assoc_shape_pos", "assoc_item_pos"):
            assert all(x == -1 for x in f[name][r][n:]), name
        # the query names the queried slot's object
        q = f["query_slot"][r]
        assert 0 <= q < n
        assert p["query"] == (shapes[q] if kind == "shape_to_item" else colors[q])


# ---------------------------------------------------------------- targets and positions
@pytest.mark.parametrize("offset", [0, 3])
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("n", range(1, 17))
def test_every_n_order_offset_is_well_formed_and_correct(n, order, offset):
    b = sample_batch(TASK, 24, seed=100 + n, n=n, association_order=order, offset=offset)
    assert (b.n_objects == n).all()
    assert b.tokens.shape[1] == T.prompt_length(n, offset)
    check_batch(b, TASK.vocab, order=order, offset=offset)


@pytest.mark.parametrize("offset", [0, 3])
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("split", ["id", "ood"])
def test_every_split_is_well_formed_and_correct(split, order, offset):
    b = sample_batch(TASK, 48, seed=7, split=split, association_order=order, offset=offset)
    lo, hi = TASK.split_range(split)
    assert ((b.n_objects >= lo) & (b.n_objects <= hi)).all()
    assert b.meta["split"] == split and b.meta["association_order"] == order and b.meta["offset"] == offset
    check_batch(b, TASK.vocab, order=order, offset=offset)


def test_shuffled_order_is_not_the_declared_order():
    b = sample_batch(TASK, 64, seed=3, n=6, association_order="shuffled")
    same = 0
    for r in range(len(b)):
        p = parse_prompt(b.tokens[r], TASK.vocab)
        same += [s for s, *_ in p["assoc"]] == [s for _, s, *_ in p["decl"]]
    assert same < 8, "associations should be shuffled relative to the declarations"


def test_shared_solver_agrees_with_independent_solver():
    b = sample_batch(TASK, 64, seed=11, split="ood", offset=2)
    for r in range(len(b)):
        assert T.answer_from_tokens(b.tokens[r].tolist(), TASK.vocab) == int(b.target[r])


@pytest.mark.parametrize("kind", ["color_to_shape", "shape_to_item"])
@pytest.mark.parametrize("order", ORDERS)
def test_one_hop_query_kinds(kind, order):
    b = sample_batch(TASK, 48, seed=5, split="id", association_order=order, query_kind=kind, offset=1)
    check_batch(b, TASK.vocab, order=order, offset=1, kind=kind)
    r = torch.arange(len(b))
    if kind == "color_to_shape":
        assert (b.tokens[r, b.query_pos - 1] == T.QSHAPE).all()
        assert torch.equal(b.target, b.shapes[r, b.query_slot])
    else:
        assert (b.tokens[r, b.query_pos - 1] == T.QUE).all()
        assert torch.equal(b.tokens[r, b.query_pos], b.shapes[r, b.query_slot])
        assert torch.equal(b.target, b.items[r, b.query_slot])


def test_small_and_large_vocabularies():
    small = TaskConfig(n_colors=5, n_shapes=6, n_items=7, id_range=(1, 3), ood_range=(4, 5))
    check_batch(sample_batch(small, 32, seed=1, split="ood"), small.vocab)
    big = TaskConfig(n_colors=216, n_shapes=216, n_items=32)
    b = sample_batch(big, 32, seed=1, n=(20, 32))
    check_batch(b, big.vocab)
    assert int(b.colors.max()) >= big.vocab.color_offset + 32, "colours come from the whole range"


# ---------------------------------------------------------------- seeds and splits
def _fields(b):
    return {k: v for k, v in b.__dict__.items() if torch.is_tensor(v)}


def test_same_seed_same_batch_different_seed_differs():
    a = sample_batch(TASK, 32, seed=42, split="ood", association_order="shuffled", offset=2)
    b = sample_batch(TASK, 32, seed=42, split="ood", association_order="shuffled", offset=2)
    c = sample_batch(TASK, 32, seed=43, split="ood", association_order="shuffled", offset=2)
    for k, v in _fields(a).items():
        assert torch.equal(v, _fields(b)[k]), k
    assert a.tokens.shape != c.tokens.shape or not torch.equal(a.tokens, c.tokens)
    assert not torch.equal(a.target, c.target) or not torch.equal(a.n_objects, c.n_objects)


def test_explicit_generator_matches_seed():
    a = sample_batch(TASK, 16, seed=9)
    g = torch.Generator().manual_seed(9)
    b = sample_batch(TASK, 16, generator=g)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.target, b.target)


def test_id_and_ood_never_share_an_n():
    id_ns, ood_ns = set(), set()
    for seed in range(20):
        id_ns |= set(sample_batch(TASK, 128, seed=seed, split="id").n_objects.tolist())
        ood_ns |= set(sample_batch(TASK, 128, seed=seed, split="ood").n_objects.tolist())
    assert not id_ns & ood_ns
    assert id_ns == set(range(2, 9))  # every ID N is drawn
    assert ood_ns == set(range(9, 17))


def test_query_slot_uniform_and_in_range():
    n, B = 8, 4000
    b = sample_batch(TASK, B, seed=0, n=n)
    counts = torch.bincount(b.query_slot, minlength=n)
    assert counts.numel() == n
    expected, sd = B / n, (B * (1 / n) * (1 - 1 / n)) ** 0.5
    assert ((counts - expected).abs() < 5 * sd).all(), counts
    # with a varying N: always a real object, and every slot appears for every N
    b = sample_batch(TASK, 4000, seed=1, split="ood")
    assert ((b.query_slot >= 0) & (b.query_slot < b.n_objects)).all()
    for m in range(9, 17):
        assert set(b.query_slot[b.n_objects == m].tolist()) == set(range(m))


# ---------------------------------------------------------------- decode and Batch helpers
def test_decode_is_readable():
    b = sample_batch(TASK, 3, seed=2, n=4, offset=2)
    names = TASK.vocab.names()
    for i in range(3):
        text = b.decode(i)
        item = names[int(b.target[i])]
        assert text.endswith("  ->  " + item)
        words = text.split()
        assert words[0] == "BOS" and words.count("FILL") == 2
        assert "CTX_END" in words and "QUE" in words and "PAD" not in words
        assert len(words) == int(b.query_pos[i]) + 1 + 2  # every prompt token, "->", the answer
        assert item in T._ITEM_WORDS
        # colours read as #rrggbb, every other word is a name
        assert all(w.startswith("#") and len(w) == 7 for w in words[3:11:2])


def test_vocab_layout_and_names():
    v = TASK.vocab
    assert (v.color_offset, v.shape_offset, v.item_offset, v.size) == (8, 24, 40, 72)
    names = v.names()
    assert len(names) == v.size == len(set(names)), "names are unique"
    assert len(set(T.cube_colors())) == 216
    assert len({s["name"] for s in T.shape_family()}) == 216


def test_select_keeps_rows_consistent():
    b = sample_batch(TASK, 10, seed=4, split="id")
    s = b.select([7, 2])
    assert len(s) == 2
    assert torch.equal(s.tokens, b.tokens[[7, 2]]) and torch.equal(s.target, b.target[[7, 2]])
    check_batch(s, TASK.vocab)


# ---------------------------------------------------------------- bad input
def test_n_above_vocabulary_allows():
    with pytest.raises(ValueError, match=r"N=20 .*at most 16.*1\.\.16"):
        sample_batch(TASK, 4, n=20)


def test_n_range_above_vocabulary_allows():
    with pytest.raises(ValueError, match=r"N=17 .*at most 16"):
        sample_batch(TASK, 4, n=(9, 17))


def test_n_below_one():
    with pytest.raises(ValueError, match=r"N=0 is too small.*allowed 1\.\.16"):
        sample_batch(TASK, 4, n=0)


def test_empty_n_range():
    with pytest.raises(ValueError, match=r"empty range 5\.\.3"):
        sample_batch(TASK, 4, n=(5, 3))


def test_unknown_split():
    with pytest.raises(ValueError, match=r"unknown split 'test'.*'id' and 'ood'"):
        sample_batch(TASK, 4, split="test")


def test_unknown_split_with_explicit_n():
    with pytest.raises(ValueError, match=r"unknown split 'test'"):
        sample_batch(TASK, 4, split="test", n=3)


def test_unknown_association_order():
    with pytest.raises(ValueError, match=r"unknown association_order 'sorted'.*shuffled.*declared.*reversed"):
        sample_batch(TASK, 4, association_order="sorted")


def test_unknown_query_kind():
    with pytest.raises(ValueError, match=r"unknown query_kind 'three_hop'.*two_hop.*color_to_shape.*shape_to_item"):
        sample_batch(TASK, 4, query_kind="three_hop")


def test_too_many_colours():
    with pytest.raises(ValueError, match=r"n_colors=217 is outside the allowed range 1\.\.216"):
        TaskConfig(n_colors=217)


def test_too_many_shapes():
    with pytest.raises(ValueError, match=r"n_shapes=300 is outside the allowed range 1\.\.216"):
        Vocab(n_shapes=300)


def test_negative_offset():
    with pytest.raises(ValueError, match=r"offset=-1 must be >= 0"):
        sample_batch(TASK, 4, offset=-1)


def test_bad_batch_size():
    with pytest.raises(ValueError, match=r"batch_size=0 must be >= 1"):
        sample_batch(TASK, 0)


def test_task_config_range_beyond_vocabulary():
    with pytest.raises(ValueError, match=r"ood_range: N=16 needs 16 distinct.*at most 8"):
        TaskConfig(n_colors=8)
