"""The headline on both OOD axes: the ``ood_axes`` results files of chapter 4's regimes as numbers and verdicts.

Read by the chapter on where the models fail (which states the rule) and by the conclusion's scoreboard.
Every function returns numbers or booleans; the chapters say what they mean.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..core import io
from ..experiments.headline import learning_run
from ..core.profiles import run_tag

SEEDS = (0, 1, 2)
PAPER_ORDER = ("text_only", "noise_text", "image_text", "noise_image_text")
TEXT_ROWS = ("text_only", "text_only_matched")
# ---------------------------------------------------------------- the verdict rules (chapter 9 shows this block)
LIFT = 0.02  # "A beats B": A is higher than B by more than this


def beats(value: float, others) -> bool:
    """``value`` beats every one of ``others`` by more than LIFT. "X is best" is X beating every other row;
    "X lifts a seed" is X beating both of that seed's text rows."""
    return all(value > other + LIFT for other in others)


def verdict(holds: list[bool]) -> str:
    """A verdict over seeds, one bool per seed: reproduced in every seed, in none, or in how many."""
    if not holds:
        return "not measured"
    return "reproduced" if all(holds) else "not reproduced" if not any(holds) else \
        f"reproduced in {sum(holds)} of {len(holds)} seeds"
# ---------------------------------------------------------------- end of the verdict rules
COUNT, DISTANCE, FILLER = "count (N 9-16)", "distance (gap, G 48-128)", "distance (filler, G 48-128)"
SHORT = {COUNT: "count", DISTANCE: "distance", FILLER: "distance, filler"}  # column names that fit a page


def run_name(regime: str, seed: int) -> str:
    """The checkpoint of a headline cell: the text recipe, or chapter 4's image-stage run of the regime."""
    return run_tag("text_only", seed) if regime == "text_only" else learning_run(regime, seed)["name"]


def axes_record(name: str) -> dict:
    """The ood_axes results file of a checkpoint."""
    return io.read_results(io.RESULTS_DIR / f"ood_axes_{name}.json")


def far(record: dict, filler: str = "gap") -> float:
    """Mean accuracy over the long gaps (ood_axes.FAR_GAPS) with a gap of position ids or filler tokens."""
    return record["distance"]["fillers"][filler]["far_accuracy"]


AXES = {COUNT: lambda rec: rec["count"]["buckets"]["9-16"]["accuracy"], DISTANCE: far,
        FILLER: lambda rec: far(rec, "filler")}


def meets_targets(name: str, results_dir=None) -> bool:
    """Whether the run that made checkpoint ``name`` met its training targets (chapter 4): an image-stage run's
    own verdict; a text model is an analysed model itself."""
    if not name.startswith("imagestage_"):
        return True
    path = Path(results_dir or io.RESULTS_DIR) / f"{name}.json"
    return path.exists() and bool(io.read_results(path).get("meets_targets"))


def by_seed(regimes=("text_only", "text_only_matched", "noise_text", "image_text", "noise_image_text"),
            seeds=SEEDS) -> pd.DataFrame:
    """One row per (regime, seed) whose run met its targets: ID accuracy and each axis."""
    rows = []
    for regime in regimes:
        for s in seeds:
            if not meets_targets(run_name(regime, s)):
                continue
            rec = axes_record(run_name(regime, s))
            rows.append({"regime": regime, "seed": s, "ID": rec["count"]["buckets"]["id"]["accuracy"],
                         **{axis: f(rec) for axis, f in AXES.items()}})
    return pd.DataFrame(rows)


def lifts(values: pd.DataFrame, regime: str, axis: str) -> list[bool]:
    """Per seed: does ``regime`` beat both of that seed's text rows on ``axis`` by more than LIFT?"""
    v = values.pivot(index="seed", columns="regime", values=axis)
    return [beats(v.loc[s, regime], v.loc[s, list(TEXT_ROWS)]) for s in v.index if v.loc[s, regime] == v.loc[s, regime]]


def above_control(values: pd.DataFrame, regime: str, axis: str) -> list[bool]:
    """Per seed: does ``regime`` beat the seed's compute-matched text control alone on ``axis`` by more than LIFT?"""
    v = values.pivot(index="seed", columns="regime", values=axis)
    return [beats(v.loc[s, regime], [v.loc[s, "text_only_matched"]]) for s in v.index if v.loc[s, regime] == v.loc[s, regime]]


def paper_order_holds(values: pd.DataFrame, axis: str) -> bool:
    """Are the seed means in the paper's order (text < noise text < image text < noise + image text)?"""
    m = values.groupby("regime")[axis].mean()
    return all(m[a] < m[b] for a, b in zip(PAPER_ORDER, PAPER_ORDER[1:]))


def verdicts(values: pd.DataFrame) -> pd.DataFrame:
    """Per axis: in how many of its seeds (those that met their targets) each added regime lifts, and whether
    the paper's ordering holds."""
    return pd.DataFrame([{"axis": axis, **{k: v for r in PAPER_ORDER[1:] for k, v in
                                           ((f"{r} lifts (seeds)", sum(lifts(values, r, axis))),
                                            (f"{r} above the matched control (seeds)", sum(above_control(values, r, axis))),
                                            (f"{r} seeds", len(lifts(values, r, axis))))},
                          "paper's ordering holds": paper_order_holds(values, axis)}
                         for axis in AXES]).set_index("axis")


def means_table(values: pd.DataFrame, stat: str = "mean") -> pd.DataFrame:
    """Per regime: ID accuracy and each axis (SHORT names) over its seeds, as ``stat`` ("mean" or "std"), and
    the number of seeds."""
    cols = ["ID", *AXES]
    g = values.groupby("regime", sort=False)
    out = getattr(g[cols], stat)().rename(columns=SHORT)
    out["seeds"] = g["seed"].nunique()
    return out


def verdict_table(values: pd.DataFrame) -> pd.DataFrame:
    """``verdicts`` turned around to fit a page: one row per added regime, per axis (SHORT names) the seeds it
    lifts, the seeds above the compute-matched control, and its seeds; then whether the paper's ordering holds."""
    v = verdicts(values)
    rows = {r: {SHORT[a]: f"{v.loc[a, f'{r} lifts (seeds)']} / {v.loc[a, f'{r} above the matched control (seeds)']}"
                          f" of {v.loc[a, f'{r} seeds']}" for a in AXES} for r in PAPER_ORDER[1:]}
    rows["paper's ordering holds"] = {SHORT[a]: "yes" if v.loc[a, "paper's ordering holds"] else "no" for a in AXES}
    return pd.DataFrame(rows).T


LABELS = ("text_only", "text_only_matched", "noise_text", "image_text", "noise_image_text")


def analysed(regimes=LABELS, seeds=SEEDS, results_dir=None) -> list[tuple[str, int, str]]:
    """(label, seed, checkpoint) of every headline cell whose run met its targets: the models chapters 5-7 analyse."""
    return [(r, s, run_name(r, s)) for r in regimes for s in seeds if meets_targets(run_name(r, s), results_dir)]


def records(kind: str, regimes=LABELS, seeds=SEEDS, results_dir=None) -> list[dict]:
    """The ``kind`` results files (interchange, knockout, probe) of the analysed models, by label then seed; each
    record's ``regime`` is its label."""
    out = []
    for regime, seed, name in analysed(regimes, seeds, results_dir):
        path = Path(results_dir or io.RESULTS_DIR) / f"{kind}_{name}.json"
        if path.exists():
            out.append({**io.read_results(path), "regime": regime, "seed": seed})
    return out


def models(regimes=LABELS, seeds=SEEDS) -> pd.DataFrame:
    """One row per headline cell: its checkpoint, whether its run met its targets, text ID accuracy and, for an
    image stage, its accuracy on image prompts (NaN for a text model)."""
    rows = []
    for regime in regimes:
        for s in seeds:
            name = run_name(regime, s)
            stage = io.read_results(io.RESULTS_DIR / f"{name}.json") if name.startswith("imagestage_") else {}
            rows.append({"label": regime, "seed": s, "checkpoint": name, "met targets": meets_targets(name),
                         "text ID": axes_record(name)["count"]["buckets"]["id"]["accuracy"],
                         "image ID": stage.get("image_id_accuracy")})
    return pd.DataFrame(rows)
