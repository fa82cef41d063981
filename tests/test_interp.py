"""Interpretability measurements (bindlib.interp) on known answers: identity controls, agreement of the
fast sweep with the per-pair loop, and hand-wired models whose binding mechanism is known by construction."""
from __future__ import annotations

import json

import pytest
import torch

from bindlib import interp as I
from bindlib.core.model import ModelConfig, Transformer
from bindlib.core.task import PAD, TaskConfig, answer_from_tokens, sample_batch

pytest.importorskip("nnsight")

TASK = TaskConfig()
V = TASK.vocab.size
NMAX = TASK.id_range[1]


def tiny_model(seed=0, n_layers=2, pos="rope", scale=0.2) -> Transformer:
    """Random weights large enough that every dependency shows in the logits."""
    torch.manual_seed(seed)
    m = Transformer(ModelConfig(vocab_size=V, n_layers=n_layers, d_model=32, n_heads=2, d_ff=64, pos_encoding=pos))
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() >= 2:
                p.normal_(0, scale)
    return m.eval()


@pytest.fixture(scope="module")
def model():
    return tiny_model(n_layers=3)


@pytest.fixture(scope="module")
def pairs():
    return I.make_pairs(TASK, 24, seed=3)


@pytest.fixture(scope="module", params=["positional", "symbolic"])
def toy(request):
    """A hand-wired model (see ToyBindingModel) and pairs it answers correctly on both prompts."""
    m = I.ToyBindingModel(TASK.vocab, NMAX, request.param)
    return request.param, m, I.make_pairs(TASK, 48, seed=5, association_order="declared", model=m)


def close(a, b, atol=1e-5):
    torch.testing.assert_close(a, b, rtol=0, atol=atol)


# ---------------------------------------------------------------- prompts and pairs
@pytest.mark.parametrize("order,offset", [("shuffled", 0), ("declared", 3), ("reversed", 0)])
def test_build_prompts_reproduces_sample_batch(order, offset):
    b = sample_batch(TASK, 16, seed=7, split="id", association_order=order, offset=offset)
    re = I.build_prompts(TASK.vocab, b.colors, b.shapes, b.items, I.association_lines(b), b.query_slot,
                         b.n_objects, offset)
    for k, v in b.__dict__.items():
        if torch.is_tensor(v):
            assert torch.equal(getattr(re, k), v), k
    assert torch.equal(I.requery(b, 1).query_slot, torch.ones(16, dtype=torch.long))


def test_pairs_design(pairs):
    base, src = pairs.base, pairs.source
    n = base.n_objects
    valid = torch.arange(NMAX)[None] < n[:, None]
    # same objects, same length and format: only the content of object tokens moves
    for k in ("position_ids", "key_mask", "query_pos", "n_objects", "color_pos", "shape_pos"):
        assert torch.equal(getattr(src, k), getattr(base, k)), k
    special = base.tokens < TASK.vocab.color_offset
    assert torch.equal(src.tokens[special], base.tokens[special])
    assert (n >= 4).all()
    # a derangement of the declaration order, carrying colour-shape bindings along
    slot = torch.arange(NMAX).expand_as(valid)
    assert ((pairs.source_objects != slot) | ~valid).all()
    assert torch.equal(src.colors[valid], base.colors.gather(1, pairs.source_objects)[valid])
    assert torch.equal(src.shapes[valid], base.shapes.gather(1, pairs.source_objects)[valid])
    assert torch.equal(I.association_lines(src), I.association_lines(base)), "same slot -> line map"
    # the four targets, as the hypotheses define them, are pairwise distinct items of the base
    r = torch.arange(len(pairs))
    q_s = src.query_slot
    assert torch.equal(pairs.positional, base.items[r, q_s])
    bound = base.shapes == src.shapes[r, q_s][:, None]  # the base object with the source's queried shape
    assert torch.equal(pairs.symbolic, base.items[bound])
    assert torch.equal(pairs.base_answer, base.target)
    assert torch.equal(pairs.reflexive, src.target)
    assert all(answer_from_tokens(t.tolist(), TASK.vocab) == a for t, a in zip(src.tokens, src.target.tolist()))
    assert I.distinct_targets(pairs).all()
    for t in pairs.targets().values():
        assert (t[:, None] == base.items).any(1).all(), "every target is an item of the base context"
    assert pairs.stacked().tokens.shape == (2 * len(pairs), base.tokens.shape[1])


def test_pairs_need_four_objects():
    with pytest.raises(ValueError, match="N >= 4"):
        I.make_pairs(TASK, 4, n=3)


# ---------------------------------------------------------------- interchange: controls
def test_source_equals_base_changes_nothing(model, pairs):
    twin = I.Pairs(pairs.base, pairs.base, pairs.positional, pairs.symbolic, pairs.reflexive, pairs.base_answer,
                   pairs.source_objects, pairs.traded_object)
    clean = I.readout_logits(model, pairs.base.model_inputs(), pairs.base.query_pos)
    for method in ("packed", "stacked"):
        r = I.interchange(model, twin, method=method)
        close(r["clean_logits"], clean)
        for j in range(3):
            close(r["patched_logits"][:, j], clean)


def test_full_patch_at_layer0_reproduces_source(model, pairs):
    src_clean = I.readout_logits(model, pairs.source.model_inputs(), pairs.source.query_pos)
    base_clean = I.readout_logits(model, pairs.base.model_inputs(), pairs.base.query_pos)
    assert (src_clean - base_clean).abs().max() > 1e-2, "positive control: base and source differ"
    close(I.patched_logits(model, pairs, 0, positions="all"), src_clean)
    last_only = I.patched_logits(model, pairs, 0)
    assert (last_only - src_clean).abs().max() > 1e-2, "patching only the last token is not the whole source"


def test_fast_sweeps_agree_with_per_pair_loop(model, pairs):
    sub = pairs.select(torch.arange(6))
    loop = I.interchange(model, sub, method="loop")
    for method in ("packed", "stacked"):
        fast = I.interchange(model, sub, method=method, chunk=4)  # chunks cross pair boundaries
        close(fast["patched_logits"], loop["patched_logits"], atol=1e-4)
        for a, b in zip(fast["per_layer"], loop["per_layer"]):
            assert all(a[k] == b[k] for k in ("positional", "symbolic", "reflexive", "none")), (a, b)
    assert (loop["patched_logits"][:, 0] - loop["clean_logits"]).abs().max() > 1e-2, "positive control: patches act"


def test_time_sweep_reports_both_timings(model, pairs):
    t = I.time_sweep(model, pairs.select(torch.arange(8)), loop_pairs=2)
    assert t["packed_seconds"] > 0 and t["loop_seconds"] > 0 and t["loop_pairs"] == 2
    assert t["max_abs_logit_diff"] < 1e-4


def test_binding_score_is_nan_safe():
    assert I.binding_score(1.0, 0.0) == 1.0 and I.binding_score(0.0, 0.5) == -1.0
    assert I.binding_score(0.0, 0.0) != I.binding_score(0.0, 0.0)  # nan


# ---------------------------------------------------------------- interchange: known mechanisms
def test_interchange_recovers_the_known_mechanism(toy):
    mechanism, m, prs = toy
    r = I.interchange(m, prs)
    iia = [(d["positional"], d["symbolic"], d["reflexive"]) for d in r["per_layer"]]
    # blocks 0-1: the last token holds only the query colour, so a patch swaps the query (SYM)
    assert iia[0] == iia[1] == (0.0, 1.0, 0.0)
    # block 2: the pointer
    assert iia[2] == ((1.0, 0.0, 0.0) if mechanism == "positional" else (0.0, 1.0, 0.0))
    # block 3: the answer itself
    assert iia[3] == (0.0, 0.0, 1.0)
    s = r["summary"]
    assert s["routing_layer"] == 2
    assert s["binding_score"] == (-1.0 if mechanism == "positional" else 1.0)
    assert (r["per_layer"][2]["logit_diff"] < -0.5) == (mechanism == "positional")

    rec = I.interchange_record(r, regime="toy", seed=0, profile="toy", command="pytest", device="cpu")
    text = json.dumps(rec, allow_nan=False)  # nan/inf become null
    back = json.loads(text)
    assert back["kind"] == "interchange" and back["regime"] == "toy" and len(back["iia"]) == 4
    assert set(back["iia"][0]) == {"positional", "symbolic", "reflexive"}
    assert {"git_commit", "torch", "wall_seconds", "command"} <= set(back["provenance"])


def test_position_swap_separates_the_mechanisms(toy):
    mechanism, m, _ = toy
    b = sample_batch(TASK, 48, seed=9, n=(4, NMAX), association_order="declared")
    out = I.position_swap(m, b, 0, 2)
    assert out["n"] == 48 and out["clean_accuracy"] == 1.0
    assert (out["flip_rate"], out["stay_rate"]) == ((1.0, 0.0) if mechanism == "positional" else (0.0, 1.0))


# ---------------------------------------------------------------- knockouts
def test_target_sets():
    b = sample_batch(TASK, 32, seed=2, split="id")
    sets = I.target_sets(b, seed=0)
    size = {k: v.sum(-1) for k, v in sets.items()}
    assert (size["answer_item"] == 1).all() and (size["answer_shape"] == 1).all()
    assert (size["query_declaration"] == 2).all() and (size["structural"] == 3).all()
    assert torch.equal(size["other_objects"], 4 * (b.n_objects - 1))
    assert torch.equal(b.tokens[sets["answer_item"]], b.target)
    for name in ("answer_item", "query_declaration", "structural", "other_objects"):
        assert torch.equal(size[f"random_{name}"], size[name])
        ctrl = sets[f"random_{name}"]
        assert (ctrl.nonzero()[:, 1] < b.query_pos[ctrl.nonzero()[:, 0]]).all(), "controls stay in the context"
    assert torch.equal(I.target_sets(b, seed=0)["random_answer_item"], sets["random_answer_item"]), "seeded"


def test_empty_knockout_is_the_identity(model):
    b = sample_batch(TASK, 16, seed=4, split="id")
    clean = I.readout_logits(model, b.model_inputs(), b.query_pos)
    none = torch.zeros_like(b.tokens, dtype=torch.bool)
    close(I.knockout(model, b, none, range(3)), clean, atol=0)
    everything_before = torch.arange(b.tokens.shape[1])[None] < b.query_pos[:, None]
    assert (I.knockout(model, b, everything_before, [1]) - clean).abs().max() > 1e-2, "positive control"


def test_knockouts_find_the_known_circuit(toy):
    mechanism, m, _ = toy
    b = sample_batch(TASK, 32, seed=6, n=(4, NMAX), association_order="declared")
    window = I.knockout_sweep(m, b, mode="window", k=1)["sets"]
    assert window["answer_item"]["accuracy"] == [1.0, 1.0, 0.0, 1.0]  # block 2 reads the item
    assert window["query_declaration"]["accuracy"] == [1.0, 0.0, 1.0, 1.0]  # block 1 finds the object
    assert window["answer_item"]["relative_change"][2] < -90
    sets = I.target_sets(b)
    cumulative = I.knockout_sweep(m, b, {"answer_item": sets["answer_item"]}, mode="cumulative")["sets"]
    assert cumulative["answer_item"]["accuracy"] == [0.0, 0.0, 0.0, 1.0]
    assert I.knockout_layers(2, 12, "window", 3) == [1, 2, 3] and I.knockout_layers(10, 12, "cumulative") == [10, 11]


# ---------------------------------------------------------------- probes
def test_probe_on_random_labels_stays_near_chance():
    m = tiny_model(seed=1, n_layers=2)
    out = I.probe(m, TASK, "hook_resid_post", "shape", "random", n_prompts=192, n_random=4, Cs=(0.1, 1.0), folds=2,
                  control=False, random_init=False, max_iter=30)
    assert out["n_train"] > 100 and out["n_test"] > 50
    for row in out["layers"]:
        assert abs(row["accuracy"] - 0.25) < 0.12, row


def test_probe_reads_a_known_pointer():
    """The positional toy writes the query slot into its residual in block 1: decodable from layer 2 on, not before."""
    m = I.ToyBindingModel(TASK.vocab, NMAX, "positional")
    out = I.probe(m, TASK, "hook_resid_pre", "last", "target_index", n_prompts=400, association_order="declared",
                  Cs=(1.0,), test_frac=0.5, random_init=False, max_iter=50)
    acc = [row["accuracy"] for row in out["layers"]]
    assert acc[2] > 0.95 and acc[3] > 0.95
    assert acc[0] < out["chance"] + 0.2
    # the Hewitt-Liang control labels are a function of the query colour, which the toy keeps one-hot
    # in its residual: they are decodable at every layer, so selectivity is accuracy minus ~1
    assert all(row["control_accuracy"] > 0.9 for row in out["layers"])
    assert out["layers"][0]["selectivity"] < -0.5


def test_identity_split_shares_no_combination():
    b = sample_batch(TASK, 256, seed=8, split="id")
    pos, obj, valid = I.role_positions(b, "color")
    train, test = I.identity_split(b, obj, 0.4, seed=0)
    train, test = train & valid, test & valid
    assert train.sum() > 0 and test.sum() > 0

    def combos(mask, a, c):
        return set(zip(a[mask].tolist(), c[mask].tolist()))

    for a, c in ((b.colors, b.shapes), (b.shapes, b.items)):
        assert not combos(train, a, c) & combos(test, a, c)


def test_fit_probe_separable_and_cv():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(3, (300,), generator=g)
    X = torch.randn(300, 5, generator=g) + 4 * torch.nn.functional.one_hot(y, 5).float()
    pr = I.fit_probe(X[:200], y[:200], 3, Cs=(0.01, 1.0), folds=2, max_iter=50)
    assert pr.C in (0.01, 1.0) and pr.accuracy(X[200:], y[200:]) > 0.95


def test_per_head_knockout_finds_the_one_reading_head(toy):
    _, m, _ = toy
    b = sample_batch(TASK, 32, seed=6, n=(4, NMAX), association_order="declared")
    res = I.head_knockout_sweep(m, b, {"answer_item": I.target_sets(b)["answer_item"]})
    assert res["n_heads"] == [2, 1, 1, 1] and res["base_accuracy"] == 1.0
    acc = res["sets"]["answer_item"]["accuracy"]
    assert acc[2] == [0.0], "block 2's only head reads the item"
    assert acc[0] == [1.0, 1.0] and acc[1] == [1.0] and acc[3] == [1.0]


def test_relative_change_is_bounded_and_robust_to_tiny_clean_probabilities():
    p_base, p_new = torch.tensor([1e-6, 0.5]), torch.tensor([0.5, 0.5])
    assert I.relative_change(p_new, p_base) == pytest.approx(100 * (0.5 - 0.2500005) / 0.2500005)
    assert I.relative_change(torch.zeros(2), p_base) == pytest.approx(-100.0)
