"""The recipe's controls: the ordered-items format (a task only a positional binder can solve), its
adapted interchange pairs, rebind pairs (colour versus bound shape), the recipe arms (slot hop target,
hop weight and layer, the shortcut dial) and the position-shift evaluation axis.

The instruments are checked on hand-wired models whose mechanism is known by construction
(``interp.ToyBindingModel``): a positional and a symbolic binder must read as such."""
from __future__ import annotations

import math

import pytest
import torch

from bindlib import interp as I
from bindlib.core.evaluate import evaluate_shift, max_shift
from bindlib.core.model import ModelConfig, Transformer
from bindlib.experiments.recipes import arm_suffix, recipe
from bindlib.core.packing import pack_queries
from bindlib.core.task import CTX_END, PAD, QUE, TaskConfig, answer_from_tokens, line_width, prompt_length, sample_batch
from bindlib.training.train import Stage, TrainConfig, hop_head_for, training_loss

pytest.importorskip("nnsight")

ORDERED = TaskConfig(format="ordered")
STANDARD = TaskConfig()


# ---------------------------------------------------------------- the ordered-items format
def test_ordered_prompt_layout_and_reference_answer():
    b = sample_batch(ORDERED, 64, 0, n=(2, 8))
    assert b.tokens.shape[1] == prompt_length(8, 0, "ordered") == 4 + 3 * 8
    for r in range(len(b)):
        n = int(b.n_objects[r])
        toks = b.tokens[r].tolist()
        end = toks.index(CTX_END)
        assert end == 1 + 2 * n
        items = toks[end + 1: end + 1 + n]
        assert items == b.items[r, :n].tolist()  # the k-th item is object k's, in declaration order
        assert toks[end + 1 + n] == QUE and int(b.query_pos[r]) == end + 2 + n
        assert all(t == PAD for t in toks[int(b.query_pos[r]) + 1:])
        assert not set(b.shapes[r, :n].tolist()) & set(items)  # no shape token on the item lines
        assert answer_from_tokens(toks, b.vocab, "ordered") == int(b.target[r]) == int(b.items[r, b.query_slot[r]])
    assert (b.assoc_shape_pos == -1).all()
    assert (b.tokens.gather(1, b.assoc_item_pos.clamp(min=0)) == b.items.clamp(min=0))[b.items >= 0].all()


def test_ordered_format_bad_input():
    with pytest.raises(ValueError, match="unknown task format"):
        TaskConfig(format="sorted")
    with pytest.raises(ValueError, match="ordered"):
        sample_batch(ORDERED, 4, 0, association_order="reversed")
    assert "format" not in STANDARD.to_dict() and ORDERED.to_dict()["format"] == "ordered"
    assert line_width("standard") == 2 and line_width("ordered") == 1


def test_ordered_packed_queries_keep_every_kind():
    packed = pack_queries(sample_batch(ORDERED, 8, 1, n=(2, 5)))
    assert packed.tokens.shape[0] == 8 and (packed.target >= 0).sum() == 3 * int(sample_batch(ORDERED, 8, 1, n=(2, 5)).n_objects.sum())


# ---------------------------------------------------------------- the shortcut dial
def test_declared_share_zero_keeps_the_stream_and_one_declares_every_prompt():
    a = sample_batch(STANDARD, 32, 5)
    b = sample_batch(STANDARD, 32, 5, declared_share=0.0)
    assert torch.equal(a.tokens, b.tokens)
    lines = I.association_lines(sample_batch(STANDARD, 32, 5, declared_share=1.0))
    slots = torch.arange(lines.shape[1]).expand_as(lines)
    mb = sample_batch(STANDARD, 400, 5, n=(6, 8), declared_share=0.5)
    mixed = I.association_lines(mb)
    declared = ((mixed == torch.arange(mixed.shape[1])) | (mb.colors < 0)).all(1)
    assert (lines == slots.masked_fill(sample_batch(STANDARD, 32, 5, declared_share=1.0).colors < 0, 0)).all()
    assert 0.35 < declared.float().mean() < 0.65
    with pytest.raises(ValueError, match="declared_share"):
        sample_batch(STANDARD, 4, 0, declared_share=1.5)


# ---------------------------------------------------------------- adapted pairs on the ordered format
def test_ordered_pairs_targets_follow_their_definitions():
    pairs = I.make_pairs(ORDERED, 64, seed=2)
    assert I.distinct_targets(pairs).all()
    r = torch.arange(len(pairs))
    src = pairs.source
    q_s = src.query_slot
    assert torch.equal(pairs.positional, pairs.base.items[r, q_s])  # the base's item at the source's slot
    o = pairs.source_objects[r, q_s]
    assert torch.equal(src.colors[r, q_s], pairs.base.colors[r, o])  # the source asks base object o's colour ...
    assert torch.equal(pairs.symbolic, pairs.base.items[r, o])  # ... and SYM is the base's item of that colour
    for t, a in zip(src.tokens, pairs.reflexive.tolist()):
        assert answer_from_tokens(t.tolist(), src.vocab, "ordered") == a  # the source's answer is REF
    assert src.tokens.shape == pairs.base.tokens.shape


def test_positional_toy_on_the_ordered_format_reads_positional():
    toy = I.ToyBindingModel(ORDERED.vocab, 16, "positional", fmt="ordered")
    pairs = I.make_pairs(ORDERED, 48, seed=1)
    assert I.correct_on_both(toy, pairs).all()
    res = I.interchange(toy, pairs)
    assert res["summary"]["routing_layer"] == 2 and res["summary"]["binding_score"] == -1.0
    assert res["per_layer"][3]["reflexive"] == 1.0
    swap = I.position_swap(toy, sample_batch(ORDERED, 64, 3, n=(4, 8)), 0, 2)
    assert swap["flip_rate"] == 1.0
    with pytest.raises(ValueError, match="ordered"):
        I.ToyBindingModel(ORDERED.vocab, 16, "symbolic", fmt="ordered")


# ---------------------------------------------------------------- rebind pairs
def test_rebind_pairs_keep_colours_slots_and_query():
    rp = I.make_rebind_pairs(STANDARD, 64, seed=4)
    b, s = rp.base, rp.source
    r = torch.arange(len(rp))
    assert torch.equal(b.colors, s.colors) and torch.equal(b.query_slot, s.query_slot)
    assert torch.equal(b.tokens[r, b.query_pos], s.tokens[r, s.query_pos])
    valid = b.colors >= 0
    assert ((rp.shape_perm != torch.arange(b.colors.shape[1])) | ~valid).all()  # every shape moved
    assert torch.equal(I.association_lines(b), I.association_lines(s))  # same slot -> line map
    t = torch.stack([rp.stay, rp.shape, rp.reflexive], 1)
    assert ((t[:, :, None] != t[:, None, :]).sum((1, 2)) == 6).all()
    for row, a in zip(s.tokens, rp.reflexive.tolist()):
        assert answer_from_tokens(row.tolist(), s.vocab) == a
    with pytest.raises(ValueError, match="standard"):
        I.rebind_pairs_from_base(sample_batch(ORDERED, 4, 0, n=4), torch.Generator().manual_seed(0))


def test_rebind_separates_a_carried_shape_from_a_carried_slot():
    sym = I.ToyBindingModel(STANDARD.vocab, 8, "symbolic")
    res = I.rebind(sym, I.make_rebind_pairs(STANDARD, 48, seed=6))
    shares = [(d["stay"], d["shape"], d["reflexive"]) for d in res["per_layer"]]
    assert shares == [(1.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]
    pos = I.ToyBindingModel(STANDARD.vocab, 8, "positional")
    rp = I.make_rebind_pairs(STANDARD, 48, seed=6, association_order="declared")
    assert I.correct_on_both(pos, rp).all()
    shares = [(d["stay"], d["shape"], d["reflexive"]) for d in I.rebind(pos, rp)["per_layer"]]
    assert shares == [(1.0, 0.0, 0.0), (1.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)]


def test_interchange_measure_reports_rebind_beside_pos_sym_ref():
    from bindlib.interp import runs as R

    task = TaskConfig(id_range=(2, 8), ood_range=(9, 10))
    toy = I.ToyBindingModel(task.vocab, 10, "symbolic")
    sizes = R.Sizes(pairs=32, ood_pairs=24, loop_pairs=2, swap_prompts=48, rebind_pairs=24, declared_pairs=24)
    out = R.interchange_measure(toy, task, sizes)
    row = out["splits"]["id"]["per_layer"][2]
    assert row["symbolic"] == 1.0 and row["rebind_shape"] == 1.0 and row["rebind_stay"] == 0.0
    assert out["splits"]["id"]["summary"]["rebind_shape"] == 1.0
    assert out["splits"]["id_declared"]["summary"]["binding_score"] == 1.0
    assert out["position_swap_declared"]["association_order"] == "declared"
    ordered = R.interchange_measure(I.ToyBindingModel(ORDERED.vocab, 16, "positional", fmt="ordered"),
                                    TaskConfig(format="ordered", ood_range=(9, 10)), sizes)
    assert ordered["format"] == "ordered" and "rebind" not in ordered["splits"]["id"]
    assert ordered["splits"]["id"]["summary"]["binding_score"] == -1.0 and ordered["position_swap"]["flip_rate"] == 1.0


# ---------------------------------------------------------------- recipe arms
def test_arm_names_never_collide_with_the_recipe():
    assert arm_suffix() == ""
    assert arm_suffix("ordered") == "_ordered" and arm_suffix(hop_target="slot") == "_hopslot"
    assert arm_suffix(hop_weight=0.0) == "_hopw0" and arm_suffix(hop_layer=2) == "_hopl2"
    assert arm_suffix(declared_share=0.9) == "_decl090" and arm_suffix(declared_share=0.0) == "_decl000"
    assert arm_suffix(declared_share=1.0) == "_decl100"


def test_recipe_arms_and_bad_input():
    base = recipe()
    assert base.to_dict() == recipe(hop_target="shape", declared_share=0.0).to_dict()
    assert "hop_target" not in base.to_dict() and "declared_share" not in base.to_dict()
    assert recipe(hop_target="slot").to_dict()["hop_target"] == "slot"
    assert recipe(hop_layer=2).hop_layer == 2 and recipe(task_format="ordered").task.format == "ordered"
    assert all(s.hop_weight == 0 for s in recipe(hop_weight=0.0).stages)
    with pytest.raises(ValueError, match="hop_layer"):
        recipe(hop_layer=9)
    with pytest.raises(ValueError, match="hop_target"):
        TrainConfig(hop_target="colour")
    with pytest.raises(ValueError, match="declared_share"):
        TrainConfig(declared_share=-0.1)


def test_slot_hop_target_trains_a_head_outside_the_model():
    cfg = TrainConfig(model=dict(n_layers=2, d_model=32, n_heads=2, d_ff=64), batch_size=8, packed=True, hop_layer=0,
                      hop_target="slot", stages=[Stage("compose", 4, {"two_hop": 1.0}, hop_weight=1.0)])
    torch.manual_seed(0)
    model = Transformer(cfg.model_config())
    head = hop_head_for(cfg, model)
    assert head is not None and head.out_features == 16
    loss = training_loss(model, cfg, cfg.task_config(), cfg.stages[0], 0, "cpu", hop_head=head)
    loss.backward()
    assert math.isfinite(loss.item()) and head.weight.grad.abs().sum() > 0
    assert not any(k.startswith("hop") for k in model.state_dict())
    with pytest.raises(ValueError, match="slot head"):
        training_loss(model, cfg, cfg.task_config(), cfg.stages[0], 0, "cpu")
    assert hop_head_for(TrainConfig(hop_target="slot", hop_layer=1, stages=[Stage("x", 2)]), model) is None


# ---------------------------------------------------------------- the position-shift axis
def _tiny(pos):
    torch.manual_seed(0)
    return Transformer(ModelConfig(vocab_size=STANDARD.vocab.size, n_layers=1, d_model=16, n_heads=2, d_ff=32,
                                   pos_encoding=pos, max_len=STANDARD.max_len(offset=64))).eval()


def test_position_shift_is_invisible_to_rope_and_bounded_for_learned_positions():
    rope = evaluate_shift(_tiny("rope"), STANDARD, shifts=(0, 32), per_n=8)
    assert rope["max_shift"] is None
    assert rope["shifts"]["0"]["accuracy_by_n"] == rope["shifts"]["32"]["accuracy_by_n"]  # relative positions only
    learned = _tiny("learned")
    limit = max_shift(learned, STANDARD)
    assert limit == STANDARD.max_len(offset=64) - prompt_length(8)
    out = evaluate_shift(learned, STANDARD, shifts=(0, 8, limit + 1), per_n=8)
    assert "skipped" in out["shifts"][str(limit + 1)] and "id_accuracy" in out["shifts"]["8"]


# ---------------------------------------------------------------- the positional-encoding axis of reproduce
def test_regime_config_follows_the_positional_encoding():
    from bindlib.experiments import recipes as regimes

    cfg = regimes.regime_config("noise_text", 1, pos_encoding="learned")
    assert cfg.init_from.endswith("text_only_cpu_s1_learnedpos") and cfg.model_config().pos_encoding == "learned"
    assert regimes.regime_config("noise_text", 1).model.to_dict() == {}  # the table's runs are unchanged
    assert regimes.run_suffix({"regime": "noise_text", "pos_encoding": "learned"}, 2.0) == "_learnedpos_steps2x"
    with pytest.raises(ValueError, match="pos_encoding"):
        regimes.regime_config("noise_text", 0, pos_encoding="alibi")


def test_reproduce_on_the_learned_positions_track(tmp_path, monkeypatch):
    import json
    import shutil
    from pathlib import Path

    from bindlib.core import io
    from bindlib.experiments import recipes as regimes

    repo = Path(__file__).resolve().parent.parent
    ck = tmp_path / "data" / "checkpoints"
    shutil.copytree(repo / "data/checkpoints/text_only_cpu_s0_learnedpos", ck / "text_only_cpu_s0_learnedpos")
    from bindlib.core import profiles

    for mod in (io, profiles):  # every path of a run, in the temporary folder
        monkeypatch.setattr(mod, "REPO_ROOT", tmp_path)
        monkeypatch.setattr(mod, "CHECKPOINTS_DIR", ck)
        monkeypatch.setattr(mod, "RESULTS_DIR", tmp_path / "data" / "results")
    monkeypatch.chdir(tmp_path)
    written = regimes.reproduce("cpu", seeds=[0], regimes=["text_only_matched"], progress=False,
                               steps_scale=0.01, log=lambda *_: None, pos_encoding="learned")
    assert [p.name for p in written] == ["regime_text_only_matched_cpu_s0_learnedpos_steps0.01x.json"]
    rec = json.loads(written[0].read_text())
    assert rec["pos_encoding"] == "learned" and rec["train_config"]["model"]["pos_encoding"] == "learned"
    model, _ = io.load_checkpoint(tmp_path / rec["checkpoint"])
    assert model.cfg.pos_encoding == "learned"
    assert regimes.regime_results("cpu", steps_scale=None) == []  # the table (RoPE) never sees the track
    assert len(regimes.regime_results("cpu", steps_scale=None, pos_encoding="learned")) == 1
    assert not (ck / "text_only_cpu_s0").exists()  # nothing of the RoPE track was trained or written


def test_arm_recipe_names_each_arm_and_defaults_the_ordered_format_to_no_deep_supervision():
    from bindlib.experiments.recipes import arm_recipe

    cfg, name = arm_recipe("cpu", 0, "cpu")
    assert name == "" and cfg.to_dict() == recipe().to_dict()
    cfg, name = arm_recipe("cpu", 0, "cpu", format="ordered")
    assert name == "_ordered" and cfg.task.format == "ordered" and all(s.hop_weight == 0 for s in cfg.stages)
    cfg, name = arm_recipe("cpu", 0, "cpu", declared_share=0.9, hop_target="slot")
    assert name == "_hopslot_decl090" and cfg.declared_share == 0.9 and cfg.hop_target == "slot"
