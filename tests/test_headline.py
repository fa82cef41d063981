"""The headline table with the image stage that learns (bindlib.experiments.headline): which run each cell is, adopting
committed runs only when they are what the settings say, and the regime record it writes."""
import json

import pytest

from bindlib import __main__ as cli
from bindlib.experiments import headline as H
from bindlib.core import io
from bindlib.experiments.recipes import regime_results


def test_each_cell_names_the_committed_image_stage_run():
    rope = H.learning_run("image_text", 1)
    assert rope["name"] == "imagestage_replay_project_cnn_grid_cpu_s1_pool4096_img4000"
    assert rope["config"].init_from == "data/checkpoints/text_only_cpu_s1"  # relative to the repository
    learned = H.learning_run("image_text", 2, "learned")
    assert learned["name"] == ("imagestage_replay_project_cnn_grid_cpu_s2_pool4096_img4000_ctxpos"
                               "_from_text_only_cpu_s2_learnedpos")
    assert learned["config"].vision.image_positions == "context"
    text = H.learning_run("noise_text", 0, "learned")  # a text control: no encoder, no image positions
    assert text["name"] == "imagestage_noise_text_matched_cpu_s0_img4000_from_text_only_cpu_s0_learnedpos"
    assert H.learning_name(rope) == "regime_image_text_project_cnn_grid_cpu_s1_learning"
    assert H.learning_name(text) == "regime_noise_text_cpu_s0_learnedpos_learning"
    with pytest.raises(ValueError, match="text_only is the text recipe itself"):
        H.learning_run("text_only", 0)


def _copy(run, tmp_path, **change):
    rec = json.loads((io.RESULTS_DIR / f"{run['name']}.json").read_text())
    for k, v in change.items():
        if k == "lr":
            rec["train_config"]["lr"] = v
        else:
            rec[k] = v
    (tmp_path / f"{run['name']}.json").write_text(json.dumps(rec))
    return rec


def test_adopting_checks_the_settings_and_the_weights(tmp_path):
    run = H.learning_run("text_only_matched", 0)
    assert H.adopt(run, tmp_path) is None  # nothing there: train it
    rec = _copy(run, tmp_path)
    assert H.adopt(run, tmp_path)["checkpoint_sha256"] == rec["checkpoint_sha256"]
    _copy(run, tmp_path, lr=3e-4)
    with pytest.raises(ValueError, match=r"was trained with other settings \(lr\); rerun it"):
        H.adopt(run, tmp_path)
    _copy(run, tmp_path, checkpoint_sha256="0" * 64)
    with pytest.raises(ValueError, match="does not hold the weights .* measured"):
        H.adopt(run, tmp_path)


def test_the_regime_record_keeps_the_run_and_stays_out_of_the_first_grid(tmp_path):
    run = H.learning_run("image_text", 0)
    rec = H.adopt(run)
    record = H.learning_record(run, rec, True, "python -m bindlib reproduce --image-stage learning", "cpu", "abc", 0.1)
    assert (record["kind"], record["regime"], record["image_stage"], record["encoder"]) == (
        "regime", "image_text", "learning", "project_cnn_grid")
    assert record["image_id_accuracy"] == rec["image_id_accuracy"] and record["ood_accuracy"] == rec["ood_accuracy"]
    assert record["image_stage_results"] == run["name"] and record["provenance"]["adopted_run"] is True
    assert record["image_stage_provenance"] == rec["provenance"] and "history" not in record
    io.write_results(H.learning_name(run), record, tmp_path)
    assert regime_results(results_dir=tmp_path) == []  # the first grid's tables never see it
    assert len(regime_results(results_dir=tmp_path, image_stage="learning")) == 1


def test_learning_reproduce_refuses_what_it_cannot_run(capsys):
    assert cli.main(["reproduce", "--image-stage", "learning", "--profile", "paper", "--allow-dirty"]) == 2
    assert "--image-stage learning runs the cpu profile's recipe as committed" in capsys.readouterr().err


def _records_an_absolute_path(text: str) -> bool:
    return '": "/' in text or '", "/' in text  # a JSON string value, alone or in a list, starting at the root


def test_committed_results_and_checkpoints_record_repository_relative_paths():
    """Every path a committed results file or checkpoint records is relative to the repository (a run
    from a worktree or another machine is migrated with `python -m bindlib migrate` before it lands)."""
    files = sorted(io.RESULTS_DIR.glob("*.json")) + sorted(io.CHECKPOINTS_DIR.glob("*/model.json"))
    absolute = [f.name for f in files if _records_an_absolute_path(f.read_text())]
    assert len(files) > 100 and absolute == []


def test_the_regime_records_and_the_chapters_table_tell_one_story():
    """The committed regime_*_learning records hold, seed by seed, the OOD accuracy chapter 4's table reads
    from the image-stage runs (for every run that met its targets; the chapter leaves out the others)."""
    from bindlib.book.learning_data import STARTS, ood_by_seed

    book = ood_by_seed()
    checked = 0
    for pos, start in (("rope", STARTS[""]), ("learned", STARTS["_learnedpos"])):
        for r in regime_results(image_stage="learning", pos_encoding=pos):
            if r["meets_targets"]:
                assert book[start][r["regime"]][r["seed"]] == r["ood_accuracy"]
                checked += 1
    assert checked >= 15
