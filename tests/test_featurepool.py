"""The feature pool, grid-aligned scenes, the image-stage levers and the encoder ceiling."""
import pytest
import torch

from bindlib.core.task import TaskConfig
from bindlib.vision import featurepool as FP
from bindlib.vision.multimodal import Vision
from bindlib.vision.render import RenderConfig, place_objects
from bindlib.training.train import Stage, TrainConfig, train


def test_grid_render_puts_each_object_in_one_cell():
    cfg = RenderConfig(canvas_size=112, grid=16)
    assert cfg.object_size == 16 and cfg.capacity == 49
    corners = place_objects(20, cfg, __import__("numpy").random.default_rng(0))
    assert (corners % 16 == 0).all() and len({tuple(c) for c in corners.tolist()}) == 20
    with pytest.raises(ValueError, match="one object per cell"):
        RenderConfig(canvas_size=112, grid=16, object_size=12)


@pytest.fixture
def pool_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(FP, "POOL_DIR", tmp_path)
    return tmp_path


def test_pool_is_built_once_keyed_and_epochs_cover_it(pool_dir):
    task = TaskConfig()
    vision = Vision.for_profile("random_cnn", "cpu")
    pool = FP.load_or_build_pool(vision, task, size=24, seed=0)
    files = list(pool_dir.glob("*.safetensors"))
    assert len(files) == 1 and pool.key in files[0].name
    again = FP.load_or_build_pool(vision, task, size=24, seed=0)
    assert torch.equal(again.features, pool.features)
    assert FP.pool_key(vision, task, 24, 1) != pool.key
    # three steps of 8 rows are one epoch: every scene exactly once
    seen = torch.cat([pool.indices(s, 8) for s in range(3)])
    assert sorted(seen.tolist()) == list(range(24))
    # prompts from the pool match what rendering those scenes would give
    p = pool.prompts(task, torch.arange(4), seed=5)
    assert p.features.shape == (4, 49, vision.dim) and p.batch.tokens.shape[0] == 4
    assert p.object_patches[torch.arange(4), 0].any(-1).all()
    # the pictures stay, the text parts (items, order, query) are fresh on every use
    q = pool.prompts(task, torch.arange(4), seed=6)
    assert torch.equal(p.batch.colors, pool.colors[:4]) and torch.equal(q.batch.shapes, pool.shapes[:4])
    assert not torch.equal(p.batch.items, q.batch.items)
    rows = torch.arange(4)
    assert torch.equal(p.batch.target, p.batch.items[rows, p.batch.query_slot])


def test_training_with_a_pool_and_a_frozen_warmup(pool_dir, tmp_path):
    from bindlib.core import io
    from bindlib.core.model import Transformer

    base = TrainConfig(batch_size=4, eval_every=2, eval_size=8, early_stop=None, packed=True, warmup=1)
    model = Transformer(base.model_config())
    io.save_checkpoint(model, tmp_path / "start", meta={})
    stages = [Stage("warm", 2, {"two_hop": 1.0, "color_to_shape": 1.0}, image=1.0, grounding=1.0, freeze="lm"),
              Stage("image", 2, {"two_hop": 1.0}, image=0.5, lr_scale=0.3)]
    cfg = TrainConfig(batch_size=4, eval_every=2, eval_size=8, early_stop=None, packed=True, warmup=1, stages=stages,
                      vision={"encoder": "random_cnn", "pool_size": 8}, init_from=str(tmp_path / "start"),
                      cpu_bf16=True)
    trained, history, parts = train(cfg, out_dir=tmp_path / "run", progress=False, log=None, with_parts=True,
                                    image_steps=FP.build_image_parts)
    start, _ = io.load_checkpoint(tmp_path / "start")
    after_warm, _ = io.load_checkpoint(tmp_path / "run")  # the last state: after the unfrozen stage
    assert parts.pool is not None and len(parts.pool) == 8
    assert "acc_image_pool_two_hop" in history[0]
    # the frozen stage moved only the adapter: resume a run that stops after it and compare weights
    cfg_warm = TrainConfig(**{**cfg.to_dict(), "stages": [cfg.to_dict()["stages"][0]]})
    warm_model, _ = train(cfg_warm, progress=False, log=None, image_steps=FP.build_image_parts)
    for (n, a), b in zip(warm_model.state_dict().items(), start.state_dict().values()):
        assert torch.equal(a.float(), b.float()), n
    assert any(not torch.equal(a.float(), b.float()) for a, b in zip(after_warm.state_dict().values(),
                                                                     start.state_dict().values()))
    with pytest.raises(ValueError, match="freeze"):
        Stage("x", 1, freeze="all")


def test_oracle_ceiling_reports_a_share():
    vision = Vision.for_profile("random_cnn", "cpu")
    out = FP.oracle_ceiling(vision, TaskConfig(), n_train=32, n_test=16, steps=20)
    assert 0.0 <= out["two_hop_ceiling"] <= out["found_queried_object"] + 1e-9 <= 1.0 + 1e-9
    assert out["queries"] > 0


def test_image_commands_fail_with_one_clear_line(capsys):
    from bindlib.__main__ import main

    assert main(["image-stage", "--allow-dirty", "--recipe", "nope", "--threads", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown image recipe 'nope'" in err[0] and "warm" in err[0]
