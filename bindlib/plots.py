"""Altair chart helpers for the book.

Charts take small, pre-aggregated lists of dicts (never raw samples), so they
stay far below altair's 5000-row limit and need no pandas.  They use altair's
default HTML renderer, which Jupyter Book and Colab both display.
"""
from __future__ import annotations

from pathlib import Path

import altair as alt

from .task import TaskConfig, Vocab, prompt_length, sample_batch
from .widgets import split_of

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


# ---------------------------------------------------------------- pictures (chapter 3)
# Images go into altair as PNG data URLs inside image marks, so a scene, its patch grid and its
# object boxes share one chart, with tooltips. PNG encoding is plain zlib: no imaging library.
def png_bytes(image, scale: int = 1) -> bytes:
    """An RGB image ([3, H, W] or [H, W, 3]; floats in 0..1 or uint8) as PNG bytes, upscaled
    ``scale`` times by pixel repetition (crisp pixels rather than browser blur)."""
    import struct
    import zlib

    import numpy as np

    arr = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image)
    if arr.ndim != 3:
        raise ValueError(f"png_bytes takes one RGB image [3, H, W] or [H, W, 3], got shape {arr.shape}.")
    if arr.shape[0] == 3 and arr.shape[-1] != 3:
        arr = arr.transpose(1, 2, 0)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if scale > 1:
        arr = arr.repeat(scale, axis=0).repeat(scale, axis=1)
    h, w, _ = arr.shape
    raw = np.concatenate([np.zeros((h, 1), dtype=np.uint8), arr.reshape(h, w * 3)], axis=1).tobytes()  # filter 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def png_data_url(image, scale: int = 1) -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode(png_bytes(image, scale)).decode()


def _pixel_axes(width_px: float, height_px: float, scale: float, x_field: str = "x", y_field: str = "y"):
    """x and y encodings in image pixels, y growing downwards, drawn ``scale`` screen pixels per image pixel."""
    x = alt.X(f"{x_field}:Q", scale=alt.Scale(domain=[0, width_px], nice=False, zero=False), axis=None)
    y = alt.Y(f"{y_field}:Q", scale=alt.Scale(domain=[0, height_px], nice=False, zero=False, reverse=True), axis=None)
    return x, y, {"width": width_px * scale, "height": height_px * scale}


def image_grid_chart(images, labels, columns: int = 8, scale: int = 2, title: str = "", label_size: int = 10,
                     tooltips: list[dict] | None = None) -> alt.LayerChart:
    """Several images in a grid, each with a label underneath (and optional tooltip fields)."""
    images = list(images)
    if len(images) != len(labels):
        raise ValueError(f"got {len(images)} images but {len(labels)} labels.")
    side = max(max(im.shape[-1], im.shape[-2]) if im.shape[0] == 3 else max(im.shape[:2]) for im in images)
    cell_w, cell_h = side + 4, side + 4 + (max(6, round(label_size * 1.4 / scale)) if label_size else 0)
    n_rows = (len(images) + columns - 1) // columns
    rows = []
    for k, (im, label) in enumerate(zip(images, labels)):
        col, row = k % columns, k // columns
        rows.append({"x": col * cell_w + 2, "y": row * cell_h + 2, "ty": row * cell_h + side + 3,
                     "tx": col * cell_w + 2 + side / 2, "url": png_data_url(im, scale), "label": str(label),
                     **((tooltips or [{}] * len(images))[k])})
    x, y, size = _pixel_axes(columns * cell_w, n_rows * cell_h, scale)
    extra = [f"{key}:N" for key in (tooltips[0] if tooltips else {})]
    base = alt.Chart(alt.Data(values=rows))
    pictures = base.mark_image(width=side * scale, height=side * scale, align="left", baseline="top").encode(
        x=x, y=y, url="url:N", tooltip=["label:N", *extra])
    layers = [pictures]
    if label_size:  # label_size=0: tooltips only (for large galleries)
        tx, ty, _ = _pixel_axes(columns * cell_w, n_rows * cell_h, scale, "tx", "ty")
        layers.append(base.mark_text(baseline="top", fontSize=label_size).encode(x=tx, y=ty, text="label:N"))
    return alt.layer(*layers, title=title).properties(**size)


def text_panel_chart(lines: list[str], title: str = "", width: int = 260, line_height: int = 18,
                     colors: list[str] | None = None) -> alt.Chart:
    """Lines of monospaced text as a chart, to sit beside a picture (alt.hconcat); optional colour per line."""
    rows = [{"line": k, "text": t, "color": (colors[k] if colors else "#222222")} for k, t in enumerate(lines)]
    return (
        alt.Chart(alt.Data(values=rows), title=title)
        .mark_text(align="left", baseline="middle", font="monospace", fontSize=12)
        .encode(x=alt.value(4), y=alt.Y("line:O", axis=None), text="text:N", color=alt.Color("color:N", scale=None))
        .properties(width=width, height=line_height * max(1, len(lines)))
    )


def scene_chart(image, boxes=None, labels=None, patch: int | None = None, scale: int = 3, title: str = "",
                patch_numbers: bool = False, shade: dict[int, str] | None = None,
                box_color: str = "#111111") -> alt.LayerChart:
    """One rendered scene, optionally with its patch grid, patch numbers, object boxes and labels.

    ``shade`` maps patch indices to a label: those patches are tinted (e.g. the patches of one object).
    """
    import numpy as np

    canvas = image.shape[-1] if image.shape[0] == 3 else image.shape[1]
    x, y, size = _pixel_axes(canvas, canvas, scale)
    layers = [alt.Chart(alt.Data(values=[{"x": 0, "y": 0, "url": png_data_url(image, scale)}])).mark_image(
        width=canvas * scale, height=canvas * scale, align="left", baseline="top").encode(x=x, y=y, url="url:N")]
    x2, y2 = alt.X2("x2:Q"), alt.Y2("y2:Q")
    if patch:
        side = canvas // patch
        if shade:
            cells = [{"x": (p % side) * patch, "y": (p // side) * patch, "x2": (p % side + 1) * patch,
                      "y2": (p // side + 1) * patch, "patch": int(p), "what": str(v)} for p, v in shade.items()]
            layers.append(alt.Chart(alt.Data(values=cells)).mark_rect(color="#ffd400", opacity=0.35).encode(
                x=x, y=y, x2=x2, y2=y2, tooltip=["patch:Q", "what:N"]))
        lines = ([{"x": k * patch, "y": 0, "x2": k * patch, "y2": canvas} for k in range(1, side)]
                 + [{"x": 0, "y": k * patch, "x2": canvas, "y2": k * patch} for k in range(1, side)])
        layers.append(alt.Chart(alt.Data(values=lines)).mark_rule(color="white", strokeWidth=1, opacity=0.8).encode(
            x=x, y=y, x2=x2, y2=y2))
        if patch_numbers:
            numbers = [{"x": (p % side) * patch + 1.5, "y": (p // side) * patch + 1, "patch": p} for p in range(side * side)]
            layers.append(alt.Chart(alt.Data(values=numbers)).mark_text(
                align="left", baseline="top", fontSize=9, color="white", opacity=0.9).encode(x=x, y=y, text="patch:Q"))
    if boxes is not None and len(boxes):
        boxes = np.asarray(boxes).reshape(-1, 4)
        labels = labels if labels is not None else [f"object {k + 1}" for k in range(len(boxes))]
        rows = [{"x": int(b[0]), "y": int(b[1]), "x2": int(b[2]), "y2": int(b[3]), "label": str(lab)}
                for b, lab in zip(boxes, labels)]
        data = alt.Data(values=rows)
        layers.append(alt.Chart(data).mark_rect(fill=None, stroke=box_color, strokeWidth=1.5).encode(
            x=x, y=y, x2=x2, y2=y2, tooltip=["label:N"]))
        layers.append(alt.Chart(data).mark_text(align="left", baseline="bottom", fontSize=11, fontWeight="bold",
                                                color=box_color, dy=-1).encode(x=x, y=y, text="label:N"))
    return alt.layer(*layers, title=title).properties(**size)


def heatmap_chart(rows: list[dict], x: str, y: str, value: str, title: str = "", *, x_title: str | None = None,
                  y_title: str | None = None, value_format: str = ".0%", width: int = WIDTH,
                  height: int = 200, scheme: str = "blues") -> alt.Chart:
    """A heatmap of pre-aggregated cells (x and y ordinal), coloured by ``value``."""
    return (
        alt.Chart(alt.Data(values=rows), title=title)
        .mark_rect()
        .encode(
            x=alt.X(_field(x, "O"), title=x_title or _bare(x), axis=alt.Axis(labelAngle=0, labelOverlap=True)),
            y=alt.Y(_field(y, "O"), title=y_title or _bare(y)),
            color=alt.Color(_field(value, "Q"), title=_bare(value), scale=alt.Scale(scheme=scheme),
                            legend=alt.Legend(format=value_format)),
            tooltip=[_field(x, "O"), _field(y, "O"), alt.Tooltip(_field(value, "Q"), format=value_format)],
        )
        .properties(width=width, height=height)
    )


def patch_share_grids_chart(rows: list[dict], title: str = "", columns: int = 4, cell: int = 14) -> alt.Chart:
    """Small 7 x 7 (side x side) maps, one per ``slot``: rows {slot, row, col, share} give how often
    that slot's object sits at each patch."""
    side = 1 + max(r["col"] for r in rows)
    return (
        alt.Chart(alt.Data(values=rows))
        .mark_rect()
        .encode(
            x=alt.X("col:O", axis=None), y=alt.Y("row:O", axis=None),
            color=alt.Color("share:Q", title="share of scenes", scale=alt.Scale(scheme="blues", domainMin=0),
                            legend=alt.Legend(format=".1%")),
            tooltip=["slot:O", "row:O", "col:O", alt.Tooltip("share:Q", format=".1%")],
        )
        .properties(width=side * cell, height=side * cell)
        .facet(facet=alt.Facet("slot:O", title=title), columns=columns)
    )


# ---------------------------------------------------------------- chapter 4: the headline table
REGIME_ORDER = ["text_only", "text_only_matched", "noise_text", "image_text", "noise_image_text"]


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


def regime_by_n_rows(records: list[dict], encoder: str = "project_cnn") -> list[dict]:
    """Mean accuracy per (regime, N) over seeds, main encoder only (text prompts)."""
    acc: dict = {}
    for r in records:
        if r.get("grounding") is False or (r.get("encoder") not in (None, encoder)):
            continue
        for n, a in r["accuracy_by_n"].items():
            acc.setdefault((r["regime"], int(n)), []).append(a)
    return [{"regime": k[0], "N": k[1], "accuracy": sum(v) / len(v), "seeds": len(v)} for k, v in sorted(acc.items())]


def regime_by_n_chart(records: list[dict], task_cfg: TaskConfig, encoder: str = "project_cnn") -> alt.Chart:
    lines = line_chart(regime_by_n_rows(records, encoder), "N", "accuracy", "regime",
                       "Accuracy by number of objects (mean over seeds, text prompts)", y_format="%")
    boundary = alt.Chart(alt.Data(values=[{"N": task_cfg.id_range[1] + 0.5}])).mark_rule(strokeDash=[4, 4]).encode(x="N:Q")
    return lines + boundary


def encoder_rows(rows: list[dict]) -> list[dict]:
    labels = {"ood_accuracy": "text OOD", "image_id_accuracy": "image ID", "color_from_region": "colour from region",
              "shape_from_region": "shape from region", "region_from_color": "region from colour"}
    return [{"encoder": r["encoder"], "metric": label, "accuracy": r[key]} for r in rows for key, label in labels.items()]


def encoder_chart(rows: list[dict], title: str = "image_text by frozen encoder") -> alt.Chart:
    return (alt.Chart(alt.Data(values=encoder_rows(rows)), title=title)
            .mark_bar()
            .encode(x=alt.X("encoder:N", title=None), y=alt.Y("accuracy:Q", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
                    color="encoder:N", column=alt.Column("metric:N", title=None),
                    tooltip=["encoder:N", "metric:N", alt.Tooltip("accuracy:Q", format=".3f")])
            .properties(width=90, height=200))


# ---------------------------------------------------------------- chapters 5-7: interchange, knockouts, probes
INTERP_REGIMES = ["text_only", "noise_text", "image_text", "noise_image_text"]
HYPOTHESES = ["positional", "symbolic", "reflexive", "none", "other"]


def _mean(values):
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


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
