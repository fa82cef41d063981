"""Altair chart helpers for the book.

Charts take small, pre-aggregated lists of dicts (never raw samples), so they
stay far below altair's 5000-row limit and need no pandas.  They use altair's
default HTML renderer, which Jupyter Book and Colab both display.
"""
from __future__ import annotations

from pathlib import Path

import altair as alt

from ..core.profiles import REGIMES
from ..core.task import TaskConfig, Vocab, prompt_length, sample_batch
from .widgets import split_of
from . import offline  # noqa: F401  (charts saved with a static picture, drawn by the page's own vega)

WIDTH, HEIGHT = 460, 260
SPLIT_COLORS = {"ID": "#1f77b4", "OOD": "#d62728", "neither": "#9e9e9e"}


def _field(name: str, default_type: str) -> str:
    """Add an altair type (``:Q``, ``:N``, ...) to a field name unless it already has one."""
    return name if ":" in name else f"{name}:{default_type}"


def _bare(name: str) -> str:
    return name.split(":")[0]


def line_chart(rows: list[dict], x: str, y: str, color: str | None = None, title: str = "",
               *, x_title: str | None = None, y_title: str | None = None, y_format: str | None = None) -> alt.Chart:
    """A line chart with points and tooltips; x and y default to quantitative, color to nominal."""
    y_axis = alt.Axis(format=y_format) if y_format else alt.Axis()
    encoding = {
        "x": alt.X(_field(x, "Q"), title=x_title or _bare(x)),
        "y": alt.Y(_field(y, "Q"), title=y_title or _bare(y), axis=y_axis),
        "tooltip": [_field(x, "Q"), _field(y, "Q")] + ([_field(color, "N")] if color else []),
    }
    if color:
        encoding["color"] = alt.Color(_field(color, "N"), title=_bare(color))
    return (
        alt.Chart(alt.Data(values=rows), title=title)
        .mark_line(point=True)
        .encode(**encoding)
        .properties(width=WIDTH, height=HEIGHT)
    )


def prompt_length_rows(task_cfg: TaskConfig, offset: int = 0) -> list[dict]:
    """Prompt length for N = 1..max: from the formula and measured on a sampled prompt (they must agree)."""
    max_n = max(task_cfg.id_range[1], task_cfg.ood_range[1])
    rows = []
    for n in range(1, max_n + 1):
        batch = sample_batch(task_cfg, 1, seed=n, n=n, offset=offset)
        measured = int(batch.query_pos[0]) + 1  # tokens up to and including the query
        expected = prompt_length(n, offset)
        if measured != expected:
            raise AssertionError(f"N={n}: a sampled prompt has {measured} tokens but prompt_length says {expected}.")
        rows.append({"N": n, "tokens": measured, "split": split_of(n, task_cfg)})
    return rows


def prompt_length_chart(task_cfg: TaskConfig, offset: int = 0) -> alt.Chart:
    """Bars of prompt length (tokens) against N, coloured by the split N belongs to."""
    rows = prompt_length_rows(task_cfg, offset)
    splits = [s for s in SPLIT_COLORS if any(r["split"] == s for r in rows)]
    return (
        alt.Chart(alt.Data(values=rows), title="Prompt length grows linearly with the number of objects")
        .mark_bar()
        .encode(
            x=alt.X("N:O", title="objects in the prompt (N)", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("tokens:Q", title="prompt length (tokens)"),
            color=alt.Color("split:N", title="split",
                            scale=alt.Scale(domain=splits, range=[SPLIT_COLORS[s] for s in splits])),
            tooltip=["N:O", "tokens:Q", "split:N"],
        )
        .properties(width=WIDTH, height=HEIGHT)
    )


def color_swatch_chart(vocab: Vocab) -> alt.Chart:
    """One square per colour token, filled with that colour and labelled with its name."""
    names = vocab.names()[vocab.color_offset : vocab.shape_offset]
    per_row = 8
    rows = [{"name": name, "col": k % per_row, "row": k // per_row} for k, name in enumerate(names)]
    base = alt.Chart(alt.Data(values=rows), title="The colour tokens").encode(
        x=alt.X("col:O", axis=None), y=alt.Y("row:O", axis=None)
    )
    # Full opacity and a thin outline, so each square shows its true colour and white stays visible.
    squares = base.mark_square(size=900, opacity=1, stroke="#777777", strokeWidth=1).encode(color=alt.Color("name:N", scale=None), tooltip=["name:N"])
    labels = base.mark_text(dy=26, fontSize=10).encode(text="name:N")
    n_rows = (len(names) + per_row - 1) // per_row
    return (squares + labels).properties(width=per_row * 58, height=58 * n_rows).configure_view(strokeWidth=0)


def _vl_convert_version() -> str:
    """vl-convert names Vega-Lite versions like 'v6_4'; altair's schema is 'v6.4.1'."""
    return "_".join(alt.SCHEMA_VERSION.split(".")[:2])


def save_static(chart: alt.TopLevelMixin, path: str | Path, scale: float = 2.0) -> Path:
    """Write a chart as a static PNG or SVG (offline, via vl-convert), for papers and slides."""
    path = Path(path)
    if path.suffix not in (".png", ".svg"):
        raise ValueError(f"save_static writes .png or .svg, not {path.suffix!r} ({path}).")
    import vl_convert as vlc  # imported late: only static export needs it

    spec = chart.to_dict()
    if path.suffix == ".png":
        data = vlc.vegalite_to_png(spec, vl_version=_vl_convert_version(), scale=scale)
    else:
        data = vlc.vegalite_to_svg(spec, vl_version=_vl_convert_version()).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------- training and evaluation charts
def history_rows(history: list[dict], label: str | None = None) -> list[dict]:
    """Long-format rows (step, skill, accuracy) from a training history."""
    rows = []
    for h in history:
        for key, value in h.items():
            if key.startswith("acc_"):
                skill = "two_hop (current stage's prompts)" if key == "acc_stage_two_hop" else key[4:]
                row = {"step": h["step"], "skill": skill, "accuracy": value}
                if label is not None:
                    row["run"] = label
                rows.append(row)
    return rows


def training_curves_chart(history: list[dict], title: str = "Sub-skill accuracy during training (ID prompts)") -> alt.Chart:
    """Accuracy of the two-hop task and its two one-hop parts against the training step."""
    return line_chart(history_rows(history), "step", "accuracy", "skill", title, y_title="accuracy", y_format="%")


def accuracy_by_n_rows(results: list[dict], label_field: str = "seed") -> list[dict]:
    rows = []
    for r in results:
        for n, acc in r["accuracy_by_n"].items():
            rows.append({"N": int(n), "accuracy": acc, "run": f"{label_field} {r.get(label_field)}"})
    return rows


def accuracy_by_n_chart(results: list[dict], task_cfg: TaskConfig, paper_ood: float | None = None,
                        label_field: str = "seed", title: str = "Accuracy by number of objects") -> alt.LayerChart:
    """Accuracy per N for each run, the ID/OOD boundary, and optionally the paper's OOD mean as a labelled rule."""
    rows = accuracy_by_n_rows(results, label_field)
    lines = line_chart(rows, "N", "accuracy", "run", title, x_title="objects in the prompt (N)", y_format="%")
    boundary = alt.Chart(alt.Data(values=[{"N": task_cfg.id_range[1] + 0.5, "label": "train range ends"}])).mark_rule(
        strokeDash=[4, 4], color="#555555").encode(x="N:Q", tooltip=["label:N"])
    layers = [lines, boundary]
    if paper_ood is not None:
        ood = [{"N": n, "accuracy": paper_ood, "label": "paper: text-only OOD mean"}
               for n in (task_cfg.ood_range[0], task_cfg.ood_range[1])]
        layers.append(alt.Chart(alt.Data(values=ood)).mark_line(color="#d62728", strokeDash=[6, 3]).encode(
            x="N:Q", y="accuracy:Q", tooltip=["label:N", alt.Tooltip("accuracy:Q", format=".1%")]))
        layers.append(alt.Chart(alt.Data(values=ood[-1:])).mark_text(align="right", dy=-8, color="#d62728").encode(
            x="N:Q", y="accuracy:Q", text="label:N"))
    return alt.layer(*layers).properties(width=WIDTH, height=HEIGHT)


def split_summary_chart(rows: list[dict], title: str = "ID and OOD accuracy: ours against the paper's") -> alt.Chart:
    """Grouped bars: rows of {source, split, accuracy, (sd)}."""
    return (
        alt.Chart(alt.Data(values=rows), title=title)
        .mark_bar()
        .encode(
            x=alt.X("source:N", title=None, axis=alt.Axis(labelAngle=0)),
            y=alt.Y("accuracy:Q", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("source:N", legend=None),
            column=alt.Column("split:N", title=None),
            tooltip=["source:N", "split:N", alt.Tooltip("accuracy:Q", format=".1%")],
        )
        .properties(width=180, height=HEIGHT)
    )


# ---------------------------------------------------------------- chapter 4: the headline table
REGIME_ORDER = list(REGIMES)


def regime_table_rows(rows: list[dict]) -> list[dict]:
    """Long-form rows for regime_table_chart: one per seed value, one per regime mean, one per paper value."""
    out = []
    for r in rows:
        for v in r["values"]:
            out.append({"regime": r["regime"], "who": "ours (one seed)", "accuracy": v})
        out.append({"regime": r["regime"], "who": "ours (mean)", "accuracy": r["mean"],
                    "lo": r["mean"] - r["sd"], "hi": r["mean"] + r["sd"]})
        if r.get("paper") is not None:
            out.append({"regime": r["regime"], "who": "paper", "accuracy": r["paper"]})
    return out


def regime_table_chart(rows: list[dict], title: str = "Text-only OOD accuracy by training regime") -> alt.Chart:
    """Seeds as dots, our mean +- sd as a bar and whisker, the paper's number as a red tick."""
    data = alt.Data(values=regime_table_rows(rows))
    x = alt.X("regime:N", sort=REGIME_ORDER, title=None, axis=alt.Axis(labelAngle=-20))
    y = alt.Y("accuracy:Q", title="OOD accuracy (N 9..16, text prompts)", scale=alt.Scale(domain=[0, 1]),
              axis=alt.Axis(format="%"))
    base = alt.Chart(data, title=title).encode(x=x)
    bars = base.mark_bar(opacity=0.35, color="#1f77b4").encode(y=y, tooltip=["regime:N", alt.Tooltip("accuracy:Q", format=".3f")]
                                                               ).transform_filter("datum.who == 'ours (mean)'")
    whisk = base.mark_rule(color="#1f77b4").encode(y="lo:Q", y2="hi:Q").transform_filter("datum.who == 'ours (mean)'")
    dots = base.mark_circle(size=45, color="#1f77b4").encode(y=y).transform_filter("datum.who == 'ours (one seed)'")
    paper = base.mark_tick(color="#d62728", thickness=3, size=34).encode(
        y=y, tooltip=["regime:N", alt.Tooltip("accuracy:Q", format=".3f")]).transform_filter("datum.who == 'paper'")
    return (bars + whisk + dots + paper).properties(width=WIDTH, height=HEIGHT)
