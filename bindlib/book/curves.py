"""Chapter 2's learning curves: the neutral control and the aid ablation.

    neutral_table(), neutral_chart()     the longest curves without a hop-specific aid (and the deeper ones)
    ablation_table(), ablation_chart()   the recipe against its variants at one budget

The numbers come from ``bindlib.book.control_data`` (``neutral_curves``, ``aid_ablation``), which reads
the ``curve_*.json`` files that ``python -m bindlib curve`` writes and the recipe's training files.
"""
from __future__ import annotations


import altair as alt
import pandas as pd

from ..core.profiles import MODEL as PROFILE_MODEL
from ..experiments.recipes import VARIANTS
from . import control_data as D
from .control_data import curve_rows  # noqa: F401  (chapters and tests read curves.curve_rows)
from .findings import pct, table
from .plots import HEIGHT, WIDTH, line_chart

# ---------------------------------------------------------------- the neutral control
def neutral_table(results_dir=None) -> pd.DataFrame:
    """Every committed neutral learning curve (``direct``), the profile's model and the deeper ones, one column
    each (the table stays narrow): layers, steps, two-hop accuracy at the end and at best, guessing, the
    sub-skills at the end, wall time, whether it left the plateau."""
    rows = [{"curve": c["name"], "variant": c["variant"], "seed": c["seed"],
             "layers": c["n_layers"] or PROFILE_MODEL[D.PROFILE]["n_layers"],
             "steps": f"{c['steps']:,}" + (f" of {c['budget']:,} (stopped; from its log)" if c["lost"] else
                                            f" of {c['budget']:,} (not finished)" if c["unfinished"] else ""),
             "two-hop: final": pct(c["final_two_hop"]), "two-hop: best": pct(c["best_two_hop"]),
             "two-hop by guessing": pct(c["chance"]),
             **{f"{k}: final": pct(v) for k, v in c["final_subskills"].items()},
             "wall (h)": f"{(c['wall_seconds'] or 0) / 3600:.1f}", "left the plateau": "yes" if c["left_plateau"] else "no"}
            for c in D.neutral(results_dir) + D.neutral(results_dir, deeper=True)]
    return table(rows, index="curve").T if rows else pd.DataFrame()


def neutral_chart(results_dir=None, window: int = 1000) -> alt.LayerChart:
    """The longest neutral curve(s): two-hop and sub-skill ID accuracy against step (mean over windows of
    ``window`` steps and over seeds), with guessing as a dashed rule."""
    curves = D.neutral(results_dir)
    longest = max((c["steps"] for c in curves), default=0)
    top = [c for c in curves if c["steps"] == longest]
    pooled: dict[tuple, list] = {}
    for c in top:
        for row in curve_rows(c["history"], window):
            pooled.setdefault((row["skill"], row["step"]), []).append(row["accuracy"])
    rows = [{"skill": s, "step": step, "accuracy": round(D.mean(v), 4)} for (s, step), v in sorted(pooled.items())]
    title = (f"{top[0]['variant'] if top else 'direct'}: ID accuracy during training ({len(top)} seed"
             f"{'s' if len(top) != 1 else ''}, mean per {window:,} steps)")
    lines = line_chart(rows, "step", "accuracy", "skill", title, y_format="%")
    guess = [{"step": 0, "accuracy": top[0]["chance"] if top else D.chance(), "label": "two-hop by guessing"},
             {"step": max(longest, window), "accuracy": top[0]["chance"] if top else D.chance(),
              "label": "two-hop by guessing"}]
    rule = alt.Chart(alt.Data(values=guess)).mark_line(strokeDash=[6, 3], color="#555555").encode(
        x="step:Q", y="accuracy:Q", tooltip=["label:N"])
    return alt.layer(lines, rule).properties(width=WIDTH, height=HEIGHT)


# ---------------------------------------------------------------- the aid ablation
AIDS = {"recipe": "sub-skill queries, packing, deep supervision", "no_deep_supervision": "sub-skill queries, packing",
        "direct": "none"}


def _aids(variant: str) -> str:
    return AIDS.get(variant, VARIANTS.get(variant, {}).get("about", variant))


def _by_variant(results_dir=None, budget: int = D.ABLATION_BUDGET) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in D.aid_ablation(results_dir, budget):
        out.setdefault(r["variant"], []).append(r)
    return out


def ablation_table(results_dir=None, budget: int = D.ABLATION_BUDGET) -> pd.DataFrame:
    """One column per variant of the recipe, compared at ``budget`` steps: its aids, seeds, two-hop ID where
    each seed ended, how many reached 99% and when, and the two sub-skills at the end (mean over seeds)."""
    rows = []
    for v, rs in _by_variant(results_dir, budget).items():
        reached = [r["steps_to_99"] for r in rs if r["steps_to_99"] is not None]
        rows.append({"variant": v.replace("_", " "), "aids": _aids(v),  # spaces: the header wraps between words
                     "seeds": ", ".join(str(r["seed"]) for r in rs),
                     "steps run": ", ".join(f"{r['steps']:,}" for r in rs),
                     "two-hop ID at the end": ", ".join(pct(r["two_hop"]) for r in rs),
                     "reached 99%": f"{len(reached)} of {len(rs)}" + (
                         f" (step {', '.join(f'{s:,}' for s in reached)})" if reached else ""),
                     "colour → shape": pct(D.mean(r["color_to_shape"] for r in rs)),
                     "shape → item": pct(D.mean(r["shape_to_item"] for r in rs)),
                     "two-hop by guessing": pct(rs[0]["chance"])})
    return table(rows, index="variant").T if rows else pd.DataFrame()  # one column per variant: narrow


def ablation_chart(results_dir=None, budget: int = D.ABLATION_BUDGET) -> alt.LayerChart:
    """Two-hop ID accuracy against step, one line per run, coloured by variant, with guessing dashed."""
    runs = D.aid_ablation(results_dir, budget)
    rows = [{"variant": r["variant"], "seed": r["seed"], "step": h["step"], "two-hop ID": h["acc_two_hop"]}
            for r in runs for h in r["history"]]
    order = [v for v in D.ABLATION_VARIANTS if any(r["variant"] == v for r in runs)]
    lines = alt.Chart(alt.Data(values=rows), title=f"Two-hop ID accuracy during training, {budget:,} steps at most").mark_line(
        opacity=0.8).encode(x=alt.X("step:Q"), y=alt.Y("two-hop ID:Q", axis=alt.Axis(format="%")),
                            color=alt.Color("variant:N", sort=order), detail="seed:N",
                            tooltip=["variant:N", "seed:N", "step:Q", alt.Tooltip("two-hop ID:Q", format=".1%")])
    c = runs[0]["chance"] if runs else D.chance()
    rule = alt.Chart(alt.Data(values=[{"step": 0, "two-hop ID": c}, {"step": budget, "two-hop ID": c}])).mark_line(
        strokeDash=[6, 3], color="#555555").encode(x="step:Q", y="two-hop ID:Q")
    return alt.layer(lines, rule).properties(width=WIDTH, height=HEIGHT)

