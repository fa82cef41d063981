"""Image prompts, noise augmentation, feature grounding, the image curriculum and the regimes."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from bindlib.core import io, profiles
from bindlib.experiments import recipes as regimes
from bindlib.vision.encoders import random_cnn
from bindlib.core.model import ModelConfig, Transformer
from bindlib.core.task import IMG
from bindlib.vision.grounding import grounding_loss
from bindlib.core.profiles import image_token_count
from bindlib.core.relayout import add_noise, relayout_context
from bindlib.vision.multimodal import ImageAdapter, Vision, load_image_model, save_adapter
from bindlib.vision.render import RenderConfig, patch_grid, render_batch
from bindlib.core.task import NOISE, TaskConfig, answer_from_tokens, sample_batch
from bindlib.core.packing import pack_queries
from bindlib.training.train import Stage, TrainConfig, stage_at, train, training_loss
from bindlib.vision.featurepool import build_image_parts

REPO = Path(__file__).resolve().parent.parent
TASK = TaskConfig()
TINY_MODEL = dict(n_layers=2, d_model=32, n_heads=2, d_ff=64)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return Transformer(ModelConfig(vocab_size=TASK.vocab.size, max_len=256, **TINY_MODEL)).eval()


def tiny_vision():
    return Vision(random_cnn(112, 16, 8, 16), RenderConfig(canvas_size=112), 16)


# ---------------------------------------------------------------- noise
def test_noise_keeps_the_prompt_and_its_answer():
    b = sample_batch(TASK, 32, 0, n=(2, 8))
    nb = add_noise(b, 20, seed=1)
    for i in range(32):
        real = [int(t) for t, m in zip(nb.tokens[i, :int(nb.query_pos[i]) + 1], nb.key_mask[i]) if m]
        assert real == b.tokens[i, :int(b.query_pos[i]) + 1].tolist()  # same tokens, same order, noise removed
        assert answer_from_tokens(real, b.vocab) == int(nb.target[i])
        n = int(b.n_objects[i])
        assert nb.tokens[i, nb.color_pos[i, :n]].tolist() == b.colors[i, :n].tolist()
        assert nb.tokens[i, nb.assoc_item_pos[i, :n]].tolist() == nb.tokens[i, b.assoc_item_pos[i, :n] + 20 - 2 * n].tolist()
        block = nb.tokens[i, 1:21]
        assert int((block == NOISE).sum()) == 20 - 2 * n  # every context block is 20 tokens long
    assert (nb.key_mask == (nb.tokens != NOISE) & (torch.arange(nb.tokens.shape[1]) <= nb.query_pos[:, None])).all()
    assert (nb.position_ids == torch.arange(nb.tokens.shape[1])).all()  # noise takes position ids


def test_noise_is_deterministic_and_varies_positions():
    b = sample_batch(TASK, 16, 3, n=4)
    assert torch.equal(add_noise(b, 24, seed=5).tokens, add_noise(b, 24, seed=5).tokens)
    gaps = add_noise(b, 24, seed=5).shape_pos[:, 0] - add_noise(b, 24, seed=5).color_pos[:, 0]
    assert len(set(gaps.tolist())) > 1  # distances between real tokens vary


def test_noise_tokens_are_unattendable():
    """Changing what sits at the noise positions changes no logit at any real token."""
    model = tiny_model()
    nb = add_noise(sample_batch(TASK, 16, 0, n=(2, 6)), 16, seed=2)
    other = nb.tokens.clone()
    noise = nb.tokens == NOISE
    other[noise] = torch.randint(8, TASK.vocab.size, (int(noise.sum()),))
    with torch.no_grad():
        a = model(nb.tokens, nb.position_ids, nb.key_mask)
        b = model(other, nb.position_ids, nb.key_mask)
    real = nb.key_mask
    assert torch.allclose(a[real], b[real], atol=1e-5)
    # and the packed training input keeps them unattendable too
    p = pack_queries(nb)
    q = pack_queries(nb)
    q.tokens[q.tokens == NOISE] = 9
    with torch.no_grad():
        la, lb = model(**p.model_inputs()), model(**q.model_inputs())
    rows = torch.arange(16)[:, None]
    assert torch.allclose(la[rows, p.readout_pos], lb[rows, p.readout_pos], atol=1e-5)


def test_noise_width_must_hold_the_context():
    with pytest.raises(ValueError, match="noise width 6 is smaller"):
        add_noise(sample_batch(TASK, 4, 0, n=5), 6)
    with pytest.raises(ValueError, match="unknown mode"):
        relayout_context(sample_batch(TASK, 4, 0), 20, "blur")


# ---------------------------------------------------------------- image prompts
def test_image_prompts_replace_only_the_context():
    vision = tiny_vision()
    b = sample_batch(TASK, 8, 0, n=(2, 8))
    p = vision.prompts(b, seed=3)
    T = image_token_count("cpu")
    assert vision.n_tokens == T == 49 and p.features.shape[:2] == (8, T)
    assert (p.batch.tokens[:, 1:1 + T] == IMG).all()
    for i in range(8):
        n = int(b.n_objects[i])
        tail = b.tokens[i, 1 + 2 * n:int(b.query_pos[i]) + 1]
        assert p.batch.tokens[i, 1 + T:int(p.batch.query_pos[i]) + 1].tolist() == tail.tolist()
    _, boxes = render_batch(b, vision.render_cfg, 3)  # the same layout the prompts used
    for k, patches in enumerate(patch_grid(boxes[0], 112, 16)):
        assert sorted(torch.nonzero(p.object_patches[0, k]).flatten().tolist()) == sorted(patches.tolist())


def test_image_tokens_reach_the_model():
    model, vision = tiny_model(), tiny_vision()
    p = vision.prompts(sample_batch(TASK, 4, 0, n=3), seed=0)
    adapter = ImageAdapter(vision.dim, 32)
    with torch.no_grad():
        a = model(**p.model_inputs(adapter))
        p.features = p.features + 1.0
        b = model(**p.model_inputs(adapter))
    assert not torch.allclose(a, b)


def test_grounding_loss_trains_the_adapter_and_model():
    model, vision = tiny_model().train(), tiny_vision()
    p = vision.prompts(sample_batch(TASK, 8, 0, n=(2, 8)), seed=0)
    adapter = ImageAdapter(vision.dim, 32)
    captured = {}
    h = model.hook_resid_final.register_forward_hook(lambda m, i, o: captured.update(x=o))
    model(**p.model_inputs(adapter))
    h.remove()
    g = grounding_loss(model, adapter, p, captured["x"])
    assert set(g) == {"to_words", "to_region"} and all(torch.isfinite(v) for v in g.values())
    (g["to_words"] + g["to_region"]).backward()
    assert adapter.proj.weight.grad.abs().sum() > 0 and adapter.ground_query.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------- curriculum
def test_image_share_is_spread_evenly():
    st = Stage("mix", 100, image=0.2)
    steps = [s for s in range(100) if st.is_image_step(s)]
    assert len(steps) == 20 and max(b - a for a, b in zip(steps, steps[1:])) == 5
    assert all(Stage("img", 5, image=1.0).is_image_step(s) for s in range(5))
    assert not any(Stage("txt", 5).is_image_step(s) for s in range(5))
    with pytest.raises(ValueError, match="share of steps"):
        Stage("bad", 5, image=1.5)


def test_noise_is_a_share_of_steps_and_old_configs_still_load():
    from bindlib.core.task import NOISE, TaskConfig, sample_batch
    from bindlib.training.train import _prepare

    half = Stage("mix", 100, image=0.2, noise=0.5)
    noised = [s for s in range(100) if not half.is_image_step(s) and half.is_noise_step(s)]
    clean = [s for s in range(100) if not half.is_image_step(s) and not half.is_noise_step(s)]
    assert len(noised) == len(clean) == 40
    assert Stage("old", 5, noise=True).noise == 1.0 and Stage("old", 5, noise=False).noise == 0.0  # stored JSON
    with pytest.raises(ValueError, match="share of text steps"):
        Stage("bad", 5, noise=2.0)
    cfg = TrainConfig(model=dict(TINY_MODEL), stages=[Stage("t", 4, noise=0.5)], early_stop=None)
    batch = sample_batch(TaskConfig(), 4, seed=0)
    has_noise = [bool((_prepare(batch, cfg, cfg.stages[0], s, None)[0].tokens == NOISE).any()) for s in range(4)]
    assert has_noise == [False, True, False, True]


def test_image_stage_needs_an_encoder():
    with pytest.raises(ValueError, match="names no encoder"):
        TrainConfig(stages=[Stage("img", 5, image=1.0)])


def test_curriculum_switches_from_image_to_mix(monkeypatch):
    import bindlib.vision.multimodal as MM

    monkeypatch.setattr(MM.Vision, "for_profile", classmethod(lambda cls, name, profile="cpu", positions="sequence", tokens="all": tiny_vision()))
    cfg = TrainConfig(model=dict(TINY_MODEL), batch_size=8, packed=True, early_stop=None, eval_every=3, eval_size=16,
                      warmup=2, vision={"encoder": "random_cnn"},
                      stages=[Stage("image", 3, {"two_hop": 1.0, "color_to_shape": 1.0}, image=1.0, grounding=1.0),
                              Stage("mix", 5, image=0.2, noise=True)])
    assert [stage_at(s, cfg)[1].name for s in range(8)] == ["image"] * 3 + ["mix"] * 5
    model, history, parts = train(cfg, progress=False, log=None, with_parts=True, image_steps=build_image_parts)
    with pytest.raises(ValueError, match="image_steps"):
        train(cfg, progress=False, log=None)
    assert [h["stage"] for h in history] == ["image", "mix", "mix"]
    assert parts is not None and "acc_image_two_hop" in history[-1]
    # text configs build no image parts
    _, _, none = train(TrainConfig(model=dict(TINY_MODEL), batch_size=8, stages=[Stage("t", 2)], early_stop=None,
                                   eval_every=2, eval_size=8), progress=False, log=None, with_parts=True)
    assert none is None


def test_grounding_switch_changes_the_loss(monkeypatch):
    import bindlib.vision.multimodal as MM

    vision = tiny_vision()
    monkeypatch.setattr(MM.Vision, "for_profile", classmethod(lambda cls, name, profile="cpu", positions="sequence", tokens="all": vision))
    from bindlib.vision.featurepool import build_image_parts

    base = dict(model=dict(TINY_MODEL), batch_size=8, packed=True, vision={"encoder": "random_cnn"})
    on = TrainConfig(**base, stages=[Stage("image", 3, image=1.0, grounding=1.0)])
    off = TrainConfig(**base, stages=[Stage("image", 3, image=1.0, grounding=0.0)])
    model = tiny_model()
    torch.manual_seed(0)
    parts = build_image_parts(on, model, torch.device("cpu"))
    with torch.no_grad():
        l_on = training_loss(model, on, TASK, on.stages[0], 0, torch.device("cpu"), parts)
        l_off = training_loss(model, off, TASK, off.stages[0], 0, torch.device("cpu"), parts)
    assert l_on > l_off  # the grounding terms are added only when switched on


# ---------------------------------------------------------------- regimes
def test_regime_configs_are_compute_matched():
    cfgs = {r: regimes.regime_config(r, 0) for r in regimes.REGIMES if r != "text_only"}
    totals = {r: c.total_steps for r, c in cfgs.items()}
    assert len(set(totals.values())) == 1  # every continuation adds the same number of steps
    assert all(c.init_from.endswith("text_only_cpu_s0") for c in cfgs.values())
    assert [s.name for s in cfgs["image_text"].stages] == ["image", "mix"]
    assert cfgs["image_text"].stages[1].image == regimes.IMAGE_SHARE
    assert cfgs["noise_text"].stages[0].noise and not cfgs["text_only_matched"].stages[0].noise
    assert all(s.noise for s in cfgs["noise_image_text"].stages) and not any(s.noise for s in cfgs["image_text"].stages)
    assert cfgs["image_text"].stages[0].grounding > 0
    assert regimes.regime_config("image_text", 0, grounding=False).stages[0].grounding == 0
    with pytest.raises(ValueError, match="unknown regime"):
        regimes.regime_config("images", 0)
    with pytest.raises(ValueError, match="unknown encoder"):
        regimes.regime_config("image_text", 0, encoder="resnet9")
    with pytest.raises(ValueError, match="no stages after"):
        regimes.regime_stages("text_only")


def test_planned_runs_cover_every_encoder_and_seed():
    runs = regimes.planned_runs("cpu", [0, 1], encoders=["project_cnn", "pixels"], grounding_ablation_seeds=[0])
    names = [regimes.results_name(r, "cpu") for r in runs]
    assert len(names) == len(set(names)) == 2 * (3 + 2 * 2) + 1
    assert "regime_image_text_pixels_cpu_s1" in names and "regime_image_text_project_cnn_cpu_s0_nogrounding" in names


def _tmp_repo(tmp_path, monkeypatch):
    ck = tmp_path / "data" / "checkpoints"
    shutil.copytree(REPO / "data/checkpoints/text_only_cpu_s0", ck / "text_only_cpu_s0")
    for mod in (io, profiles):
        monkeypatch.setattr(mod, "REPO_ROOT", tmp_path)
    for mod in (io, profiles):
        monkeypatch.setattr(mod, "CHECKPOINTS_DIR", ck)
    for mod in (io, profiles):
        monkeypatch.setattr(mod, "RESULTS_DIR", tmp_path / "data" / "results")
    monkeypatch.chdir(tmp_path)
    import bindlib.vision.multimodal as MM

    monkeypatch.setattr(MM.Vision, "for_profile", classmethod(
        lambda cls, name, profile="cpu", positions="sequence", tokens="all": Vision(random_cnn(112, 16, 8, 16), RenderConfig(canvas_size=112), 16)))


def test_reproduce_writes_results_and_resumes(tmp_path, monkeypatch):
    _tmp_repo(tmp_path, monkeypatch)
    lines = []
    kw = dict(seeds=[0], regimes=["text_only", "image_text"], encoders=["random_cnn"], progress=False,
              steps_scale=0.01, log=lines.append)
    written = regimes.reproduce("cpu", **kw)
    # a scaled step budget is an exploratory run: its name says so, and the table leaves it out
    assert [p.name for p in written] == ["regime_text_only_cpu_s0.json",
                                         "regime_image_text_random_cnn_cpu_s0_steps0.01x.json"]
    rec = json.loads(written[1].read_text())
    assert rec["steps_scale"] == 0.01
    assert [r["regime"] for r in regimes.regime_results("cpu")] == ["text_only"]
    assert len(regimes.regime_results("cpu", steps_scale=None)) == 2
    for key in ("regime", "encoder", "seed", "profile", "id_accuracy", "ood_accuracy", "accuracy_by_n",
                "image_id_accuracy", "grounding_accuracy", "provenance", "train_config"):
        assert key in rec
    assert rec["regime"] == "image_text" and rec["encoder"] == "random_cnn"
    assert {"command", "git_commit", "device", "wall_seconds"} <= set(rec["provenance"])
    model, adapter, vision, meta = load_image_model(tmp_path / rec["checkpoint"])
    assert meta["encoder"] == "random_cnn"
    lines.clear()
    assert regimes.reproduce("cpu", **kw) == [] and all("skipping" in line for line in lines)


def test_image_checkpoint_errors(tmp_path, monkeypatch):
    _tmp_repo(tmp_path, monkeypatch)
    with pytest.raises(io.CheckpointError, match="text-only checkpoint"):
        load_image_model(io.CHECKPOINTS_DIR / "text_only_cpu_s0")
    model = tiny_model()
    path = tmp_path / "img"
    entry = save_adapter(ImageAdapter(16, 32), path)
    io.save_checkpoint(model, path, meta={"adapter": entry, "encoder": "random_cnn"})
    (path / "adapter.safetensors").write_bytes(b"broken")
    with pytest.raises(io.CheckpointError, match="sha256 mismatch"):
        load_image_model(path)
    (path / "adapter.safetensors").unlink()
    with pytest.raises(io.CheckpointError, match="is missing"):
        load_image_model(path)


# ---------------------------------------------------------------- the table
def _rec(regime, seed, ood, encoder=None, grounding=True):
    return {"kind": "regime", "regime": regime, "seed": seed, "ood_accuracy": ood, "id_accuracy": 1.0,
            "encoder": encoder, "grounding": grounding if encoder else None, "image_id_accuracy": 0.5,
            "grounding_accuracy": {"color_from_region": 0.9, "shape_from_region": 0.8, "region_from_color": 0.7}}


def test_headline_table_means():
    recs = [_rec("text_only", s, v) for s, v in enumerate((0.3, 0.4, 0.5))]
    recs += [_rec("image_text", s, v, "project_cnn") for s, v in enumerate((0.7, 0.8, 0.9))]
    recs += [_rec("image_text", 0, 0.0, "project_cnn", grounding=False), _rec("image_text", 0, 0.1, "pixels")]
    rows = {r["regime"]: r for r in regimes.headline_table(recs)}
    assert set(rows) == {"text_only", "image_text"}  # missing regimes are left out, not invented
    assert rows["image_text"]["seeds"] == 3 and abs(rows["image_text"]["mean"] - 0.8) < 1e-9  # ablation/other encoders excluded
    assert abs(rows["text_only"]["sd"] - 0.1) < 1e-9
    from bindlib.core.profiles import OOD_ACCURACY
    assert rows["text_only"]["paper"] == OOD_ACCURACY["text_only"]["value"]


def test_image_knockout_target_sets_and_identity():
    from bindlib import interp as I

    model, vision = tiny_model(), tiny_vision()
    b = sample_batch(TASK, 8, 0, n=(3, 8))
    p = vision.prompts(b, seed=1)
    adapter = ImageAdapter(vision.dim, 32)
    sets = I.image_target_sets(p, seed=0)
    image = torch.zeros_like(sets["query_patches"])
    image[:, p.start:p.start + vision.n_tokens] = True
    assert sets["query_patches"].any(-1).all(), "every queried object covers a patch"
    assert not (sets["query_patches"] & sets["other_patches"]).any()
    assert not (sets["background_patches"] & (sets["query_patches"] | sets["other_patches"])).any()
    assert torch.equal(p.batch.tokens[sets["answer_item"]], b.target)
    for name in ("query_patches", "other_patches", "background_patches"):
        assert not (sets[name] & ~image).any() and not (sets[f"random_{name}"] & ~image).any()
        assert torch.equal(sets[f"random_{name}"].sum(-1), sets[name].sum(-1))
    inputs = p.model_inputs(adapter)
    clean = I.readout_logits(model, inputs, p.batch.query_pos)
    none = torch.zeros_like(image)
    torch.testing.assert_close(I.knockout(model, p.batch, none, [0, 1], inputs=inputs), clean, rtol=0, atol=0)
    assert (I.knockout(model, p.batch, image, [0, 1], inputs=inputs) - clean).abs().max() > 1e-4


def test_context_positions_keep_the_text_positions_after_the_image():
    """With image positions 'context' the image block spreads over the 2N context positions it replaces,
    so the association lines and the query keep the position ids they have in the text prompt."""
    from bindlib.core.task import TaskConfig, sample_batch
    from bindlib.core.relayout import relayout_context

    text = sample_batch(TaskConfig(), 6, seed=3, n=(2, 8))
    img = relayout_context(text, 49, "image", positions="context")
    seq = relayout_context(text, 49, "image")
    for b in range(6):
        q_text, q_img = int(text.query_pos[b]), int(img.query_pos[b])
        assert int(img.position_ids[b, q_img]) == int(text.position_ids[b, q_text])  # the query keeps its id
        assert int(seq.position_ids[b, q_img]) == q_img  # sequence ids move with the image block
        n2 = 2 * int(text.n_objects[b])
        block = img.position_ids[b, 1:50]
        assert int(block.min()) == 1 and int(block.max()) == n2 and bool((block.diff() >= 0).all())
    # noise with context positions: the real tokens keep their order inside the text context's position range,
    # and the association lines and the query keep their text positions
    noised = add_noise(text, 49, seed=4, positions="context")
    for b in range(6):
        q_text, q_noise = int(text.query_pos[b]), int(noised.query_pos[b])
        assert int(noised.position_ids[b, q_noise]) == int(text.position_ids[b, q_text])
        n2 = 2 * int(text.n_objects[b])
        real = noised.position_ids[b, 1:50][noised.tokens[b, 1:50] != NOISE]
        assert len(real) == n2 and int(real.min()) >= 1 and int(real.max()) <= n2 and bool((real.diff() >= 0).all())
    with pytest.raises(ValueError, match="positions 'middle'"):
        relayout_context(text, 49, "noise", positions="middle")


# ---------------------------------------------------------------- object tokens (the short image layout)
@pytest.mark.parametrize("positions", ["sequence", "context"])
def test_object_tokens_compute_what_all_patches_compute_with_the_background_masked(positions):
    """objects_only drops the patches no object covers. Each kept token keeps its position id, so the
    short sequence computes exactly what the 49-patch one does when no query may attend to the background."""
    model, vision = tiny_model(), tiny_vision()
    vision.positions = positions
    b = sample_batch(TASK, 8, 0, n=(2, 8))
    full = vision.prompts(b, seed=5)
    short = full.objects_only()
    covered = full.object_patches.any(1)
    width = int(covered.sum(1).max())
    assert short.features.shape[1] == width < full.features.shape[1]
    assert short.batch.tokens.shape[1] == full.batch.tokens.shape[1] - (49 - width)
    assert (short.batch.target == full.batch.target).all()
    assert short.batch.tokens.gather(1, short.batch.query_pos[:, None]).equal(
        full.batch.tokens.gather(1, full.batch.query_pos[:, None]))
    for i in range(8):  # every object is still covered by its own patches, in raster order
        kept = torch.nonzero(covered[i]).flatten()
        assert short.batch.position_ids[i, 1:1 + len(kept)].equal(full.batch.position_ids[i, 1 + kept])
        for k in range(int(b.n_objects[i])):
            assert int(short.object_patches[i, k].sum()) == int(full.object_patches[i, k].sum()) > 0
    adapter = ImageAdapter(vision.dim, 32)
    masked = full.model_inputs(adapter)
    masked["key_mask"] = masked["key_mask"].clone()
    masked["key_mask"][:, 1:50] &= covered
    with torch.no_grad():
        rows = torch.arange(8)
        want = model(**masked)[rows, full.batch.query_pos]
        got = model(**short.model_inputs(adapter))[rows, short.batch.query_pos]
    assert torch.allclose(want, got, atol=1e-5)
    # and packed training batches of the short layout read out the same answers
    packed = pack_queries(short.batch, ("two_hop",))
    assert (packed.target[packed.target >= 0] >= 0).all() and packed.tokens.shape[1] < pack_queries(full.batch, ("two_hop",)).tokens.shape[1]


def test_object_tokens_are_a_vision_setting():
    from bindlib.core.relayout import VisionConfig

    assert VisionConfig(encoder="pixels").to_dict() == {"encoder": "pixels"}  # earlier runs' configs compare equal
    assert VisionConfig(encoder="pixels", image_tokens="objects").to_dict()["image_tokens"] == "objects"
    with pytest.raises(ValueError, match="image_tokens 'some'"):
        VisionConfig(image_tokens="some")
    vision = tiny_vision()
    vision.tokens = "objects"
    p = vision.prompts(sample_batch(TASK, 4, 0, n=(2, 8)), seed=0)
    assert p.features.shape[1] <= 8 * 4 and p.batch.meta["image_tokens"] == "objects"
