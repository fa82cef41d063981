"""The image recipes of the correction test: what they train and from which start."""
from bindlib import io
from bindlib.imagestage import image_recipe_config, image_recipe_tag, recipe_regime


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
    assert image_recipe_tag("replay", 0, "project_cnn_grid", 4096, 4000, "text_only_cpu_s0_learnedpos").endswith(
        "_img4000_from_text_only_cpu_s0_learnedpos")
