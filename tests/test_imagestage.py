"""The image recipes of the correction test: what they train and from which start."""
import pytest

from bindlib.core import io
from bindlib.experiments.imagestage import image_recipe_config, image_recipe_tag, recipe_regime


def test_noise_replay_has_noise_in_every_text_batch_from_the_image_stage_on():
    cfg = image_recipe_config("noise_replay", 0, "project_cnn_grid", image_steps=400, mix_steps=100)
    assert [s.name for s in cfg.stages] == ["image", "mix"]
    assert all(s.noise for s in cfg.stages)
    assert 0 < cfg.stages[0].image < 1  # text replay steps exist, and they carry the noise
    assert recipe_regime("noise_replay") == "noise_image_text" and recipe_regime("replay") == "image_text"
    assert not any(s.noise for s in image_recipe_config("replay", 0, "project_cnn_grid").stages)


def test_a_learned_position_start_keeps_its_positional_encoding():
    start = "data/checkpoints/text_only_cpu_s0_learnedpos"
    want = io.read_checkpoint_meta(io.REPO_ROOT / start)["model_config"]["pos_encoding"]
    cfg = image_recipe_config("replay", 0, "project_cnn_grid", init_from=start)
    assert want == "learned" and cfg.model_config().pos_encoding == "learned"
    assert image_recipe_config("replay", 0, "project_cnn_grid").model_config().pos_encoding == "rope"
    assert image_recipe_tag("replay", 0, cfg, 4000).endswith("_img4000_from_text_only_cpu_s0_learnedpos")
    own = image_recipe_config("replay", 0, "project_cnn_grid", init_from="data/checkpoints/text_only_cpu_s0")
    assert image_recipe_tag("replay", 0, own, 4000) == "replay_project_cnn_grid_cpu_s0_pool4096_img4000"


def test_text_matched_is_replay_with_every_image_step_a_text_step():
    replay = image_recipe_config("replay", 0, "project_cnn_grid", image_steps=400, mix_steps=100)
    text = image_recipe_config("text_matched", 0, "project_cnn_grid", image_steps=400, mix_steps=100)
    assert [(s.steps, s.mix) for s in text.stages] == [(s.steps, s.mix) for s in replay.stages]
    assert not text.uses_images and not any(s.noise for s in text.stages)
    assert all(s.noise for s in image_recipe_config("noise_text_matched", 0, "project_cnn_grid").stages)
    assert recipe_regime("text_matched") == "text_only_matched" and recipe_regime("noise_text_matched") == "noise_text"
    assert image_recipe_tag("text_matched", 1, image_recipe_config("text_matched", 1), 4000) == "text_matched_cpu_s1_img4000"


def test_a_text_control_runs_end_to_end_without_image_parts(tmp_path, monkeypatch):
    from bindlib.experiments.imagestage import run_image_recipe

    monkeypatch.setattr(io, "CHECKPOINTS_DIR", tmp_path / "ckpt")
    monkeypatch.chdir(tmp_path)  # its resumable state goes to runs/ under the working directory
    name, rec = run_image_recipe("text_matched", 0, "project_cnn_grid", "cpu", "test", "0" * 40, image_steps=3,
                                 mix_steps=2, log=lambda *a: None)
    assert name == "imagestage_text_matched_cpu_s0_img3" and rec["regime"] == "text_only_matched"
    assert rec["image_id_accuracy"] is None and rec["steps"] == 5 and "image_id_accuracy" not in rec["targets"]
    assert (tmp_path / "ckpt" / name / "model.json").exists()


def test_the_image_stage_keeps_the_start_text_distribution(tmp_path, monkeypatch):
    """A shortcut-dial start keeps its declared share in the image stage's text (and image) batches."""
    from bindlib.experiments.imagestage import image_recipe_config
    from bindlib.core.model import ModelConfig, Transformer

    monkeypatch.setattr(io, "REPO_ROOT", tmp_path)
    model = Transformer(ModelConfig(vocab_size=72, n_layers=1, d_model=16, n_heads=2, d_ff=32))
    io.save_checkpoint(model, tmp_path / "ckpt", meta={"train_config": {"declared_share": 1.0}})
    assert image_recipe_config("replay", 0, init_from="ckpt").declared_share == 1.0
    assert image_recipe_config("replay", 0, init_from="missing").declared_share == 0.0


def test_context_image_positions_run_end_to_end_and_reload(tmp_path, monkeypatch):
    from bindlib.experiments.imagestage import run_image_recipe
    from bindlib.vision import featurepool
    from bindlib.vision.multimodal import load_image_model

    monkeypatch.setattr(io, "CHECKPOINTS_DIR", tmp_path / "ckpt")
    monkeypatch.setattr(featurepool, "POOL_DIR", tmp_path / "pools")
    monkeypatch.chdir(tmp_path)
    name, rec = run_image_recipe("replay", 0, "project_cnn_grid", "cpu", "test", "0" * 40, pool_size=16,
                                 init_from="data/checkpoints/text_only_cpu_s0_learnedpos", image_steps=2, mix_steps=1,
                                 image_positions="context", log=lambda *a: None)
    assert name.endswith("_img2_ctxpos_from_text_only_cpu_s0_learnedpos") and rec["steps"] == 3
    assert rec["train_config"]["vision"]["image_positions"] == "context"
    _, _, vision, _ = load_image_model(tmp_path / "ckpt" / name)
    assert vision.positions == "context"


def test_a_dial_start_is_held_to_its_own_text_distribution(tmp_path, monkeypatch):
    from bindlib.experiments.imagestage import run_image_recipe

    model, meta = io.load_checkpoint(io.REPO_ROOT / "data/checkpoints/text_only_cpu_s0")
    io.save_checkpoint(model, tmp_path / "dial", meta={"train_config": {**meta["train_config"], "declared_share": 1.0}})
    monkeypatch.setattr(io, "CHECKPOINTS_DIR", tmp_path / "ckpt")
    monkeypatch.chdir(tmp_path)
    _, rec = run_image_recipe("text_matched", 0, "project_cnn_grid", "cpu", "test", "0" * 40, image_steps=2,
                              mix_steps=1, init_from=str(tmp_path / "dial"), log=lambda *a: None)
    assert rec["train_config"]["declared_share"] == 1.0
    assert rec["train_id_accuracy"] == rec["declared"]["id_accuracy"] > 0.9  # the recipe's model reads any order


def test_every_text_control_is_named_and_filed_as_text():
    from bindlib.experiments.imagestage import TEXT_RECIPES, image_recipe_tag, recipe_regime

    for recipe in TEXT_RECIPES:
        assert image_recipe_tag(recipe, 0, image_recipe_config(recipe, 0), 4000) == f"{recipe}_cpu_s0_img4000"
        assert recipe_regime(recipe) in ("text_only_matched", "noise_text")


def test_object_tokens_run_end_to_end_and_reload(tmp_path, monkeypatch):
    from bindlib.experiments.imagestage import image_recipe_config, run_image_recipe
    from bindlib.vision import featurepool
    from bindlib.vision.multimodal import load_image_model

    monkeypatch.setattr(io, "CHECKPOINTS_DIR", tmp_path / "ckpt")
    monkeypatch.setattr(featurepool, "POOL_DIR", tmp_path / "pools")
    monkeypatch.chdir(tmp_path)
    name, rec = run_image_recipe("replay", 0, "project_cnn_grid", "cpu", "test", "0" * 40, pool_size=16,
                                 image_steps=2, mix_steps=1, image_tokens="objects", log=lambda *a: None)
    assert name.endswith("_img2_objtok") and rec["steps"] == 3
    assert rec["train_config"]["vision"]["image_tokens"] == "objects"
    _, _, vision, _ = load_image_model(tmp_path / "ckpt" / name)
    assert vision.tokens == "objects"
    with pytest.raises(ValueError, match="trains on text only"):
        image_recipe_config("text_matched", 0, init_from="x", image_tokens="objects")


def test_noise_positions_name_the_run_and_need_a_noise_recipe():
    cfg = image_recipe_config("noise_text_matched", 0, init_from="x", image_steps=40, mix_steps=4,
                              noise_positions="context")
    assert cfg.vision.noise_positions == "context" and cfg.to_dict()["vision"]["noise_positions"] == "context"
    assert image_recipe_tag("noise_text_matched", 0, cfg, 4000) == "noise_text_matched_cpu_s0_img4000_ctxnoise_from_x"
    with pytest.raises(ValueError, match="has no noise"):
        image_recipe_config("replay", 0, init_from="x", noise_positions="context")
    assert "noise_positions" not in image_recipe_config("noise_text_matched", 0, init_from="x").to_dict()["vision"]


def test_every_committed_image_stage_run_is_named_from_its_config():
    """The name of a run is a function of what changes its result: rebuilt from each committed record's
    config, it is the record's own file name."""
    from bindlib.training.train import TrainConfig

    records = sorted(io.RESULTS_DIR.glob("imagestage_*.json"))
    assert records
    for path in records:
        rec = io.read_results(path)
        cfg = TrainConfig(**rec["train_config"])
        image_steps = sum(st.steps for st in cfg.stages if st.name != "mix")
        assert "imagestage_" + image_recipe_tag(rec["recipe"], rec["seed"], cfg, image_steps) == path.stem


def test_noise_width_names_the_run_and_needs_noise():
    """The noise-width sweep: a width other than the default is recorded in the vision config and names the run;
    a recipe without noise refuses the flag."""
    from bindlib.experiments.imagestage import image_recipe_config, image_recipe_tag

    cfg = image_recipe_config("noise_text_matched", 0, image_steps=4000, mix_steps=400, noise_width=16)
    assert cfg.noise_width == 16 and cfg.vision.to_dict()["noise_width"] == 16
    assert image_recipe_tag("noise_text_matched", 0, cfg, 4000) == "noise_text_matched_cpu_s0_img4000_noise16"
    default = image_recipe_config("noise_text_matched", 0, image_steps=4000, mix_steps=400)
    assert image_recipe_tag("noise_text_matched", 0, default, 4000) == "noise_text_matched_cpu_s0_img4000"
    with pytest.raises(ValueError, match="no noise width"):
        image_recipe_config("text_matched", 0, noise_width=16)


def test_a_run_name_does_not_depend_on_the_working_directory(monkeypatch, tmp_path):
    """A chapter runs in chapters/: the name of an image-stage run must be the same there as at the repository root."""
    from bindlib.experiments.imagestage import image_recipe_config, image_recipe_tag

    cfg = image_recipe_config("text_matched", 0, image_steps=4000, mix_steps=400)
    at_root = image_recipe_tag("text_matched", 0, cfg, 4000)
    monkeypatch.chdir(tmp_path)
    assert image_recipe_tag("text_matched", 0, cfg, 4000) == at_root == "text_matched_cpu_s0_img4000"
