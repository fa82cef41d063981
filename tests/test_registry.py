"""The named runs (bindlib.experiments.registry): declared once as data, run by name, written beside data/."""
from __future__ import annotations

import json

import pytest

from bindlib.__main__ import main
from bindlib.core import io
from bindlib.core.profiles import DATA_DIR, POS_ENCODINGS
from bindlib.experiments import registry as R


def test_each_name_is_computed_from_its_config_and_names_a_committed_file():
    assert len(R.RUNS) == 6 and all(name == run.name for name, run in R.RUNS.items())
    for run in R.RUNS.values():
        assert (io.RESULTS_DIR / f"{run.name}.json").exists() and run.checkpoint.exists(), run.name
        assert io.read_results(io.RESULTS_DIR / f"{run.name}.json", record=False)["pos_encoding"] == run.pos_encoding
    assert R.PositionShift(0, POS_ENCODINGS[1]).name == "position_shift_text_only_cpu_s0_learnedpos"
    with pytest.raises(ValueError, match="pos_encoding"):
        R.PositionShift(0, "sinusoid")


def test_a_named_run_reproduces_its_committed_file(tmp_path, capsys):
    name = "position_shift_text_only_cpu_s0"
    assert main(["run", name, "--out-root", str(tmp_path), "--device", "cpu", "--threads", "1", "--allow-dirty"]) == 0
    assert f"same numbers as data/results/{name}.json" in capsys.readouterr().out
    ours = json.loads((tmp_path / "results" / f"{name}.json").read_text())
    committed = json.loads((io.RESULTS_DIR / f"{name}.json").read_text())
    assert R.records_match(ours, committed) and ours["shifts"] == committed["shifts"]
    assert ours["provenance"]["command"].startswith(f"python -m bindlib run {name}")


@pytest.mark.parametrize("argv, message", [
    (["run", "no_such_run"], "unknown run 'no_such_run'"),
    (["run", "position_shift_text_only_cpu_s0", "--out-root", str(DATA_DIR)], "never over them"),
    (["run", "position_shift_text_only_cpu_s0", "--out-root", str(DATA_DIR / "x")], "never over them"),
])
def test_bad_names_and_output_roots_exit_2(argv, message, capsys):
    before = sorted(p.name for p in io.RESULTS_DIR.iterdir())
    assert main([*argv, "--allow-dirty"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in io.RESULTS_DIR.iterdir()) == before


def test_a_named_run_does_not_overwrite_its_own_output(tmp_path, capsys):
    out = tmp_path / "results" / "position_shift_text_only_cpu_s1.json"
    out.parent.mkdir(parents=True)
    out.write_text("{}")
    assert main(["run", "position_shift_text_only_cpu_s1", "--out-root", str(tmp_path), "--allow-dirty"]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_text() == "{}"
