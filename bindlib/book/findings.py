"""What the results files say, as tables and plain sentences for the chapters.

Every function reads committed results files (``data/results``) through ``bindlib``'s loaders and
returns a pandas table or a sentence; the chapters call one of them per cell, so the logic that turns
numbers into a finding lives here, where it is tested, and not in notebook cells.

Verdict words used throughout: "reproduced", "not reproduced", "partly", "not measured".
"""
from __future__ import annotations

import math
import textwrap

import pandas as pd

from ..core import io, profiles as paper
from ..core.evaluate import mean_sd
from .control_data import control_claims, mean, mechanism
from .learning_data import learning_claims
from .text import breakable_headers  # noqa: F401

WIDTH = 90  # printed text wraps here, so no output line runs past a page's column


def wrap(text: str, width: int = WIDTH) -> str:
    """Wrap every line of ``text`` at ``width`` columns; continuation lines keep the line's indent plus two."""
    out = []
    for line in text.splitlines() or [""]:
        indent = " " * (len(line) - len(line.lstrip(" ")) + 2)
        out.append(textwrap.fill(line, width, subsequent_indent=indent, break_on_hyphens=False,
                                 drop_whitespace=True) if len(line) > width else line)
    return "\n".join(out)


def say(*paragraphs: str, width: int = WIDTH) -> None:
    """Print each paragraph wrapped at ``width`` columns (continuation lines indented)."""
    for text in paragraphs:
        print(wrap(text, width))


MISSING = "\u2014"  # what a table shows where there is no value


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and not math.isfinite(x))


def pct(x, digits: int = 1, missing: str = "-") -> str:
    """0.372 -> '37.2%'; None or NaN -> ``missing``."""
    return missing if _missing(x) else f"{x:.{digits}%}"


def fixed(x, digits: int = 3) -> str:
    """0.0512 -> '0.051'; None -> '-'."""
    return "-" if x is None else f"{x:.{digits}f}"


def signed(x, digits: int = 2, missing: str = "-") -> str:
    """0.5 -> '+0.50'; None or NaN -> ``missing``."""
    return missing if _missing(x) else f"{x:+.{digits}f}"


class Table(pd.DataFrame):
    """A DataFrame whose HTML shows every cell whole: pandas cuts cells at 50 characters, and a
    scoreboard's claim or result cut short is no result. Its text form (what nbval compares) is pandas'."""

    @property
    def _constructor(self):
        return Table

    def _repr_html_(self):
        with pd.option_context("display.max_colwidth", None):
            if isinstance(self.index, pd.RangeIndex) and self.index.name is None:  # row numbers say nothing
                return breakable_headers(f"<div>{self.to_html(index=False, justify='left')}</div>")
            return breakable_headers(super()._repr_html_())


def table(rows: list[dict], index: str | None = None) -> pd.DataFrame:
    """A DataFrame of already formatted rows (shown as an HTML table; its text form is what nbval compares)."""
    df = Table(rows)
    return df.set_index(index) if index else df


# ---------------------------------------------------------------- chapter 2: text-only training
def text_only_runs(profile: str = "cpu", results_dir=None) -> list[dict]:
    """The committed text-only training records of a profile, by seed (ablations have their own kind)."""
    where = {"profile": profile} if profile is not None else {}  # only the profile's files count as read
    runs = io.load_results("training_text_only_*.json", results_dir, kind="training", regime="text_only", **where)
    return sorted(runs, key=lambda r: r["seed"])


def training_table(runs: list[dict]) -> pd.DataFrame:
    """One row per run: accuracy in and out of distribution, steps, wall time, device."""
    return table([{"seed": r["seed"], "profile": r["profile"], "ID": pct(r["id_accuracy"]),
                   "OOD": pct(r["ood_accuracy"]), "steps": r["steps"], "steps to 99%": r["steps_to_99"],
                   "wall (min)": f"{r['provenance']['wall_seconds'] / 60:.1f}", "device": r["provenance"]["device"]}
                  for r in runs], index="seed")


def cliff(runs: list[dict]) -> dict:
    """Our text-only means beside the paper's, and whether the OOD cliff is there.

    The cliff is reproduced when our OOD mean is within 10 points of the paper's 37.2% and not
    reproduced when it is more than 20 points above it (between the two: partly).
    """
    (id_m, id_s), (ood_m, ood_s) = (mean_sd([r["id_accuracy"] for r in runs]),
                                    mean_sd([r["ood_accuracy"] for r in runs]))
    theirs = paper.paper_value("text_only")
    gap = ood_m - theirs
    verdict = ("not measured" if not math.isfinite(gap) else "reproduced" if abs(gap) <= 0.10
               else "not reproduced" if gap > 0.20 else "partly")
    return {"seeds": len(runs), "id": id_m, "id_sd": id_s, "ood": ood_m, "ood_sd": ood_s,
            "paper_id": paper.TEXT_ONLY_ID_ACCURACY["value"], "paper_ood": theirs, "gap": gap, "verdict": verdict}


def cliff_table(runs: list[dict]) -> pd.DataFrame:
    c = cliff(runs)
    return table([{"accuracy": "in distribution (N 2..8)", "ours": f"{pct(c['id'])} ± {pct(c['id_sd'])}",
                   "paper": f"about {pct(c['paper_id'], 0)}"},
                  {"accuracy": "out of distribution (N 9..16)", "ours": f"{pct(c['ood'])} ± {pct(c['ood_sd'])}",
                   "paper": pct(c["paper_ood"])}], index="accuracy")


def axes_table(runs: list[dict]) -> pd.DataFrame:
    """Accuracy on each diagnostic axis (association order, offset), ID and OOD means, per seed."""
    rows = []
    for r in runs:
        for axis, acc in r.get("axes", {}).items():
            rows.append({"seed": r["seed"], "axis": axis, "ID": pct(acc["id_accuracy"]), "OOD": pct(acc["ood_accuracy"])})
    df = table(rows)
    return df.pivot(index="axis", columns="seed", values=["ID", "OOD"]) if rows else df


def slot_table(runs: list[dict]) -> pd.DataFrame:
    """ID accuracy by the queried object's declaration slot, one row per seed."""
    slots = sorted({int(s) for r in runs for s in r["accuracy_by_slot"]})
    return table([{"seed": r["seed"], **{f"slot {s + 1}": pct(r["accuracy_by_slot"].get(str(s)), 0) for s in slots}}
                  for r in runs], index="seed")


def stage_starts(runs: list[dict]) -> pd.DataFrame:
    """The step of each run's first evaluation in every curriculum stage."""
    rows = []
    for r in runs:
        starts = {}
        for h in r["history"]:
            starts.setdefault(h["stage"], h["step"])
        rows.append({"seed": r["seed"], **starts})
    return table(rows, index="seed")


def learned_positions_table(results_dir=None) -> pd.DataFrame:
    """The positional-encoding ablation (learned absolute positions) beside RoPE, per seed, by N out of distribution."""
    ablation = io.load_results("training_text_only_cpu_s*_learnedpos.json", results_dir, kind="training_variant")
    rope = {r["seed"]: r for r in text_only_runs("cpu", results_dir)}
    rows = []
    for a in ablation:
        for label, r in (("RoPE", rope.get(a["seed"])), ("learned positions", a)):
            if r is not None:
                rows.append({"seed": a["seed"], "positions": label, "ID": pct(r["id_accuracy"]),
                             "OOD": pct(r["ood_accuracy"]),
                             **{f"N={n}": pct(r["accuracy_by_n"][str(n)], 0) for n in range(9, 17, 2)}})
    return table(rows).set_index(['seed', 'positions'])


# ---------------------------------------------------------------- chapter 4: regimes
def regime_table(profile: str = "cpu", results_dir=None) -> pd.DataFrame:
    """The headline table: text OOD accuracy per regime (mean ± sd over seeds, main encoder) beside the paper's."""
    from ..experiments.recipes import headline_table, regime_results

    records = regime_results(profile, results_dir)
    ood, ids = headline_table(records), {r["regime"]: r for r in headline_table(records, metric="id_accuracy")}
    return table([{"regime": r["regime"], "seeds": r["seeds"], "ours: OOD": f"{pct(r['mean'])} ± {pct(r['sd'])}",
                   "paper: OOD": pct(r["paper"]), "ours: ID": pct(ids[r["regime"]]["mean"])} for r in ood],
                 index="regime")


def regime_means(profile: str = "cpu", results_dir=None) -> dict[str, float]:
    """Mean text OOD accuracy per regime (main encoder); text_only also falls back on the training files."""
    from ..experiments.recipes import headline_table, regime_results

    means = {r["regime"]: r["mean"] for r in headline_table(regime_results(profile, results_dir))}
    if "text_only" not in means:
        runs = text_only_runs(profile, results_dir)
        if runs:
            means["text_only"] = mean([r["ood_accuracy"] for r in runs])
    return means


# ---------------------------------------------------------------- chapter 5: the binding direction (also used by the front and back matter)
def binding_scores(profile: str = "cpu", results_dir=None) -> dict[str, dict]:
    """Per label: the routing-layer binding score of the seeds with a measurable one (the interchange files of
    the models chapter 5 analyses)."""
    from ..interp.results import routing_table
    from .axes import records

    return {row["regime"]: row for row in routing_table(records("interchange", results_dir=results_dir))}



# ---------------------------------------------------------------- front and back matter
def scoreboard(profile: str = "cpu", results_dir=None) -> pd.DataFrame:
    """Claim by claim: the paper's claims, then the controls that qualify them (``book.control_data``),
    each with our result and its verdict (all computed from results files)."""
    c = cliff(text_only_runs(profile, results_dir))
    means = regime_means(profile, results_dir)
    scores = binding_scores(profile, results_dir)
    bs = {r: scores.get(r, {}).get("binding_score") for r in ("text_only", "image_text")}

    def above(a, b):
        if means.get(a) is None or means.get(b) is None:
            return "not measured"
        return "reproduced" if means[a] > means[b] + 0.02 else "not reproduced"

    learned = learning_claims(results_dir)  # the image stage that learns (chapter 4), where it has run
    rows = [
        ("Text-only training reaches about 100% in distribution.", f"ID {pct(c['id'])}",
         "not measured" if not math.isfinite(c["id"]) else "reproduced" if c["id"] >= 0.95 else "not reproduced"),
        ("Text-only accuracy collapses out of distribution (37.2%).", f"OOD {pct(c['ood'])}", c["verdict"]),
        ("Image training raises text OOD accuracy (to 69.5%).", *learned["image_ood"]) if "image_ood" in learned else
        ("Image training raises text OOD accuracy (to 69.5%).",
         f"image_text {pct(means.get('image_text'))} vs text only {pct(means.get('text_only'))}",
         above("image_text", "text_only")),
        ("Noise augmentation alone raises it (57.5%, summary).", *learned["noise_text"]) if "noise_text" in learned else
        ("Noise augmentation alone raises it (57.5%, summary).",
         f"noise_text {pct(means.get('noise_text'))} vs text only {pct(means.get('text_only'))}",
         above("noise_text", "text_only")),
        ("Noise plus images is best (83.6%, summary).", *learned["noise_images"]) if "noise_images" in learned else
        ("Noise plus images is best (83.6%, summary).", "no noise_image_text run of the image stage that learns",
         "not measured") if learned else
        ("Noise plus images is best (83.6%, summary).",
         f"noise_image_text {pct(means.get('noise_image_text'))} vs image_text {pct(means.get('image_text'))}",
         above("noise_image_text", "image_text")),
        ("The text-only model binds positionally.", f"binding score {signed(bs['text_only'])} ({mechanism(bs['text_only'])})",
         "not measured" if bs["text_only"] is None else
         "reproduced" if mechanism(bs["text_only"]) == "positional" else "not reproduced"),
        ("Image training moves binding to symbolic.", *learned["binding"]) if "binding" in learned else
        ("Image training moves binding to symbolic.",
         f"image_text {signed(bs['image_text'])}, text only {signed(bs['text_only'])}",
         "not measured" if bs["image_text"] is None or bs["text_only"] is None else
         "reproduced" if bs["image_text"] > bs["text_only"] + 0.5 else
         "not reproduced (both symbolic)" if mechanism(bs["text_only"]) == "symbolic" else "not reproduced"),
    ]
    return table([{"claim": a, "whose": "paper", "our result": b, "verdict": v} for a, b, v in rows]
                 + [{"claim": a, "whose": "control", "our result": b, "verdict": v}
                    for a, b, v in control_claims(results_dir)])


# ---------------------------------------------------------------- chapter 3: encoder pretraining
def encoder_pretraining_table(profile: str = "cpu", n_shapes: int = 16, results_dir=None) -> pd.DataFrame:
    """Each project encoder's pretraining: steps, wall time, whether it reached its target, held-out accuracy
    on object patches and on all labelled patches (colour and shape), beside guessing a shape."""
    rows = []
    for r in io.load_results(f"encoder_*_{profile}.json", results_dir, kind="encoder_pretraining"):
        h, cfg = r["held_out"], r["pretrain_config"]
        rows.append({"encoder": r["encoder"], "steps": r["steps"],
                     "wall (min)": f"{r['provenance']['wall_seconds'] / 60:.1f}",
                     "target": f"{pct(cfg['target'], 0)}: " + ("reached" if r["stopped"] == "target_reached"
                                                               else f"stopped at {cfg['time_budget_s']:.0f} s"),
                     "object patches: colour": pct(h["color_object"]), "object patches: shape": pct(h["shape_object"]),
                     "all patches: colour": pct(h["color_all"]), "all patches: shape": pct(h["shape_all"]),
                     "shape by guessing": pct(1 / n_shapes)})
    return table(rows, index="encoder").T  # one column per encoder: the table stays narrow


# ---------------------------------------------------------------- chapter 5: OOD accuracy beside the binding score
# ---------------------------------------------------------------- chapter 2: the recipe
def recipe_table(cfg, task) -> pd.DataFrame:
    """The stages of a training recipe (``bindlib.experiments.recipes.recipe``): steps, N range, query mix, deep supervision."""
    rows = []
    for stage in cfg.stages:
        n_lo, n_hi = stage.n_range or task.id_range
        rows.append({"stage": stage.name, "up to steps": stage.steps, "N": f"{n_lo}..{n_hi}",
                     "queries": ", ".join(stage.mix),
                     "deep supervision": f"after block {cfg.hop_layer}, weight {stage.hop_weight:g}" if stage.hop_weight else "-"})
    return table(rows, index="stage")


