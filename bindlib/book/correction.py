"""The correction test and the headline table of the image stage that learns.

The image stage that meets its targets (``python -m bindlib image-stage --recipe replay --image-steps 4000
--mix-steps 400``) is run from text checkpoints whose binding we have measured:

- (a) the recipe's text models (RoPE), which already read symbolic;
- (b) the shortcut dial at p = 1 with the slot as the deep-supervision target: every training prompt
  lists its associations in declaration order, and the hop layer is asked for the queried object's
  slot, the standard-format model most likely to read positional (``_hopslot_decl100``; without deep
  supervision, ``_hopw0_decl100``, the task stayed at chance);
- (c) the learned-position models, the track with the paper's OOD cliff.

Each row pairs one text checkpoint ("before": its training file and interchange measurement) with the
image run that continued it ("after": the image-stage results file and the interchange measurement of its
checkpoint). ``correction_rows`` reads them; ``correction_table`` and ``learning_headline_table`` show them, and
``correction_summary`` gives their means. Everything globs what exists, so a seed added later shows up.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..core import io
from ..core.evaluate import mean_sd
from ..core.profiles import OOD_ACCURACY
from ..core.task import TaskConfig
from . import control_data as D, learning_data as L
from .findings import MISSING, mechanism, pct, signed, table
from .learning_data import REGIME_ORDER, STARTS


def _arrow(before, after, fmt) -> str:
    return f"{fmt(before)} → {fmt(after)}"


def correction_table(results_dir=None) -> pd.DataFrame:
    """Before → after, per start and seed: text ID and OOD, image ID, routing-layer BS, rebind, swap flips;
    and where the image run has a compute-matched text run from the same start, that run's OOD and BS."""
    rows = []
    for r in L.correction_rows(results_dir):
        b, a = r["before"], r["after"]
        rows.append({"start": r["start"] + {"noise_replay": " + noise", "replay_sub": " + shape -> item"}.get(r["recipe"], ""),
                     "seed": r["seed"],
                     "text ID": _arrow(b["id_accuracy"], a["id_accuracy"], pct),
                     "shuffled-order ID": _arrow(b["shuffled_id_accuracy"], a["shuffled_id_accuracy"], pct),
                     "text OOD": _arrow(b["ood_accuracy"], a["ood_accuracy"], pct),
                     "image ID": pct(r["image_id_accuracy"]),
                     "BS": _arrow(b.get("binding_score"), a.get("binding_score"), signed),
                     "rebind → shape": _arrow(b.get("rebind_shape"), a.get("rebind_shape"), pct),
                     "swap flips": _arrow(b.get("flip_rate"), a.get("flip_rate"), pct),
                     "text control: OOD, BS": MISSING if not r["control"] else
                     f"{pct(r['control']['ood_accuracy'])}, {signed(r['control'].get('binding_score'))}"})
    return table(rows, index=["start", "seed"] if rows else None)


def _group(rows: list[dict]) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        out.setdefault((r["start"], r["recipe"]), []).append(r)
    return out




def learning_headline_table(results_dir=None) -> pd.DataFrame:
    """The headline table with the image stage that learns: text OOD per start and regime (mean ± sd over
    seeds), text and image ID, beside the paper's OOD numbers (its noise rows from secondary summaries)."""
    rows = []
    for h in L.headline_rows(results_dir):
        paper = OOD_ACCURACY.get(h["regime"])
        img = [r["image_id_accuracy"] for r in h["runs"] if r["image_id_accuracy"] is not None]
        positions = sorted({r["image_positions"] for r in h["runs"] if r.get("image_positions")})
        sub = " (+ shape -> item)" if any(r.get("recipe") in L.SUB_RECIPES for r in h["runs"]) else ""
        rows.append({"text model": h["start"], "regime": h["regime"] + sub + "".join(f" ({p} positions)" for p in positions
                                                                                     if p != "sequence"),
                     "seeds": ", ".join(map(str, h["seeds"])),
                     "ours: text OOD": _mean_sd(r["ood_accuracy"] for r in h["runs"]),
                     "ours: text ID": pct(D.mean(r["id_accuracy"] for r in h["runs"])),
                     "ours: image ID": pct(D.mean(img)) if img else MISSING,
                     "paper: text OOD": MISSING if paper is None else
                     pct(paper["value"]) + (" (summary)" if paper["source"] == "summary" else "")})
    return table(rows, index=["text model", "regime"] if rows else None)


SPLIT_SPREAD = 0.5  # seeds further apart than this ended in two different outcomes: no mean is shown


def _mean_sd(values) -> str:
    """Mean ± sample sd over seeds, as percentages (the sd only where there are several); seeds that ended more
    than ``SPLIT_SPREAD`` apart are listed one by one instead, since their mean would describe no model."""
    vals = [v for v in values if v is not None]
    if not vals:
        return MISSING
    if max(vals) - min(vals) > SPLIT_SPREAD:
        return " / ".join(pct(v) for v in vals) + " (per seed)"
    m, sd = mean_sd(vals)
    return pct(m) + (f" ± {pct(sd)}" if len(vals) > 1 else "")


def correction_summary(results_dir=None) -> list[dict]:
    """Per start (learning recipe without noise): seeds, mean OOD and BS before and after, and the mechanisms.
    A start whose seeds read differently before images is split by that reading (as in the headline table)."""
    out = []
    for (start, recipe), rs in _group(L.correction_rows(results_dir)).items():
        if recipe not in L.IMAGE_ONLY_RECIPES:
            continue
        for read, group in D.split_by_reading(rs, lambda r: r["before"].get("binding_score")):
            m = {f"{k}_{w}": D.mean(r[w].get(k) for r in group) for k in ("ood_accuracy", "binding_score", "flip_rate")
                 for w in ("before", "after")}
            out.append({"start": start + (f" ({read} seeds)" if read else "")
                        + (" with the shape -> item query" if recipe in L.SUB_RECIPES else ""),
                        "seeds": [r["seed"] for r in group], **m,
                        "mechanism_before": mechanism(m["binding_score_before"]),
                        "mechanism_after": mechanism(m["binding_score_after"])})
    return out


def by_n_rows(results_dir=None) -> list[dict]:
    """Text accuracy per number of objects, mean over seeds, per start and regime (pre-aggregated for the chart)."""
    rows = []
    for h in L.headline_rows(results_dir):
        ns = sorted({int(n) for r in h["runs"] for n in (r.get("accuracy_by_n") or {})})
        for n in ns:
            rows.append({"start": h["start"], "regime": h["regime"], "N": n,
                         "accuracy": D.mean((r.get("accuracy_by_n") or {}).get(str(n)) for r in h["runs"])})
    return rows


def by_n_chart(results_dir=None, id_max: int = 8):
    """One panel per start: text accuracy by N for the text model and each continuation of it."""
    import altair as alt

    base = alt.Chart().encode(x=alt.X("N:Q", title="N (objects)"),
                              y=alt.Y("accuracy:Q", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
                              color=alt.Color("regime:N", sort=list(REGIME_ORDER)),
                              tooltip=["start:N", "regime:N", "N:Q", alt.Tooltip("accuracy:Q", format=".3f")])
    edge = alt.Chart().mark_rule(strokeDash=[4, 4], color="gray").encode(x=alt.datum(id_max + 0.5))
    return (alt.layer(base.mark_line(point=True), edge, data=alt.Data(values=by_n_rows(results_dir)))
            .properties(width=150, height=180)  # four panels fit the book's column
            .facet(column=alt.Column("start:N", title=None, sort=list(STARTS.values()),
                                     header=alt.Header(labelExpr="split(datum.value, ', ')")),  # long names on 2 lines
                   title="Text accuracy by N, before and after (dashed: edge of training)")
            .configure_legend(orient="bottom", columns=3))


def expansion_rows(results_dir=None) -> list[dict]:
    """One row per vocabulary-expansion run of the task's standard format (``expand_*.json``): what it started from
    (a text model or its image-stage continuation), seed, steps, and accuracy over N 2..8, 9..16 and 17..24."""
    rows = []
    for r in io.load_results("expand_*.json", D._dir(results_dir), kind="vocab_expansion"):
        if ((r.get("train_config") or {}).get("task") or {}).get("format", "standard") != "standard":
            continue  # the positional control (ordered format), read by the chapter on where models fail
        start = r.get("start") or Path(r["init_from"]).name
        rows.append({"start": start, "from": "image stage" if start.startswith("imagestage_") else "text model",
                     "seed": r["seed"], "steps": r["steps"], "id_accuracy": r["id_accuracy"],
                     "ood_accuracy": r["ood_accuracy"], "ood_17_24_accuracy": r["ood_17_24_accuracy"],
                     "accuracy_by_n": r["accuracy_by_n"], "meets_target": r.get("meets_target")})
    return sorted(rows, key=lambda x: (x["from"] != "text model", x["seed"]))


def expansion_table(results_dir=None) -> pd.DataFrame:
    """The vocabulary-expansion runs, per start and seed: accuracy over N 2..8, 9..16 and 17..24."""
    rows = [{"continues": r["from"], "seed": r["seed"], "steps": r["steps"], "N 2..8": pct(r["id_accuracy"]),
             "N 9..16": pct(r["ood_accuracy"]), "N 17..24": pct(r["ood_17_24_accuracy"])}
            for r in expansion_rows(results_dir)]
    return table(rows, index=["continues", "seed"] if rows else None)


def image_curve_rows(results_dir=None) -> list[dict]:
    """Image-prompt accuracy through the image stage (recipe replay, the table's budget), mean over seeds,
    per text model and image positions: how fast each start learns to read pictures."""
    acc: dict[tuple, list[float]] = {}
    for r in L.load_image_runs(results_dir, positions=None):
        if r["recipe"] not in L.IMAGE_ONLY_RECIPES:
            continue
        label = (f"{L.start_label(r)}, {L.vision_config(r).image_positions} positions"
                 + (", + shape -> item" if r["recipe"] in L.SUB_RECIPES else ""))
        for h in r.get("history") or []:
            if h.get("acc_image_two_hop") is not None:
                acc.setdefault((label, h["step"]), []).append(h["acc_image_two_hop"])
    return [{"run": k[0], "step": k[1], "image accuracy": sum(v) / len(v), "seeds": len(v)} for k, v in sorted(acc.items())]


def image_curve_chart(results_dir=None):
    """The image-stage curves of ``image_curve_rows``: image-prompt ID accuracy against step."""
    from .plots import line_chart

    return line_chart(image_curve_rows(results_dir), "step", "image accuracy", "run",
                      "Image-prompt ID accuracy through the image and mix stages (mean over seeds)",
                      y_format="%").configure_legend(labelLimit=320, orient="bottom", columns=1)


NOISE_BASE = {"noise_text_matched": "text_matched", "noise_replay": "replay", "noise_half_replay": "replay"}


def noise_rows(results_dir=None) -> list[dict]:
    """What noise at the table's budget does, run by run: the noised task (last logged accuracy on noised
    prompts), clean ID, image ID, OOD, the same start's run without noise (numbering image tokens the same
    way) and, where the text target is missed, the weakest ID length."""
    runs = L.load_image_runs(results_dir, noise=None, positions=None)
    base = {(r["recipe"], Path(r["init_from"]).name, L.vision_config(r).image_positions): r for r in runs}
    lo, hi = TaskConfig().id_range
    rows = []
    for r in sorted((r for r in runs if r["recipe"] in NOISE_BASE),
                    key=lambda r: (L.start_suffix(r), list(NOISE_BASE).index(r["recipe"]),
                                   L.vision_config(r).noise_positions, r["seed"])):
        without = base.get((NOISE_BASE[r["recipe"]], Path(r["init_from"]).name, L.vision_config(r).image_positions))
        by_n = {int(n): a for n, a in (r.get("accuracy_by_n") or {}).items() if lo <= int(n) <= hi}
        weakest = min(by_n, key=by_n.get) if by_n and not r.get("meets_targets") else None
        rows.append({"start": L.start_label(r), "recipe": r["recipe"], "seed": r["seed"],
                     "noise_positions": L.vision_config(r).noise_positions,
                     "noised": next((h["acc_noise_two_hop"] for h in reversed(r.get("history") or [])
                                     if "acc_noise_two_hop" in h), None),
                     "clean_id": r["id_accuracy"], "image_id": r.get("image_id_accuracy"), "ood": r["ood_accuracy"],
                     "base": NOISE_BASE[r["recipe"]], "base_ood": without["ood_accuracy"] if without else None,
                     "meets_targets": bool(r.get("meets_targets")),
                     "weakest": (weakest, by_n[weakest]) if weakest is not None else None})
    return rows


def noise_table(results_dir=None) -> pd.DataFrame:
    """``noise_rows`` as chapter 4 shows them: one row per noise run."""
    return table([{"text model": n["start"], "run": f"{n['recipe']} s{n['seed']}"
                   + (f" ({n['noise_positions']} positions)" if n["noise_positions"] != "sequence" else ""),
                   "noised prompts": pct(n["noised"]),
                   "clean ID": pct(n["clean_id"]), "image ID": pct(n["image_id"]) if n["image_id"] is not None else MISSING,
                   "OOD": pct(n["ood"]), "OOD without noise": pct(n["base_ood"]) if n["base_ood"] is not None else MISSING,
                   "targets": "met" if n["meets_targets"] else "missed" + (
                       f" (N = {n['weakest'][0]}: {pct(n['weakest'][1])})" if n["weakest"] else "")}
                  for n in noise_rows(results_dir)], index="text model")


def paper(regime: str) -> float:
    return OOD_ACCURACY[regime]["value"]
