"""Charts of the interpretability chapters (5-7): interchange, knockouts, probes, from results files."""
from __future__ import annotations

import altair as alt

from ..core.evaluate import mean_sd
from .axes import LABELS
from .plots import HEIGHT, WIDTH

INTERP_REGIMES = list(LABELS)
HYPOTHESES = ["positional", "symbolic", "reflexive", "none", "other"]


def _mean(values):
    m = mean_sd(values)[0]
    return None if m != m else m  # no finite value: None, which a chart leaves out (nan is not JSON)


def _regime_sort(records: list[dict]) -> list[str]:
    present = {r["regime"] for r in records}
    return [g for g in INTERP_REGIMES if g in present] + sorted(present - set(INTERP_REGIMES))


def iia_rows(records: list[dict], split: str = "id") -> list[dict]:
    """Mean IIA over seeds per (regime, layer, outcome) of interchange results files."""
    cells: dict = {}
    for r in records:
        for row in (r["splits"].get(split) or {}).get("per_layer") or []:
            for h in HYPOTHESES:
                cells.setdefault((r["regime"], row["layer"], h), []).append(row[h])
    return [{"regime": g, "layer": l, "outcome": h, "share": _mean(v), "seeds": len(v)}
            for (g, l, h), v in sorted(cells.items(), key=lambda kv: (INTERP_REGIMES.index(kv[0][0])
                                                                       if kv[0][0] in INTERP_REGIMES else 99, kv[0][1:]))]


def iia_heatmap_chart(records: list[dict], split: str = "id", title: str | None = None) -> alt.Chart:
    """Layer x outcome heatmaps of the interchange shares, one panel per regime (mean over seeds)."""
    rows = iia_rows(records, split)
    return (
        alt.Chart(alt.Data(values=rows))
        .mark_rect()
        .encode(
            x=alt.X("layer:O", title="patched layer (residual entering it)", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("outcome:N", sort=HYPOTHESES, title=None),
            color=alt.Color("share:Q", scale=alt.Scale(scheme="blues", domain=[0, 1]), legend=alt.Legend(format=".0%")),
            tooltip=["regime:N", "layer:O", "outcome:N", alt.Tooltip("share:Q", format=".1%"), "seeds:Q"],
        )
        .properties(width=150, height=130)
        .facet(column=alt.Column("regime:N", sort=_regime_sort(records), title=None))
        .properties(title=title or f"Which item does the patched run name? ({split.upper()} pairs, mean over seeds)")
    )


def binding_score_rows(records: list[dict], split: str = "id") -> list[dict]:
    """Per (regime, layer): mean, min and max over seeds of the binding score BS = (sym - pos) / (sym + pos)."""
    cells: dict = {}
    for r in records:
        for row in (r["splits"].get(split) or {}).get("per_layer") or []:
            if row.get("binding_score") is not None:
                cells.setdefault((r["regime"], row["layer"]), []).append(row["binding_score"])
    return [{"regime": g, "layer": l, "binding_score": _mean(v), "lo": min(v), "hi": max(v), "seeds": len(v)}
            for (g, l), v in cells.items()]


def binding_score_chart(records: list[dict], split: str = "id", title: str | None = None) -> alt.LayerChart:
    """BS by layer per regime: the mean over seeds as a line, the seed range as a band; +1 symbolic, -1 positional."""
    data = alt.Data(values=binding_score_rows(records, split))
    color = alt.Color("regime:N", sort=_regime_sort(records))
    x = alt.X("layer:O", title="patched layer", axis=alt.Axis(labelAngle=0))
    base = alt.Chart(data).encode(x=x, color=color)
    band = base.mark_area(opacity=0.2).encode(y="lo:Q", y2="hi:Q")
    line = base.mark_line(point=True).encode(
        y=alt.Y("binding_score:Q", title="binding score (+1 symbolic, -1 positional)", scale=alt.Scale(domain=[-1, 1])),
        tooltip=["regime:N", "layer:O", alt.Tooltip("binding_score:Q", format=".2f"), alt.Tooltip("lo:Q", format=".2f"),
                 alt.Tooltip("hi:Q", format=".2f"), "seeds:Q"])
    zero = alt.Chart(alt.Data(values=[{"y": 0}])).mark_rule(strokeDash=[4, 4], color="#555555").encode(y="y:Q")
    return alt.layer(band, line, zero, title=title or f"Binding score by layer ({split.upper()} pairs; band: seed range)"
                     ).properties(width=WIDTH, height=HEIGHT)


def routing_rows(records: list[dict], split: str = "id") -> list[dict]:
    """One row per checkpoint: routing layer, its P_sym, P_pos and BS, and the position-swap flip rate."""
    out = []
    for r in records:
        s = (r["splits"].get(split) or {})
        if not s.get("summary"):
            continue
        layer = s["summary"]["routing_layer"]
        row = next(x for x in s["per_layer"] if x["layer"] == layer)
        out.append({"regime": r["regime"], "seed": r["seed"], "routing_layer": layer,
                    "routing_share": s["summary"].get("routing_share"), "p_sym": row["symbolic"],
                    "p_pos": row["positional"], "binding_score": s["summary"]["binding_score"],
                    "flip_rate": r["position_swap"]["flip_rate"], "stay_rate": r["position_swap"]["stay_rate"]})
    return out


def routing_chart(records: list[dict], split: str = "id") -> alt.HConcatChart:
    """Per regime, per seed: BS at the routing layer, and the position-id swap's flip and stay rates."""
    rows = routing_rows(records, split)
    order = _regime_sort(records)
    x = alt.X("regime:N", sort=order, title=None, axis=alt.Axis(labelAngle=-20))
    tip = ["regime:N", "seed:O", "routing_layer:O", alt.Tooltip("p_sym:Q", format=".1%"),
           alt.Tooltip("p_pos:Q", format=".1%"), alt.Tooltip("binding_score:Q", format=".2f")]
    bs = (alt.Chart(alt.Data(values=rows), title="BS at the routing layer (one dot per seed)")
          .mark_circle(size=70, color="#1f77b4", opacity=0.7)
          .encode(x=x, y=alt.Y("binding_score:Q", scale=alt.Scale(domain=[-1, 1]), title="binding score"), tooltip=tip)
          .properties(width=220, height=HEIGHT))
    zero = alt.Chart(alt.Data(values=[{"y": 0}])).mark_rule(strokeDash=[4, 4], color="#555555").encode(y="y:Q")
    long = [{"regime": r["regime"], "seed": r["seed"], "outcome": k.replace("_rate", ""), "share": r[k]}
            for r in rows for k in ("flip_rate", "stay_rate")]
    swap = (alt.Chart(alt.Data(values=long), title="Position-id swap: answer flips (POS) or stays (SYM)")
            .mark_circle(size=70)
            .encode(x=x, y=alt.Y("share:Q", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
                    color=alt.Color("outcome:N", scale=alt.Scale(domain=["flip", "stay"], range=["#d62728", "#2ca02c"])),
                    tooltip=["regime:N", "seed:O", "outcome:N", alt.Tooltip("share:Q", format=".1%")])
            .properties(width=220, height=HEIGHT))
    return alt.hconcat(bs + zero, swap).resolve_scale(color="independent")


KNOCKOUT_SETS = ["answer_shape", "answer_item", "query_declaration", "structural", "other_objects"]


def knockout_rows(records: list[dict], mode: str = "window", metric: str = "relative_change") -> list[dict]:
    """Mean over seeds per (regime, target set, layer); each set is followed by its random control."""
    cells: dict = {}
    for r in records:
        for name, v in r[mode]["sets"].items():
            for layer, x in enumerate(v[metric]):
                cells.setdefault((r["regime"], name, layer), []).append(x)
    return [{"regime": g, "target": name, "layer": l, "value": _mean(v), "seeds": len(v)}
            for (g, name, l), v in cells.items()]


def knockout_order(records: list[dict]) -> list[str]:
    names = list(records[0]["window"]["sets"]) if records else []
    main = [n for n in KNOCKOUT_SETS if n in names] + [n for n in names if n not in KNOCKOUT_SETS and not n.startswith("random_")]
    return [x for n in main for x in (n, f"random_{n}") if x in names]


def knockout_color(metric: str) -> alt.Color:
    """Red-blue around 0 for the % change of p(answer) (clamped at +-100), blues for accuracy."""
    if metric == "relative_change":
        return alt.Color("value:Q", title="% change of p(answer)",
                         scale=alt.Scale(scheme="redblue", domain=[-100, 100], domainMid=0, clamp=True))
    return alt.Color("value:Q", title="accuracy", scale=alt.Scale(scheme="blues", domain=[0, 1], clamp=True),
                     legend=alt.Legend(format=".0%"))


def knockout_heatmap_chart(records: list[dict], mode: str = "window", metric: str = "relative_change",
                           title: str | None = None) -> alt.Chart:
    """Layer x target-set heatmaps of a knockout metric, one panel per regime (mean over seeds)."""
    rows = knockout_rows(records, mode, metric)
    color, fmt = knockout_color(metric), (".1f" if metric == "relative_change" else ".1%")
    what = "the read-out token attends nowhere in the set, at layer l only" if mode == "window" else \
        "the read-out token attends nowhere in the set, at layers >= l"
    return (
        alt.Chart(alt.Data(values=rows))
        .mark_rect()
        .encode(
            x=alt.X("layer:O", title="layer", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("target:N", sort=knockout_order(records), title=None),
            color=color,
            tooltip=["regime:N", "target:N", "layer:O", alt.Tooltip("value:Q", format=fmt), "seeds:Q"],
        )
        .properties(width=120, height=220)
        .facet(column=alt.Column("regime:N", sort=_regime_sort(records), title=None))
        .properties(title=title or f"Attention knockouts ({mode}): {what}")
    )


def head_knockout_rows(records: list[dict], target: str = "answer_item", metric: str = "relative_change") -> list[dict]:
    """Mean over seeds per (regime, layer, head) of a per-head knockout of ``target``."""
    cells: dict = {}
    for r in records:
        grid = r["per_head"]["sets"][target][metric]
        for layer, row in enumerate(grid):
            for head, x in enumerate(row):
                cells.setdefault((r["regime"], layer, head), []).append(x)
    return [{"regime": g, "layer": l, "head": h, "value": _mean(v), "seeds": len(v)} for (g, l, h), v in cells.items()]


def head_knockout_chart(records: list[dict], target: str = "answer_item") -> alt.Chart:
    """Layer x head heatmaps: the change of p(answer) when one head of one layer cannot see ``target``."""
    rows = head_knockout_rows([r for r in records if r.get("per_head")], target)
    return (
        alt.Chart(alt.Data(values=rows))
        .mark_rect()
        .encode(
            x=alt.X("head:O", title="head", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("layer:O", title="layer"),
            color=knockout_color("relative_change"),
            tooltip=["regime:N", "layer:O", "head:O", alt.Tooltip("value:Q", format=".1f"), "seeds:Q"],
        )
        .properties(width=110, height=110)
        .facet(column=alt.Column("regime:N", sort=_regime_sort(records), title=None))
        .properties(title=f"One head at a time: the read-out token cannot attend to {target}")
    )


IMAGE_KNOCKOUT_SETS = ["query_patches", "other_patches", "background_patches", "answer_item"]


def image_knockout_chart(rows: list[dict], mode: str = "window", metric: str = "relative_change") -> alt.Chart:
    """Layer x target-set heatmaps of knockouts on image prompts, one panel per image checkpoint
    (``rows`` from bindlib.interp_runs.image_knockouts)."""
    order = [x for n in IMAGE_KNOCKOUT_SETS for x in (n, f"random_{n}")]
    cells = [{"run": r["run"], "target": name, "layer": layer, "value": x}
             for r in rows for name, v in r[mode]["sets"].items() for layer, x in enumerate(v[metric])]
    color = knockout_color(metric)
    return (
        alt.Chart(alt.Data(values=cells))
        .mark_rect()
        .encode(
            x=alt.X("layer:O", title="layer", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("target:N", sort=order, title=None),
            color=color,
            tooltip=["run:N", "target:N", "layer:O", alt.Tooltip("value:Q", format=".2f")],
        )
        .properties(width=100, height=180)
        .facet(facet=alt.Facet("run:N", sort=[r["run"] for r in rows], title=None), columns=4)
        .properties(title=f"Knockouts on image prompts ({mode}): the queried object's patches against the others")
    )


PROBE_SERIES = {"accuracy": "trained model", "random_init_accuracy": "same model, random init",
                "control_accuracy": "control task (random labels)"}


def probe_rows(records: list[dict], role: str, target: str) -> list[dict]:
    """Mean over seeds per (regime, layer, series) of one probe; series: trained, random init, control task."""
    cells: dict = {}
    chance = []
    for r in records:
        for p in r["probes"]:
            if (p["role"], p["target"]) != (role, target):
                continue
            chance.append(p["chance"])
            for row in p["layers"]:
                for key, label in PROBE_SERIES.items():
                    if row.get(key) is not None:
                        cells.setdefault((r["regime"], row["layer"], label), []).append(row[key])
    return [{"regime": g, "layer": l, "series": s, "accuracy": _mean(v), "chance": _mean(chance), "seeds": len(v)}
            for (g, l, s), v in cells.items()]


def probe_chart(records: list[dict], role: str, target: str, title: str | None = None) -> alt.Chart:
    """Probe accuracy by layer, one panel per regime: trained model, random-init baseline and control task."""
    rows = probe_rows(records, role, target)
    return (
        alt.Chart(alt.Data(values=rows))
        .mark_line(point=True)
        .encode(
            x=alt.X("layer:O", title="layer (residual entering it)", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("accuracy:Q", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("series:N", sort=list(PROBE_SERIES.values()), title=None,
                            legend=alt.Legend(orient="bottom", columns=1)),
            strokeDash=alt.StrokeDash("series:N", sort=list(PROBE_SERIES.values()), legend=None),
            tooltip=["regime:N", "layer:O", "series:N", alt.Tooltip("accuracy:Q", format=".1%"), "seeds:Q"],
        )
        .properties(width=150, height=180)
        .facet(column=alt.Column("regime:N", sort=_regime_sort(records), title=None))
        .properties(title=title or f"Decoding {target} at {role} tokens (test set: unseen combinations)")
    )


def signature_rows(records: list[dict]) -> list[dict]:
    """Per (regime, seed, layer): bound-colour accuracy at shape tokens minus the random-init baseline."""
    out = []
    for r in records:
        for p in r["probes"]:
            if (p["role"], p["target"]) == ("shape", "bound_color"):
                for row in p["layers"]:
                    out.append({"regime": r["regime"], "seed": r["seed"], "layer": row["layer"],
                                "accuracy": row["accuracy"], "random_init": row["random_init_accuracy"],
                                "gain": row["accuracy"] - row["random_init_accuracy"]})
    return out


def signature_chart(records: list[dict]) -> alt.Chart:
    """The binding signature: how much better than a random-init model the bound colour is decoded at shape tokens."""
    return (
        alt.Chart(alt.Data(values=signature_rows(records)),
                  title="Binding signature: bound colour at shape tokens, above the random-init baseline")
        .mark_line(point=True)
        .encode(
            x=alt.X("layer:O", title="layer (residual entering it)", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("gain:Q", title="accuracy - random-init accuracy", axis=alt.Axis(format="%"),
                    scale=alt.Scale(domain=[-0.2, 1])),
            color=alt.Color("regime:N", sort=_regime_sort(records)),
            detail="seed:N",
            tooltip=["regime:N", "seed:O", "layer:O", alt.Tooltip("accuracy:Q", format=".1%"),
                     alt.Tooltip("random_init:Q", format=".1%"), alt.Tooltip("gain:Q", format=".1%")],
        )
        .properties(width=WIDTH, height=HEIGHT)
    )
