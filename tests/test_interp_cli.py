"""``python -m bindlib interp``: it runs on a throwaway checkpoint, writes the three results files with
the fields the chapters read, and fails clearly on a missing checkpoint."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from bindlib.core import io, profiles
from bindlib.__main__ import main
from bindlib.core.model import ModelConfig, Transformer
from bindlib.core.task import TaskConfig

pytest.importorskip("nnsight")

TASK = TaskConfig()
SMALL = ["--pairs", "24", "--ood-pairs", "12", "--swap-prompts", "48", "--knockout-prompts", "16",
         "--probe-prompts", "48", "--all-pairs", "--threads", "1"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A freshly built (untrained) 2-layer model saved like a real checkpoint."""
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=TASK.vocab.size, n_layers=2, d_model=32, n_heads=2, d_ff=64,
                                    max_len=TASK.max_len()))
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    io.save_checkpoint(model, path, meta={"train_config": {"task": TASK.to_dict()}, "regime": "text_only", "seed": 0})
    return path


def trained_as(checkpoint, folder, regime, encoder=None):
    """A copy of ``checkpoint`` whose model.json records ``regime`` (and ``encoder``), as training would save it:
    interp refuses to file a checkpoint under a regime it was not trained as."""
    shutil.copytree(checkpoint, folder)
    meta = {**json.loads((folder / "model.json").read_text()), "regime": regime,
            **({"encoder": encoder} if encoder else {})}
    io.atomic_write_json(folder / "model.json", io.with_manifest(meta))
    return folder


@pytest.fixture(scope="module")
def written(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    noise = trained_as(checkpoint, tmp_path_factory.mktemp("noise") / "tiny", "noise_text")
    rc = main(["interp", "--allow-dirty", "--regime", "noise_text", "--seed", "1", "--checkpoint", str(noise),
               "--results-dir", str(out), *SMALL])
    assert rc == 0
    return {p.name: json.loads(p.read_text()) for p in out.glob("*.json")}


def test_writes_one_file_per_kind_named_by_run_tag(written):
    assert set(written) == {f"{k}_noise_text_cpu_s1.json" for k in ("interchange", "knockout", "probe")}
    for name, rec in written.items():
        assert rec["kind"] == name.split("_")[0]
        assert (rec["regime"], rec["seed"], rec["profile"], rec["encoder"]) == ("noise_text", 1, "cpu", None)
        prov = rec["provenance"]
        assert prov["command"].startswith("python -m bindlib interp") and "--checkpoint" in prov["command"]
        assert prov["wall_seconds"] >= 0 and prov["git_commit"]
        assert rec["sizes"]["only_correct"] is False


def test_interchange_schema(written):
    rec = written["interchange_noise_text_cpu_s1.json"]
    n_layers = rec["n_layers"]
    assert n_layers == 2 and rec["layers"] == [0, 1]
    for split, n in (("id", 24), ("ood", 12)):
        s = rec["splits"][split]
        assert s["n_pairs"] == n
        assert len(s["iia"]) == n_layers
        for row in s["iia"]:
            assert set(row) == {"positional", "symbolic", "reflexive"}
            assert all(0.0 <= v <= 1.0 for v in row.values())
        for row in s["per_layer"]:  # the shares of the five outcomes add up to one
            total = sum(row[k] for k in ("positional", "symbolic", "reflexive", "none", "other"))
            assert total == pytest.approx(1.0, abs=1e-3)
        assert s["summary"]["routing_layer"] in rec["layers"]
    assert rec["splits"]["ood"]["n_range"][0] == TASK.ood_range[0]
    assert rec["iia"] == rec["splits"]["id"]["iia"]  # the ID split is also at the top level
    swap = rec["position_swap"]
    assert len(swap["swaps"]) == 3 and swap["n"] == sum(s["n"] for s in swap["swaps"])
    t = rec["timing"]
    assert t["n_pairs"] == 24 and t["threads"] == 1
    assert t["max_abs_logit_diff"] < 1e-3  # the batched sweep computes what the per-pair loop computes
    assert t["packed_seconds"] > 0 and t["loop_seconds_extrapolated"] > 0 and t["loop_pairs"] <= 24


def test_knockout_schema(written):
    rec = written["knockout_noise_text_cpu_s1.json"]
    assert rec["n_prompts"] == 16
    for mode in ("window", "cumulative"):
        sets = rec[mode]["sets"]
        assert {"answer_shape", "answer_item", "query_declaration", "structural", "other_objects",
                "random_answer_item"} <= set(sets)
        for v in sets.values():
            assert len(v["accuracy"]) == len(v["relative_change"]) == rec["n_layers"]
            assert all(0.0 <= a <= 1.0 for a in v["accuracy"])
            assert all(r >= -100.0 - 1e-6 for r in v["relative_change"])  # a probability cannot drop below zero


def test_probe_schema(written):
    rec = written["probe_noise_text_cpu_s1.json"]
    got = {(p["role"], p["target"]) for p in rec["probes"]}
    assert ("shape", "bound_color") in got and ("last", "target_shape") in got
    for p in rec["probes"]:
        assert len(p["layers"]) == rec["n_layers"] and p["n_train"] > 0 and p["n_test"] > 0
        for row in p["layers"]:
            assert {"accuracy", "control_accuracy", "selectivity", "random_init_accuracy"} <= set(row)
            assert row["selectivity"] == pytest.approx(row["accuracy"] - row["control_accuracy"], abs=2e-4)


def test_kinds_subset(checkpoint, tmp_path):
    assert main(["interp", "--allow-dirty", "--regime", "text_only", "--checkpoint", str(checkpoint), "--kinds", "knockout",
                 "--results-dir", str(tmp_path), *SMALL]) == 0
    assert [p.name for p in tmp_path.glob("*.json")] == ["knockout_text_only_cpu_s0.json"]


def test_image_regime_names_the_encoder(checkpoint, tmp_path):
    image = trained_as(checkpoint, tmp_path / "ckpt", "image_text", "project_cnn")
    assert main(["interp", "--allow-dirty", "--regime", "image_text", "--seed", "2", "--checkpoint", str(image),
                 "--kinds", "knockout", "--results-dir", str(tmp_path), *SMALL]) == 0
    rec = json.loads((tmp_path / "knockout_image_text_project_cnn_cpu_s2.json").read_text())
    assert rec["encoder"] == "project_cnn"


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    rc = main(["interp", "--allow-dirty", "--regime", "noise_image_text", "--seed", "7", "--results-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "noise_image_text" in err and "seed 7" in err
    assert "python -m bindlib reproduce" in err and "--seeds 7" in err and "--regimes noise_image_text" in err
    assert not list(tmp_path.iterdir())


def test_missing_text_checkpoint_names_train(tmp_path, capsys):
    assert main(["interp", "--allow-dirty", "--regime", "text_only", "--seed", "9", "--results-dir", str(tmp_path)]) == 2
    assert "python -m bindlib train --profile cpu --seed 9" in capsys.readouterr().err


def test_unknown_kind_and_regime(checkpoint, tmp_path, capsys):
    assert main(["interp", "--allow-dirty", "--regime", "text_only", "--checkpoint", str(checkpoint), "--kinds", "probes",
                 "--results-dir", str(tmp_path)]) == 2
    assert "probes" in capsys.readouterr().err
    assert main(["interp", "--allow-dirty", "--regime", "pictures", "--checkpoint", str(checkpoint),
                 "--results-dir", str(tmp_path)]) == 2
    assert "pictures" in capsys.readouterr().err


def test_all_missing_only_skips_up_to_date_runs(checkpoint, tmp_path, monkeypatch, capsys):
    import shutil

    ckpts = tmp_path / "checkpoints"
    shutil.copytree(checkpoint, ckpts / "text_only_cpu_s0")
    for mod in (io, profiles):
        monkeypatch.setattr(mod, "CHECKPOINTS_DIR", ckpts)
    out = tmp_path / "results"
    args = ["interp", "--allow-dirty", "--all", "--missing-only", "--kinds", "knockout", "--results-dir", str(out), *SMALL]
    assert main(args) == 0
    first = (out / "knockout_text_only_cpu_s0.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main(args) == 0  # nothing to do the second time
    assert "up-to-date" in capsys.readouterr().out
    assert (out / "knockout_text_only_cpu_s0.json").stat().st_mtime_ns == first
    assert [p.name for p in out.glob("*.json")] == ["knockout_text_only_cpu_s0.json"]  # only the checkpoint that exists


def test_weak_model_records_what_it_could_measure(checkpoint, tmp_path):
    """An untrained model answers almost nothing correctly: the file says so instead of the command failing."""
    assert main(["interp", "--allow-dirty", "--regime", "text_only", "--checkpoint", str(checkpoint), "--kinds", "interchange",
                 "--pairs", "40", "--ood-pairs", "20", "--swap-prompts", "32", "--results-dir", str(tmp_path)]) == 0
    rec = json.loads((tmp_path / "interchange_text_only_cpu_s0.json").read_text())
    for split in ("id", "ood"):
        s = rec["splits"][split]
        assert s["pairs_drawn"] >= s["n_pairs"]
        if s["n_pairs"] < 20:
            assert "error" in s and "correctly" in s["error"] and "per_layer" not in s
    assert rec["sizes"]["only_correct"] is True


def test_a_variant_checkpoint_keeps_its_own_name(checkpoint, tmp_path):
    variant = tmp_path / "ckpts" / "text_only_cpu_s0_learnedpos"
    shutil.copytree(checkpoint, variant)
    out = tmp_path / "results"
    assert main(["interp", "--allow-dirty", "--regime", "text_only", "--checkpoint", str(variant), "--kinds", "knockout",
                 "--results-dir", str(out), *SMALL]) == 0
    assert [p.name for p in out.glob("*.json")] == ["knockout_text_only_cpu_s0_learnedpos.json"]
    rec = json.loads((out / "knockout_text_only_cpu_s0_learnedpos.json").read_text())
    assert rec["variant"] == "_learnedpos"
    from bindlib.interp.results import load_interp

    assert load_interp("knockout", results_dir=out) == [], "variants stay out of the regime comparisons"


def test_an_image_recipe_checkpoint_keeps_its_own_name(checkpoint, tmp_path):
    folder = trained_as(checkpoint, tmp_path / "ckpts" / "imagestage_replay_project_cnn_grid_cpu_s0_pool4096",
                        "image_text", "project_cnn_grid")
    out = tmp_path / "results"
    assert main(["interp", "--allow-dirty", "--regime", "image_text", "--encoder", "project_cnn_grid", "--checkpoint",
                 str(folder), "--kinds", "knockout", "--results-dir", str(out), *SMALL]) == 0
    assert [p.name for p in out.glob("*.json")] == [f"knockout_{folder.name}.json"]
    assert json.loads((out / f"knockout_{folder.name}.json").read_text())["variant"] == folder.name[len("imagestage_"):]
