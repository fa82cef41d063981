"""Chapter 2's learning curves: the neutral control and the aid ablation (issue 9).

    neutral_table(), neutral_chart(), neutral_sentence()    the longest curves without a hop-specific aid
    deeper_sentence()                                       the same control on a deeper model
    ablation_table(), ablation_chart(), ablation_sentence() the recipe against its variants at one budget

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
from .text import say, state, wrap  # noqa: F401  (chapters show these sentences with state)

# ---------------------------------------------------------------- the neutral control
def neutral_table(results_dir=None) -> pd.DataFrame:
    """Every committed neutral learning curve (``direct``), the profile's model and the deeper ones, one column
    each (the table stays narrow): layers, steps, two-hop accuracy at the end and at best, guessing, the
    sub-skills at the end, wall time, whether it left the plateau."""
    rows = [{"curve": c["name"], "variant": c["variant"], "seed": c["seed"],
             "layers": c["n_layers"] or PROFILE_MODEL[D.PROFILE]["n_layers"],
             "steps": f"{c['steps']:,}" + (f" of {c['budget']:,} (lost; from its log)" if c["lost"] else
                                            f" of {c['budget']:,} (not finished)" if c["unfinished"] else ""),
             "two-hop: final": pct(c["final_two_hop"]), "two-hop: best": pct(c["best_two_hop"]),
             "two-hop by guessing": pct(c["chance"]),
             **{f"{k}: final": pct(v) for k, v in c["final_subskills"].items()},
             "wall (h)": f"{(c['wall_seconds'] or 0) / 3600:.1f}", "left the plateau": "yes" if c["left_plateau"] else "no"}
            for c in D.neutral(results_dir) + D.neutral(results_dir, deeper=True)]
    return table(rows, index="curve").T if rows else pd.DataFrame()


DEEPER_COMMAND = "python -m bindlib curve --variant direct --n-layers 6 --steps 40000 --seed S"


def deeper_sentence(results_dir=None) -> str:
    """The neutral control on a deeper model (``curve --n-layers``): how far each run got, where its two-hop
    accuracy ended, and whether any finished run left the plateau."""
    deep = D.neutral(results_dir, deeper=True)
    if not deep:
        return f"No deeper neutral curve ({DEEPER_COMMAND}) in data/results yet."

    def one(c):
        head = f"{c['n_layers']} layers, seed {c['seed']}: "
        if c["lost"]:
            return (head + f"lost at step {c['steps']:,} of {c['budget']:,} (its folder went with its machine; the "
                           f"curve is from its log), two-hop {pct(c['final_two_hop'])} at its latest evaluation")
        if c["unfinished"]:
            return head + f"{c['steps']:,} of {c['budget']:,} steps so far, two-hop {pct(c['final_two_hop'])} at its latest evaluation"
        return head + f"{c['steps']:,} steps, final two-hop {pct(c['final_two_hop'])}, best {pct(c['best_two_hop'])}"

    done = [c for c in deep if not c["unfinished"]]
    out = (f"Without a hop-specific aid on a deeper model ({DEEPER_COMMAND}), against {pct(deep[0]['chance'])} "
           f"for guessing: " + "; ".join(one(c) for c in deep) + ".")
    if done:
        broke = [c for c in done if c["left_plateau"]]
        out += (f" {len(broke)} of {len(done)} finished deeper run{'s' if len(done) != 1 else ''} left the plateau."
                if broke else f" No finished deeper run left the plateau: depth alone does not break it within "
                              f"{max(c['steps'] for c in done):,} steps.")
    return out


def neutral_sentence(results_dir=None) -> str:
    curves = D.neutral(results_dir)
    if not curves:
        return "No neutral learning curve (variant direct) in data/results yet."
    done = [c for c in curves if not c["unfinished"]] or curves
    longest = max(c["steps"] for c in done)
    top = [c for c in done if c["steps"] == longest]
    going = [c for c in curves if c["unfinished"]]
    on_record = "".join(f" Seed {c['seed']}'s run of {c['budget']:,} steps is on record up to step {c['steps']:,} "
                        f"(not finished), two-hop {pct(c['final_two_hop'])} at its latest evaluation." for c in going)
    n = len(curves) - len(going)
    final = D.mean(c["final_two_hop"] for c in top)
    seeds = f"{len(top)} seed{'s' if len(top) != 1 else ''}"
    if any(c["left_plateau"] for c in top):
        return (f"Without a hop-specific aid ({top[0]['variant']}), {sum(c['left_plateau'] for c in top)} of "
                f"{seeds} left the plateau within {longest:,} steps (final two-hop {pct(final)})." + on_record)
    return (f"Without a hop-specific aid ({top[0]['variant']}: two-hop queries only, no sub-skill queries, "
            f"no deep supervision) the plateau did not break in {longest:,} steps on {seeds}: final two-hop "
            f"accuracy {pct(final)}, best {pct(max(c['best_two_hop'] for c in top))}, against "
            f"{pct(top[0]['chance'])} for guessing one of the N items. {n} neutral curve file"
            f"{'s are' if n != 1 else ' is'} committed." + on_record)


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


def _reach(rs: list[dict]) -> str:
    hit = [r for r in rs if r["steps_to_99"] is not None]
    n = f"{len(hit)} of {len(rs)} seed{'s' if len(rs) != 1 else ''}"
    if not hit:
        return f"{n} (best two-hop ID {pct(max(r['best_two_hop'] for r in rs))})"
    steps = ", ".join(f"{r['steps_to_99']:,}" for r in hit)
    return f"{n}, at step {steps}"


def ablation_sentence(results_dir=None, budget: int = D.ABLATION_BUDGET) -> str:
    """What the aid ablation shows: which variants reach 99% two-hop ID within ``budget`` steps, and so
    which aid breaks the plateau."""
    by = _by_variant(results_dir, budget)
    if "recipe" not in by or len(by) < 2:
        return "The aid ablation needs the recipe and at least one variant without an aid in data/results."
    parts = [f"{v.replace('_', ' ')} ({_aids(v)}): {_reach(rs)}" for v, rs in by.items()]
    out = f"Within {budget:,} steps, two-hop ID reached 99% for: " + "; ".join(parts) + "."
    nds = by.get("no_deep_supervision", [])
    if nds and not any(r["steps_to_99"] for r in nds) and all(r["steps_to_99"] for r in by["recipe"]):
        best = min(min(r["best_color_to_shape"], r["best_shape_to_item"]) for r in nds)
        end = D.mean(D.mean((r["color_to_shape"], r["shape_to_item"])) for r in nds)
        out += (" Deep supervision is the aid that breaks the plateau: without it the sub-skill queries teach "
                f"both hops (each peaks at {pct(best)}{' or more' if best < 0.995 else ''} on every seed) but not their "
                "composition, and "
                f"where they stop the hops fade too (at the end, {pct(end)} on average).")
    elif nds and all(r["steps_to_99"] for r in nds):
        out += (" Deep supervision is not needed: the sub-skill queries alone break the plateau, so a model "
                "trained without a loss on the routing residual can be measured.")
    return out
