"""The transformer (bindlib.core.model): causality, positions, the key mask, embeddings, and its
hook points under plain forward hooks and under nnsight 0.8.1."""
from __future__ import annotations

import pytest
import torch

from bindlib.core.model import ModelConfig, Transformer, answer_logits, build_model
from bindlib.core.task import NOISE, TaskConfig, sample_batch

TASK = TaskConfig()
V = TASK.vocab.size
POS = ("rope", "learned", "none")



def make_model(pos="rope", seed=0, scale=0.2, n_layers=2, **kw) -> Transformer:
    """A tiny model whose weights are large enough that every dependency shows in the logits."""
    torch.manual_seed(seed)
    m = Transformer(ModelConfig(vocab_size=V, n_layers=n_layers, d_model=32, n_heads=2, d_ff=64,
                                pos_encoding=pos, max_len=256, **kw))
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() >= 2:
                p.normal_(0, scale)
    return m.eval()


def rand_tokens(B=2, L=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(8, V, (B, L), generator=g)


def capture(model, names):
    """Register forward hooks that store the output of each named submodule; return (store, handles)."""
    store, handles = {}, []
    mods = dict(model.named_modules())
    for name in names:
        handles.append(mods[name].register_forward_hook(lambda m, i, o, name=name: store.__setitem__(name, o.detach().clone())))
    return store, handles


def max_diff(a, b):
    return (a - b).abs().max().item()


# ---------------------------------------------------------------- causality
@pytest.mark.parametrize("pos", POS)
def test_causality(pos):
    m = make_model(pos)
    toks = rand_tokens()
    with torch.no_grad():
        base = m(toks)
        for t in (0, 5, 13, toks.shape[1] - 1):
            changed = toks.clone()
            changed[:, t] = (changed[:, t] - 8 + 1) % (V - 8) + 8  # another non-special token
            out = m(changed)
            torch.testing.assert_close(out[:, :t], base[:, :t], rtol=0, atol=1e-6)
            assert max_diff(out[:, t], base[:, t]) > 1e-3, "positive control: the changed position itself changes"
            if t + 1 < toks.shape[1]:
                assert max_diff(out[:, t + 1:], base[:, t + 1:]) > 1e-3, "positive control: later positions change"


@pytest.mark.parametrize("pos", ["rope", "learned"])
def test_causality_of_position_ids(pos):
    m = make_model(pos)
    toks = rand_tokens()
    L = toks.shape[1]
    pid = torch.arange(L).expand(2, L).clone()
    with torch.no_grad():
        base = m(toks, position_ids=pid)
        pid2 = pid.clone()
        pid2[:, 10:] += 40
        out = m(toks, position_ids=pid2)
    torch.testing.assert_close(out[:, :10], base[:, :10], rtol=0, atol=1e-6)
    assert max_diff(out[:, 10:], base[:, 10:]) > 1e-3


# ---------------------------------------------------------------- RoPE
def _scores(m, toks, pid, key_mask=None):
    names = [f"blocks.{l}.attn.hook_scores" for l in range(len(m.blocks))]
    store, handles = capture(m, names)
    try:
        with torch.no_grad():
            logits = m(toks, position_ids=pid, key_mask=key_mask)
    finally:
        for h in handles:
            h.remove()
    return [store[n] for n in names], logits


def test_rope_scores_invariant_to_shared_shift():
    m = make_model("rope", n_layers=3)
    b = sample_batch(TASK, 4, seed=0, split="id")
    pid = b.position_ids
    s0, l0 = _scores(m, b.tokens, pid, b.key_mask)
    s1, l1 = _scores(m, b.tokens, pid + 37, b.key_mask)
    assert len(s0) == 3 and s0[0].shape == (4, 2, b.tokens.shape[1], b.tokens.shape[1])
    for a, c in zip(s0, s1):
        torch.testing.assert_close(c, a, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(l1, l0, rtol=1e-4, atol=1e-4)
    # controls: stretching the positions changes RoPE scores; shifting changes learned-position scores
    s2, _ = _scores(m, b.tokens, pid * 2, b.key_mask)
    assert max_diff(s2[0], s0[0]) > 1e-2
    ml = make_model("learned")
    a0, _ = _scores(ml, b.tokens, pid, b.key_mask)
    a1, _ = _scores(ml, b.tokens, pid + 37, b.key_mask)
    assert max_diff(a0[0], a1[0]) > 1e-2


def test_nope_ignores_position_ids():
    m = make_model("none")
    toks = rand_tokens()
    L = toks.shape[1]
    with torch.no_grad():
        a = m(toks)
        b = m(toks, position_ids=torch.randperm(L).expand(2, L))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_learned_positions_beyond_table_raise():
    m = make_model("learned")
    toks = rand_tokens(L=8)
    with pytest.raises(ValueError, match=r"reaches position 300, but the model takes positions 0..255"):
        m(toks, position_ids=torch.arange(8).expand(2, 8) + 293)


# ---------------------------------------------------------------- key mask
@pytest.mark.parametrize("pos", POS)
def test_masked_token_cannot_influence_any_other_logit(pos):
    m = make_model(pos)
    toks = rand_tokens()
    L = toks.shape[1]
    i = 6
    mask = torch.ones(2, L, dtype=torch.bool)
    mask[:, i] = False
    changed = toks.clone()
    changed[:, i] = NOISE
    other = torch.arange(L) != i
    with torch.no_grad():
        a = m(toks, key_mask=mask)
        b = m(changed, key_mask=mask)
        c = m(changed, key_mask=torch.ones_like(mask))
    torch.testing.assert_close(b[:, other], a[:, other], rtol=0, atol=1e-6)
    assert max_diff(c[:, i + 1:], a[:, i + 1:]) > 1e-3, "positive control: an attendable token does influence"


@pytest.mark.parametrize("pos", POS)
def test_inserted_noise_tokens_are_invisible(pos):
    """Noise tokens with key_mask False, inserted anywhere after BOS with their own position ids,
    leave every real token's logits as they were (real tokens keep their position ids)."""
    m = make_model(pos)
    b = sample_batch(TASK, 3, seed=1, n=5)
    L = b.tokens.shape[1]
    insert_at = [2, 3, 9, 15]  # indices (in the noisy sequence) of the noise tokens
    real_idx = [j for j in range(L + len(insert_at)) if j not in insert_at]
    toks = torch.full((3, L + len(insert_at)), NOISE)
    toks[:, real_idx] = b.tokens
    pid = torch.zeros_like(toks)
    pid[:, real_idx] = b.position_ids
    pid[:, insert_at] = torch.tensor([1, 5, 2, 60])  # arbitrary
    mask = torch.zeros_like(toks, dtype=torch.bool)
    mask[:, real_idx] = b.key_mask
    with torch.no_grad():
        clean = m(**b.model_inputs())
        noisy = m(toks, position_ids=pid, key_mask=mask)
    torch.testing.assert_close(noisy[:, real_idx], clean, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- inputs_embeds
@pytest.mark.parametrize("pos", ["rope", "learned"])
def test_inputs_embeds_replace_only_where_mask_true(pos):
    m = make_model(pos)
    toks = rand_tokens()
    B, L = toks.shape
    pid = torch.arange(L).expand(B, L)
    emb = torch.randn(B, L, 32, generator=torch.Generator().manual_seed(3))
    emask = torch.zeros(B, L, dtype=torch.bool)
    emask[0, 3:9] = True
    emask[1, [0, 17]] = True
    store, handles = capture(m, ["embed.hook_out"])
    with torch.no_grad():
        logits = m(toks, position_ids=pid, inputs_embeds=emb, embeds_mask=emask)
        got = store["embed.hook_out"]
        # changing the tokens under the mask changes nothing: they are not looked up
        other = toks.clone()
        other[emask] = 8
        logits2 = m(other, position_ids=pid, inputs_embeds=emb, embeds_mask=emask)
    for h in handles:
        h.remove()
    pos_part = m.embed.pos(pid) if pos == "learned" else torch.zeros(B, L, 32)
    want = torch.where(emask[..., None], emb, m.embed.tok(toks)) + pos_part
    torch.testing.assert_close(got, want.detach(), rtol=0, atol=1e-6)
    torch.testing.assert_close(logits2, logits, rtol=0, atol=1e-6)
    # an all-False mask is the plain token path
    with torch.no_grad():
        plain = m(toks, position_ids=pid)
        none = m(toks, position_ids=pid, inputs_embeds=emb, embeds_mask=torch.zeros_like(emask))
    torch.testing.assert_close(none, plain, rtol=0, atol=0)


def test_answer_logits_reads_the_query_position():
    m = make_model()
    b = sample_batch(TASK, 5, seed=2, split="id")
    with torch.no_grad():
        full = m(**b.model_inputs())
        ans = answer_logits(m, b)
    assert ans.shape == (5, V)
    torch.testing.assert_close(ans, full[torch.arange(5), b.query_pos], rtol=0, atol=0)


# ---------------------------------------------------------------- nnsight 0.8.1
@pytest.fixture(scope="module")
def nnsight_model():
    nnsight = pytest.importorskip("nnsight")
    from nnsight import NNsight

    assert nnsight.__version__ == "0.8.1", "bindlib pins nnsight==0.8.1; re-check these tests on upgrade"
    m = make_model("rope", seed=1, n_layers=3)
    return m, NNsight(m)


@pytest.fixture(scope="module")
def pair():
    """A base and a source prompt with the same N (hence the same length, positions and key mask)."""
    b = sample_batch(TASK, 2, seed=21, n=5)
    assert torch.equal(b.key_mask[0], b.key_mask[1])
    return b


def test_nnsight_reads_hook_points(nnsight_model, pair):
    m, nm = nnsight_model
    b = pair
    with torch.no_grad():
        ref = m(**b.model_inputs())
    # Only values marked .save() leave the trace block; lists made outside it are filled in place.
    resid, patterns = [], []
    with torch.no_grad(), nm.trace(b.tokens, position_ids=b.position_ids, key_mask=b.key_mask):
        emb = nm.embed.hook_out.output.save()
        for l in range(3):  # hook points must be read in execution order
            resid.append(nm.blocks[l].hook_resid_pre.output.save())
            patterns.append(nm.blocks[l].attn.hook_pattern.output.save())
        final = nm.hook_resid_final.output.save()
        out = nm.output.save()
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    torch.testing.assert_close(resid[0], emb, rtol=0, atol=0)
    L = b.tokens.shape[1]
    assert resid[2].shape == (2, L, 32) and final.shape == (2, L, 32)
    allowed = torch.ones(L, L, dtype=torch.bool).tril()[None, None] & b.key_mask[:, None, None, :]
    for p in patterns:
        assert p.shape == (2, 2, L, L)
        torch.testing.assert_close(p.sum(-1), torch.ones(2, 2, L), rtol=0, atol=1e-5)
        assert (p[~allowed.expand_as(p)] == 0).all(), "no weight on future or masked keys"


def test_nnsight_patch_one_position_changes_logits(nnsight_model, pair):
    m, nm = nnsight_model
    b, p, layer = pair, 7, 1
    with torch.no_grad():
        ref = m(**b.model_inputs())
    with torch.no_grad(), nm.trace(b.tokens, position_ids=b.position_ids, key_mask=b.key_mask):
        nm.blocks[layer].hook_resid_pre.output[0, p] = torch.randn(32, generator=torch.Generator().manual_seed(0))
        out = nm.output.save()
    torch.testing.assert_close(out[0, :p], ref[0, :p], rtol=0, atol=1e-6)  # earlier positions untouched
    assert max_diff(out[0, p], ref[0, p]) > 1e-2
    assert max_diff(out[0, p + 1:], ref[0, p + 1:]) > 1e-3  # later positions read it through attention
    torch.testing.assert_close(out[1], ref[1], rtol=0, atol=1e-6)  # the other row is untouched


def test_nnsight_identity_patch_changes_nothing(nnsight_model, pair):
    m, nm = nnsight_model
    b = pair
    last = int(b.query_pos[0])
    clean_resid = []
    with torch.no_grad(), nm.trace(b.tokens, position_ids=b.position_ids, key_mask=b.key_mask):
        for l in range(3):
            clean_resid.append(nm.blocks[l].hook_resid_pre.output[0].clone().save())
        clean = nm.output.save()
    # patch the base row, at every layer, with its own clean values: at the last token, then everywhere
    for where in (last, slice(None)):
        with torch.no_grad(), nm.trace(b.tokens, position_ids=b.position_ids, key_mask=b.key_mask):
            for l in range(3):
                nm.blocks[l].hook_resid_pre.output[0, where] = clean_resid[l][where]
            out = nm.output.save()
        torch.testing.assert_close(out, clean, rtol=0, atol=0)
    # source = base: patching from an identical row changes nothing either
    twin = b.select([0, 0])
    with torch.no_grad(), nm.trace(twin.tokens, position_ids=twin.position_ids, key_mask=twin.key_mask):
        for l in range(3):
            r = nm.blocks[l].hook_resid_pre.output
            r[0, last] = r[1, last]
        out = nm.output.save()
    torch.testing.assert_close(out[0], clean[0], rtol=0, atol=1e-6)


def test_nnsight_full_patch_at_layer0_reproduces_source(nnsight_model, pair):
    m, nm = nnsight_model
    b = pair
    with torch.no_grad():
        ref = m(**b.model_inputs())
    assert max_diff(ref[0], ref[1]) > 1e-2, "base and source must differ for this test to mean anything"
    with torch.no_grad(), nm.trace(b.tokens, position_ids=b.position_ids, key_mask=b.key_mask):
        r = nm.blocks[0].hook_resid_pre.output
        r[0] = r[1]  # every position, from the source row into the base row
        out = nm.output.save()
    torch.testing.assert_close(out[0], ref[1], rtol=0, atol=1e-6)
    torch.testing.assert_close(out[1], ref[1], rtol=0, atol=1e-6)


def test_nnsight_last_token_patch_after_last_block_copies_the_answer(nnsight_model, pair):
    m, nm = nnsight_model
    b = pair
    last = int(b.query_pos[0])
    with torch.no_grad():
        ref = m(**b.model_inputs())
    with torch.no_grad(), nm.trace(b.tokens, position_ids=b.position_ids, key_mask=b.key_mask):
        r = nm.blocks[2].hook_resid_post.output
        r[0, last] = r[1, last]
        out = nm.output.save()
    torch.testing.assert_close(out[0, last], ref[1, last], rtol=0, atol=1e-6)
    torch.testing.assert_close(out[0, :last], ref[0, :last], rtol=0, atol=1e-6)


# ---------------------------------------------------------------- config
def test_unknown_pos_encoding():
    with pytest.raises(ValueError, match=r"unknown pos_encoding 'alibi'.*rope.*learned.*none"):
        ModelConfig(vocab_size=10, pos_encoding="alibi")


def test_d_model_not_divisible_by_heads():
    with pytest.raises(ValueError, match=r"d_model=30 must be divisible by n_heads=4"):
        ModelConfig(vocab_size=10, d_model=30, n_heads=4)


def test_rope_needs_even_head_size():
    with pytest.raises(ValueError, match=r"RoPE needs an even head size.*3"):
        ModelConfig(vocab_size=10, d_model=6, n_heads=2)


def test_nonpositive_sizes():
    with pytest.raises(ValueError, match=r"n_layers=0 must be >= 1"):
        ModelConfig(vocab_size=10, n_layers=0)


def test_build_model_unknown_profile():
    with pytest.raises(ValueError, match=r"unknown profile 'huge'.*cpu.*paper"):
        build_model(V, profile="huge")


def test_build_model_profiles():
    from bindlib.core.model import PROFILES

    m = build_model(V, profile="cpu", n_layers=1)  # overrides win, the rest comes from the profile
    assert m.cfg.n_layers == 1 and m.cfg.d_model == PROFILES["cpu"]["d_model"] and m.cfg.vocab_size == V


# ---------------------------------------------------------------- packed queries (packing.pack_queries)
@pytest.mark.parametrize("pos", POS)
def test_packed_queries_equal_single_query_prompts(pos):
    """Each packed (marker, query) pair computes what the lone single-query prompt computes."""
    from bindlib.core import task as T
    from bindlib.core.packing import pack_queries

    m = make_model(pos)
    b = sample_batch(TASK, 3, seed=4, split="id", offset=1)
    pk = pack_queries(b)
    with torch.no_grad():
        packed = m(**pk.model_inputs())
    names = {T.QUE: "QUE", T.QSHAPE: "QSHAPE"}
    checked = 0
    for r in range(3):
        body = b.tokens[r, : int(b.query_pos[r]) - 1]
        for k in range(pk.readout_pos.shape[1]):
            if int(pk.target[r, k]) < 0:
                continue
            rp = int(pk.readout_pos[r, k])
            single = torch.cat([body, pk.tokens[r, rp - 1: rp + 1]])[None]
            with torch.no_grad():
                lone = m(single)[0, -1]
            torch.testing.assert_close(packed[r, rp], lone, rtol=1e-5, atol=1e-5)
            # and the packed target is that prompt's answer
            kind = T.QUERY_KINDS[int(pk.kind[r, k])]
            marker, query = int(single[0, -2]), int(single[0, -1])
            assert names[marker] == ("QSHAPE" if kind == "color_to_shape" else "QUE")
            slot = (b.shapes[r] if kind == "shape_to_item" else b.colors[r]).tolist().index(query)
            want = b.shapes[r, slot] if kind == "color_to_shape" else b.items[r, slot]
            assert int(pk.target[r, k]) == int(want)
            checked += 1
    assert checked == len(T.QUERY_KINDS) * int(b.n_objects.sum()), "every object under every kind"
