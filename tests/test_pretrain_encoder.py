"""Pretraining the project encoders (bindlib.pretrain, `python -m bindlib pretrain-encoder`)
and the cpu image profile (encoders.profile_encoder, RENDER_PROFILES)."""
from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

from bindlib.vision import encoders as E
from bindlib.interp.probes import probe_encoders
from bindlib.vision import pretrain as P
from bindlib.__main__ import main
from bindlib.core.io import CheckpointError
from bindlib.vision.render import RenderConfig, patch_grid, render_batch
from bindlib.core.task import TaskConfig, sample_batch


def tiny(name="project_cnn", **kw) -> P.PretrainConfig:
    net = asdict(E.tiny_config(name))
    if name == "project_vit":
        net["image_size"] = 112
    return P.PretrainConfig(name=name, net_config=net, eval_scenes=16, batch_size=8, **kw)


# ---------------------------------------------------------------- labels
def test_patch_labels_name_the_object_with_most_pixels_or_background():
    cfg = E.RENDER_PROFILES["cpu"]
    batch = sample_batch(TaskConfig(), 6, seed=2, n=(1, 8))
    images, boxes = render_batch(batch, cfg, seed=2)
    colors, shapes = P.patch_labels(batch, boxes, cfg, patch=16, min_pixels=16)
    assert colors.shape == shapes.shape == (6, 49)
    vocab = batch.vocab
    for i in range(6):
        touched = set(np.concatenate(patch_grid(boxes[i], 112, 16)).tolist())
        for t in range(49):
            if t not in touched:  # no box reaches this patch: background for both heads
                assert colors[i, t] == vocab.n_colors and shapes[i, t] == vocab.n_shapes
        for k, ((x0, y0, x1, y1), cells) in enumerate(zip(boxes[i], patch_grid(boxes[i], 112, 16))):
            # the patch holding the box's centre pixel is labelled with object k when its shape is solid there
            cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
            t = (cy // 16) * 7 + cx // 16
            if (images[i, :, cy, cx] != 0.5).any() and colors[i, t] != P.IGNORE:
                assert colors[i, t] == batch.colors[i, k] - vocab.color_offset
                assert shapes[i, t] == batch.shapes[i, k] - vocab.shape_offset
    # ignored patches are the same for both heads, and some patches are objects
    assert torch.equal(colors == P.IGNORE, shapes == P.IGNORE)
    assert ((colors >= 0) & (colors < vocab.n_colors)).any()


def test_sliver_patches_are_ignored_and_counted_from_shape_pixels():
    cfg = RenderConfig(canvas_size=112)
    batch = sample_batch(TaskConfig(), 1, seed=0, n=1)
    _, boxes = render_batch(batch, cfg, seed=0)
    colors, _ = P.patch_labels(batch, boxes, cfg, patch=16, min_pixels=10_000)  # no patch can hold that many
    assert (colors[0] != P.IGNORE).sum() >= 49 - 4  # only the patches with object pixels are ignored
    assert (colors[0] == P.IGNORE).sum() >= 1


# ---------------------------------------------------------------- the objective learns
@pytest.mark.parametrize("name", ["project_cnn", "project_vit"])
def test_objective_loss_decreases_on_a_fixed_batch(name):
    cfg = tiny(name)
    torch.manual_seed(0)
    net = E.build_net(cfg.net_cfg(), seed=0)
    model = P.PatchClassifier(net, 16, 16)
    images, colors, shapes = P.make_scenes(cfg, 8, seed=1, patch=16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = P.objective(model, images, colors, shapes)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_pretrain_stops_at_the_target_and_records_what_it_reached():
    summary = P.pretrain(tiny(max_steps=3, eval_every=1, target=0.0), log=lambda *_: None)[1]
    assert summary["steps"] == 1 and summary["stopped"] == "target_reached"
    held = summary["held_out"]
    assert 0.0 <= held["color_object"] <= 1.0 and held["object_patches"] > 0
    assert summary["history"][-1]["step"] == 1


def test_trained_trunk_gives_the_same_tokens_as_the_frozen_encoder(tmp_path):
    trunk, _ = P.pretrain(tiny(max_steps=2, eval_every=2), log=lambda *_: None)
    path = E.save_project_encoder(trunk, "project_cnn", tmp_path)
    enc = E.load_project_encoder("project_cnn", path)
    x = torch.rand(2, 3, 112, 112)
    with torch.no_grad():
        direct = trunk(P.normalise(x))  # what the heads were trained on
    assert torch.allclose(enc.encode(x), direct, atol=1e-5)


# ---------------------------------------------------------------- the command
@pytest.mark.parametrize("name", ["project_cnn", "project_vit"])
def test_command_writes_verified_weights_and_a_results_file(name, tmp_path):
    out = tmp_path / name
    rc = main(["pretrain-encoder", "--allow-dirty", "--name", name, "--tiny", "--max-steps", "2", "--eval-every", "1",
               "--eval-scenes", "8", "--batch-size", "4", "--out", str(out), "--results-dir", str(tmp_path),
               "--quiet", "--threads", "1"])
    assert rc == 0
    enc = E.profile_encoder(name, "cpu", weights=out)
    assert enc.pretrained and enc.weights_id.startswith("sha256:")
    assert enc.encode(torch.rand(1, 3, 112, 112)).shape == (1, 49, enc.dim)
    meta = json.loads((out / "encoder.json").read_text())
    assert meta["steps"] == 2 and "per-patch" in meta["objective"] and meta["image_size"] == 112
    assert meta["provenance"]["command"].startswith("python -m bindlib pretrain-encoder")
    record = json.loads((tmp_path / f"encoder_{name}_cpu_tiny.json").read_text())  # --tiny is in the name
    assert record["kind"] == "encoder_pretraining" and record["encoder_sha256"] == meta["sha256"]
    assert set(record["held_out"]) >= {"color_object", "shape_object", "color_all", "shape_all"}

    weights = out / "encoder.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="sha256") as err:
        E.profile_encoder(name, "cpu", weights=out)
    assert "git checkout" in str(err.value) and "pretrain" in str(err.value)  # says how to fix it


def test_missing_weights_name_the_command():
    with pytest.raises(E.EncoderUnavailable, match="pretrain-encoder --name project_vit"):
        E.load_project_encoder("project_vit", "/nonexistent/folder")


# ---------------------------------------------------------------- the cpu profile
def test_cpu_render_profile_is_112_px_with_16_px_objects():
    cfg = E.RENDER_PROFILES["cpu"]
    assert cfg == RenderConfig(canvas_size=112) and cfg.object_size == 16


@pytest.mark.parametrize("name", ["project_cnn", "project_vit", "random_cnn", "pixels"])
def test_profile_encoder_gives_49_tokens_at_the_cpu_profile(name, tmp_path):
    kw = {}
    if name in E.PROJECT_CONFIGS and not (E.project_encoder_dir(name) / "encoder.json").exists():
        # before the committed weights exist: the same call on weights of the same architecture
        kw["weights"] = E.save_project_encoder(E.project_encoder(name), name, tmp_path)
    enc = E.profile_encoder(name, profile="cpu", **kw)
    images = torch.rand(2, 3, 112, 112)
    tokens = enc.encode(images)
    assert tokens.shape == (2, 49, enc.dim)
    assert enc.dim == (768 if name == "pixels" else 128)
    assert not any(p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.training  # stays frozen in eval mode


def test_controls_at_the_cpu_profile_match_get_encoder():
    assert E.get_encoder("random_cnn", image_size=112).n_tokens() == 49
    assert E.get_encoder("pixels", image_size=112).n_tokens() == 49
    a, b = E.profile_encoder("random_cnn"), E.profile_encoder("random_cnn")
    x = torch.rand(1, 3, 112, 112)
    assert torch.equal(a.encode(x), b.encode(x)) and not a.pretrained


def test_unknown_profile_is_refused():
    with pytest.raises(ValueError, match="allowed"):
        E.profile_encoder("pixels", profile="phone")


def test_paper_profile_pretrains_at_224_px_with_196_tokens(tmp_path):
    out = tmp_path / "vit_paper"
    rc = main(["pretrain-encoder", "--allow-dirty", "--name", "project_vit", "--profile", "paper", "--tiny", "--max-steps", "1",
               "--eval-every", "1", "--eval-scenes", "4", "--batch-size", "2", "--out", str(out),
               "--results-dir", str(tmp_path), "--quiet", "--threads", "1"])
    assert rc == 0 and (tmp_path / "encoder_project_vit_paper_tiny.json").exists()
    enc = E.profile_encoder("project_vit", "paper", weights=out)
    assert enc.encode(torch.rand(1, 3, 224, 224)).shape[1] == 196
    assert E.project_encoder_dir("project_vit", "paper").name == "project_vit_paper"


def test_linear_probe_reads_colour_from_raw_pixels():
    pixels = E.profile_encoder("pixels", profile="cpu")
    result = probe_encoders([pixels], n_train=40, n_test=20, steps=40, lr=0.2)["pixels"]
    assert set(result) >= {"color_object", "shape_object", "color_all", "shape_all"} and result["object_patches"] > 0
    assert result["color_object"] > 0.5  # colour is in the pixels: far above a 1-in-16 guess
