"""bindlib.book.no_deep_supervision: the hop_weight = 0 arm's curve, plateau exit and interchange reading,
on small synthetic results files (tmp_path)."""
import pytest

from bindlib.book import control_data as D, no_deep_supervision as N
from test_book_controls import interchange, write

STAGES = [{"name": "subskills", "steps": 1000}, {"name": "compose", "steps": 500},
          {"name": "full_n", "steps": 1000}, {"name": "two_hop", "steps": 1000}]


def stage_of(step, offset=0):
    ends = [1000, 1500, 2500, 3500]
    return next(st["name"] for st, e in zip(STAGES, ends) if step + offset <= e)


def arm_training(seed, break_at=None, end=3000):
    """A run on the plateau (0.25) until ``break_at`` (never: None), then at 99.6%."""
    hist = [{"step": s, "stage": stage_of(s), "acc_two_hop": 0.996 if break_at and s >= break_at else 0.25}
            for s in range(100, end + 1, 100)]
    return {"kind": "training_variant", "seed": seed, "history": hist, "id_accuracy": hist[-1]["acc_two_hop"],
            "ood_accuracy": 0.9, "steps": end, "steps_to_99": break_at, "train_config": {"task": {}, "stages": STAGES},
            "provenance": {"wall_seconds": 60.0}}


def test_stage_bounds_and_plateau_exit():
    assert N.stage_bounds({"stages": STAGES})[:2] == [("subskills", 1, 1000), ("compose", 1001, 1500)]
    hist = [{"step": 100, "acc_two_hop": 0.30}, {"step": 200, "acc_two_hop": 0.34}, {"step": 300, "acc_two_hop": 0.9}]
    assert N.left_plateau_at(hist, 0.245) == 300  # 0.34 is within the margin of guessing, 0.9 is not
    assert N.left_plateau_at(hist[:2], 0.245) is None


def test_runs_say_when_and_in_which_stage_the_plateau_broke(tmp_path):
    write(tmp_path, "training_text_only_cpu_s0_steps8x_hopw0.json", arm_training(0, break_at=800))
    write(tmp_path, "training_text_only_cpu_s1_steps8x_hopw0.json", arm_training(1, break_at=1200))
    write(tmp_path, "training_text_only_cpu_s2_steps8x_hopw0.json", arm_training(2))
    runs = N.training_runs(tmp_path)
    assert [(r["seed"], r["left_at"], r["left_stage"]) for r in runs] == [
        (0, 800, "subskills"), (1, 1200, "compose"), (2, None, None)]
    assert [r["steps_to_99"] is not None for r in runs] == [True, True, False] and runs[2]["steps"] == 3000
    frame = N.training_table(tmp_path)
    assert list(frame.index) == ["seed 0", "seed 1", "seed 2"]
    assert list(frame["left plateau"]) == ["800 (subskills)", "1,200 (compose)", "-"]
    assert list(frame["status"]) == ["finished"] * 3 and frame.loc["seed 2", "two-hop (latest)"] == "25.0%"
    spec = N.curve_chart(tmp_path).to_dict()
    assert len(spec["layer"]) == 3  # stage rules and labels, the seeds' lines, guessing


def test_a_run_that_never_left_says_where_its_one_hop_queries_ended(tmp_path):
    stuck = arm_training(2)
    stuck["history"][-1].update(acc_color_to_shape=0.006, acc_shape_to_item=0.041)
    write(tmp_path, "training_text_only_cpu_s2_steps8x_hopw0.json", stuck)
    row = N.training_table(tmp_path).loc["seed 2"]
    assert (row["colour -> shape (latest)"], row["shape -> item (latest)"]) == ("0.6%", "4.1%")


def test_a_run_still_training_is_read_from_its_progress_record(tmp_path):
    write(tmp_path, "training_text_only_cpu_s0_steps8x_hopw0.json", arm_training(0, break_at=800))
    going = {**arm_training(2, end=1700), "kind": "training_progress", "of": "training_text_only_cpu_s2_steps8x_hopw0",
             "step": 1700, "run_dir": "runs/text_only_cpu_s2_steps8x_hopw0"}
    for k in ("id_accuracy", "ood_accuracy", "steps", "steps_to_99"):
        going.pop(k)
    write(tmp_path, "progress_training_text_only_cpu_s2_steps8x_hopw0.json", going)
    stale = {**going, "of": "training_text_only_cpu_s0_steps8x_hopw0", "seed": 0}  # its run has finished since
    write(tmp_path, "progress_training_text_only_cpu_s0_steps8x_hopw0.json", stale)
    runs = N.training_runs(tmp_path)
    assert [(r["seed"], r["unfinished"], r["steps"]) for r in runs] == [(0, False, 3000), (2, True, 1700)]
    assert runs[1]["id_accuracy"] is None and runs[1]["budget"] == 3500
    assert [(r["left_at"], r["left_stage"]) for r in runs] == [(800, "subskills"), (None, None)]
    frame = N.training_table(tmp_path)
    assert list(frame["status"]) == ["finished", "training"] and frame.loc["seed 2", "steps"] == "1,700 of 3,500"
    assert frame.loc["seed 2", "ID"] == "-" and frame.loc["seed 0", "OOD"] == "90.0%"
    assert len(N.curve_chart(tmp_path).to_dict()["layer"]) == 3


def test_arm_table_reads_the_arm_beside_the_recipe(tmp_path):
    for s, p_pos in ((0, 0.0), (1, 0.97)):
        write(tmp_path, f"training_text_only_cpu_s{s}_steps8x_hopw0.json", arm_training(s, break_at=800))
        write(tmp_path, f"interchange_text_only_cpu_s{s}_steps8x_hopw0.json",
              interchange(s, "_steps8x_hopw0", 2, p_pos, 1 - p_pos, 0.9 if p_pos else 0.02, rebind=1 - p_pos))
    write(tmp_path, "interchange_text_only_cpu_s0.json", interchange(0, None, 2, 0.0, 1.0, 0.02, rebind=1.0))
    write(tmp_path, "training_text_only_cpu_s0.json", {"kind": "training", "seed": 0, "id_accuracy": 1.0, "ood_accuracy": 0.97})
    frame = N.arm_table(tmp_path)
    assert list(frame.index) == ["no deep sup. s0", "no deep sup. s1", "recipe, mean of 1"]
    assert list(frame["reads"]) == ["symbolic", "positional", "symbolic"] and frame.iloc[0]["left plateau"] == "800"
    assert list(frame["BS"]) == ["+1.00", "-0.94", "+1.00"]
    claim = D.control_claims(tmp_path)[2]
    assert claim[2] == "does not hold" and "2 seeds: BS +1.00, -0.94" in claim[1]  # one seed reads positional


def test_nothing_trained_says_so(tmp_path):
    assert len(N.training_table(tmp_path)) == 0
    assert len(N.arm_table(tmp_path)) == 0 and N.training_runs(tmp_path) == []
    assert D.arm_rows(N.SUFFIX, tmp_path) == []


def test_a_run_that_left_its_stages_early_shows_the_stages_it_ran(tmp_path):
    """train --leave-at: the run jumps from compose (two-hop 99.6% at step 1,300) to the last stage and stops;
    the chart's stage rules and the plateau exit follow the stages its evaluations name, not the budgets."""
    rec = arm_training(0, break_at=1300, end=1400)
    rec["history"][-1]["stage"] = "two_hop"  # left compose at 1,300: the next evaluation is in the last stage
    write(tmp_path, "training_text_only_cpu_s0_steps8x_hopw0.json", rec)
    run = N.training_runs(tmp_path)[0]
    assert run["stages_run"] == [("subskills", 1), ("compose", 1001), ("two_hop", 1301)]
    assert (run["left_at"], run["left_stage"], run["budget"]) == (1300, "compose", 3500)
    rule, *labels = N.curve_chart(tmp_path).to_dict()["layer"][0]["layer"]
    assert [(v["stage"], v["step"]) for v in rule["data"]["values"]] == [
        ("subskills", 0), ("compose", 1000), ("two_hop", 1300)]
    # neighbouring stage names sit on alternate rows, so a short stage's name cannot overlap the next one's
    assert [[v["stage"] for v in layer["data"]["values"]] for layer in labels] == [["subskills", "two_hop"], ["compose"]]
    assert labels[0]["mark"]["dy"] != labels[1]["mark"]["dy"]


def test_a_stopped_first_run_stays_on_record_beside_the_second(tmp_path):
    """A seed's first run, stopped before its end and recorded from its log (progress --log, run_dir None, its
    own name ``..._firstrun``), is shown beside that seed's second run: its own line and label."""
    first = {**arm_training(0, break_at=800, end=2000), "kind": "training_progress", "step": 2000, "run_dir": None,
             "of": "training_text_only_cpu_s0_steps8x_hopw0_firstrun"}
    for k in ("id_accuracy", "ood_accuracy", "steps", "steps_to_99"):
        first.pop(k)
    write(tmp_path, "progress_training_text_only_cpu_s0_steps8x_hopw0_firstrun.json", first)
    write(tmp_path, "training_text_only_cpu_s0_steps8x_hopw0.json", arm_training(0, break_at=1200))
    runs = N.training_runs(tmp_path)
    assert [(r["label"], r["lost"], r["left_at"]) for r in runs] == [
        ("seed 0, first run", True, 800), ("seed 0, second run", False, 1200)]
    frame = N.training_table(tmp_path)
    assert frame.loc["seed 0, first run", "status"] == "stopped (from its log)"
    assert frame.loc["seed 0, first run", "two-hop (latest)"] == "99.6%"
    values = N.curve_chart(tmp_path).to_dict()["layer"][1]["data"]["values"]
    assert {v["run"] for v in values} == {"seed 0, first run", "seed 0, second run"}
