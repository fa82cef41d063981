"""The recipe without deep supervision, every stage eight times as long: the ``hop_weight = 0`` arm.

At the recipe's own budget (5,000 steps) no seed composes the hops without deep supervision (chapter 2's
aid ablation). These runs give the same curriculum eight times the steps, with nothing that asks for the
intermediate hop, and early stop in the last stage as the recipe has:
``python -m bindlib train --hop-weight 0 --steps-scale 8 --leave-at 0.995 --seed S`` (files ``*_steps8x_hopw0``).

    training_runs()       per seed: its curve, where it left the plateau (step and stage), ID and OOD
    curve_chart()         chapter 2: two-hop ID accuracy against step, per seed, with the stage boundaries
    training_table()      chapter 2: per run, where it left the plateau, its latest accuracies, ID and OOD
    arm_table()           chapter 5: the routing layer's reading per seed, beside the recipe's
"""
from __future__ import annotations

import altair as alt
import pandas as pd

from ..core import io
from ..core.task import TaskConfig
from ..core.evaluate import steps_to_reach
from . import control_data as D
from .findings import fixed, pct, signed, table
from .plots import HEIGHT, WIDTH

SUFFIX = D.NO_DEEP_SUPERVISION
COMMAND = "python -m bindlib train --hop-weight 0 --steps-scale 8 --leave-at 0.995 --seed S"


def stage_bounds(train_config: dict) -> list[tuple[str, int, int]]:
    """(stage, first step, last step) of each curriculum stage of a saved training config."""
    out, start = [], 0
    for s in train_config.get("stages", []):
        out.append((s["name"], start + 1, start + s["steps"]))
        start += s["steps"]
    return out


def stages_run(history: list[dict]) -> list[tuple[str, int]]:
    """(stage, first step) of each stage a run actually went through, from the stage its evaluations name: a
    stage left early (``train --leave-at``) ends where the next one's first evaluation begins."""
    out: list[tuple[str, int]] = []
    prev = 0
    for h in history:
        if not out or out[-1][0] != h["stage"]:
            out.append((h["stage"], prev + 1))
        prev = h["step"]
    return out


def left_plateau_at(history: list[dict], guess: float) -> int | None:
    """The first evaluated step whose two-hop ID accuracy is more than ``D.PLATEAU_MARGIN`` above guessing."""
    return next((h["step"] for h in history if h["acc_two_hop"] > guess + D.PLATEAU_MARGIN), None)


def training_runs(results_dir=None) -> list[dict]:
    """One dict per seed trained, or still training (``unfinished``: its ``progress`` record): seed, history,
    stages, chance, where it left the plateau (step, stage), ID and OOD accuracy (None while unfinished), steps
    run, the budget, steps to 99% and wall time."""
    pattern = f"training_text_only_{D.PROFILE}_s*{SUFFIX}.json"
    finished = [io.read_results(f) for f in io.results_files(pattern, D._dir(results_dir))]
    # runs not finished: their progress records; an earlier run of a seed whose folder was lost keeps its own
    # name (``<name>_firstrun``, from its log), so it stays on record beside that seed's rerun
    going = [r for of, r in D.unfinished(f"training_text_only_{D.PROFILE}_s", results_dir) if SUFFIX in of]
    out = []
    for rec in finished + going:
        cfg = rec.get("train_config") or {}
        guess = D.chance(TaskConfig(**(cfg.get("task") or {})))
        stages = stage_bounds(cfg)
        at = left_plateau_at(rec["history"], guess)
        done = rec.get("kind") != "training_progress"
        lost = not done and rec.get("run_dir") is None  # from its log: the run folder is gone, nothing resumes it
        out.append({"seed": rec["seed"], "lost": lost,
                    "label": f"seed {rec['seed']}" + (", first run" if lost else ""), "history": rec["history"], "stages": stages, "chance": guess,
                    "left_at": at, "left_stage": next((h["stage"] for h in rec["history"] if h["step"] == at), None),
                    "stages_run": stages_run(rec["history"]),
                    "unfinished": not done, "id_accuracy": rec["id_accuracy"] if done else None,
                    "ood_accuracy": rec["ood_accuracy"] if done else None,
                    "steps": rec["steps"] if done else rec["step"], "budget": stages[-1][2] if stages else None,
                    "steps_to_99": rec.get("steps_to_99") if done else steps_to_reach(rec["history"]),
                    "wall_seconds": rec["provenance"]["wall_seconds"]})
    for r in out:  # a seed's run beside its stopped first run is its second
        if not r["lost"] and any(o["lost"] and o["seed"] == r["seed"] for o in out):
            r["label"] += ", second run"
    return sorted(out, key=lambda r: (r["seed"], not r["lost"]))


def curve_chart(results_dir=None, window: int = 500) -> alt.LayerChart:
    """Two-hop ID accuracy against step (mean per ``window`` steps), one line per seed, guessing dashed and
    the curriculum's stage boundaries as grey rules."""
    runs = training_runs(results_dir)
    rows = [{"run": r["label"], "step": x["step"], "two-hop ID": x["accuracy"]}
            for r in runs for x in D.curve_rows(r["history"], window) if x["skill"] == "two_hop"]
    end = max((r["steps"] for r in runs), default=window)
    lines = alt.Chart(alt.Data(values=rows), title=f"No deep supervision, stages x8: two-hop ID accuracy (mean per "
                                                   f"{window:,} steps)").mark_line().encode(
        x=alt.X("step:Q"), y=alt.Y("two-hop ID:Q", axis=alt.Axis(format="%")), color=alt.Color("run:N"),
        tooltip=["run:N", "step:Q", alt.Tooltip("two-hop ID:Q", format=".1%")])
    guess = runs[0]["chance"] if runs else D.chance()
    rule = alt.Chart(alt.Data(values=[{"step": 0, "two-hop ID": guess}, {"step": end, "two-hop ID": guess}])).mark_line(
        strokeDash=[6, 3], color="#555555").encode(x="step:Q", y="two-hop ID:Q")
    longest = max(runs, key=lambda r: r["steps"]) if runs else None  # its stages as run (left early or not)
    bounds = [{"step": a - 1, "stage": n} for n, a in (longest["stages_run"] if longest else [])]
    stages = alt.Chart(alt.Data(values=bounds)).mark_rule(color="#bbbbbb").encode(x="step:Q")
    for row in (0, 1):  # neighbouring labels on two rows, so a short stage's name does not run into the next
        stages += alt.Chart(alt.Data(values=bounds[row::2])).mark_text(
            align="left", dx=3, dy=-4 - 12 * row, baseline="bottom", color="#777777", y=0).encode(x="step:Q", text="stage:N")
    return alt.layer(stages, lines, rule).properties(width=WIDTH, height=HEIGHT)


def training_table(results_dir=None) -> pd.DataFrame:
    """One row per run: where it left the plateau, how far it got, its accuracies at its latest evaluation
    (two-hop and both one-hop queries) and, once finished, its ID and OOD accuracy."""
    rows = []
    for r in training_runs(results_dir):
        last = r["history"][-1] if r["history"] else {}
        status = "stopped (from its log)" if r["lost"] else "training" if r["unfinished"] else "finished"
        rows.append({
            "run": r["label"], "status": status,
            "left plateau": "-" if r["left_at"] is None else f"{r['left_at']:,} ({r['left_stage']})",
            "steps": f"{r['steps']:,}" + (f" of {r['budget']:,}" if r["unfinished"] and r["budget"] else ""),
            "two-hop (latest)": pct(last.get("acc_two_hop")),
            "colour -> shape (latest)": pct(last.get("acc_color_to_shape")),
            "shape -> item (latest)": pct(last.get("acc_shape_to_item")),
            "ID": pct(r["id_accuracy"]), "OOD": pct(r["ood_accuracy"])})
    return table(rows, index="run" if rows else None)


def arm_table(results_dir=None) -> pd.DataFrame:
    """Per seed of the arm, and the recipe's mean: ID, OOD, the routing layer, P_pos, P_sym, BS, the rebind
    outcomes (bound shape, stays) and the position-id swap flip rate."""
    left = {r["seed"]: r["left_at"] for r in training_runs(results_dir) if not r["unfinished"]}

    def cells(r):
        return {"ID": pct(r["id_accuracy"]), "OOD": pct(r["ood_accuracy"]), "routing layer": r["routing_layer"],
                "P_pos": fixed(r["p_pos"]), "P_sym": fixed(r["p_sym"]),
                "BS": signed(r["binding_score"]), "bound shape": pct(r["rebind_shape"]), "stays": pct(r["rebind_stay"]),
                "swap flips": pct(r["flip_rate"]), "reads": D.mechanism(r["binding_score"])}

    out = [{"model": f"no deep sup. s{r['seed']}", "left plateau": "-" if left.get(r["seed"]) is None else f"{left[r['seed']]:,}", **cells(r)}
           for r in D.arm_rows(SUFFIX, results_dir)]
    recipe = D.recipe_rows(results_dir)
    if recipe:
        keys = ("id_accuracy", "ood_accuracy", "p_pos", "p_sym", "binding_score", "rebind_shape", "rebind_stay",
                "flip_rate")
        mean = {k: D.mean(r[k] for r in recipe) for k in keys}
        out.append({"model": f"recipe, mean of {len(recipe)}", "left plateau": "-",
                    **cells({**mean, "routing_layer": ", ".join(map(str, sorted({r["routing_layer"] for r in recipe})))})})
    return table(out, index="model" if out else None)

