"""Pictures as altair charts (chapter 3): images go in as PNG data URLs (Pillow) inside image marks, so a
scene, its patch grid and its object boxes share one chart, with tooltips."""
from __future__ import annotations

import base64
import io as _pyio

import altair as alt
import numpy as np

from .pictures import to_pil
from .plots import WIDTH, _bare, _field


def png_bytes(image, scale: int = 1) -> bytes:
    """An RGB image ([3, H, W] or [H, W, 3]; floats in 0..1 or uint8) as PNG bytes, upscaled
    ``scale`` times by pixel repetition (crisp pixels rather than browser blur)."""
    buf = _pyio.BytesIO()
    to_pil(image, scale).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def png_data_url(image, scale: int = 1) -> str:
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
