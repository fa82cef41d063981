"""Pictures as images (Pillow), not charts: shapes, scenes, patch grids and object boxes.

Every function returns a :class:`Picture`.  A notebook shows it as a PNG (``image/png``), so a
saved chapter displays it in any viewer, online or off, with no JavaScript.  Pictures are kept at
most ``MAX_WIDTH`` pixels wide, the width of the book's text column, so they never overflow it.

    from bindlib.book.pictures import image_grid, scene, text_panel, side_by_side
    image_grid(images, labels, columns=8)                  # a gallery with a label under each image
    scene(image, boxes, labels, patch=16, shade={3: "object 1"})   # one scene with its patch grid
    side_by_side(text_panel(lines, colors), scene(image))  # the context as text next to its picture
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageColor, ImageDraw, ImageFont

MAX_WIDTH = 760          # px: the book's text column (sphinx-book-theme, a 1400 px window)
BACKGROUND = (255, 255, 255)
INK = (34, 34, 34)


class Picture:
    """An RGB image that Jupyter displays as a PNG; ``.image`` is the Pillow image."""

    def __init__(self, image: Image.Image, max_width: int | None = MAX_WIDTH):
        image = image.convert("RGB")
        if max_width and image.width > max_width:
            image = image.resize((max_width, round(image.height * max_width / image.width)), Image.LANCZOS)
        self.image = image

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size

    def png(self) -> bytes:
        out = io.BytesIO()
        self.image.save(out, format="PNG", optimize=True)
        return out.getvalue()

    def _repr_png_(self) -> bytes:
        return self.png()

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        if path.suffix.lower() != ".png":
            raise ValueError(f"Picture.save writes PNG files; got {path.name!r} (use a .png name).")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".png.tmp")
        tmp.write_bytes(self.png())
        tmp.replace(path)
        return path

    def __repr__(self) -> str:
        return f"<Picture {self.size[0]}x{self.size[1]}>"


def to_pil(image, scale: int = 1) -> Image.Image:
    """An RGB image ([3, H, W] or [H, W, 3]; floats in 0..1 or uint8; numpy or torch) as a Pillow
    image, upscaled ``scale`` times by pixel repetition (crisp pixels, no blur)."""
    arr = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image)
    if arr.ndim != 3 or 3 not in (arr.shape[0], arr.shape[-1]):
        raise ValueError(f"expected one RGB image [3, H, W] or [H, W, 3], got shape {arr.shape}.")
    if arr.shape[0] == 3 and arr.shape[-1] != 3:
        arr = arr.transpose(1, 2, 0)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if scale > 1:
        arr = arr.repeat(scale, axis=0).repeat(scale, axis=1)
    return Image.fromarray(np.ascontiguousarray(arr), "RGB")


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def _rgb(color) -> tuple[int, int, int]:
    return ImageColor.getrgb(color)[:3] if isinstance(color, str) else tuple(int(c) for c in color[:3])


def _with_title(image: Image.Image, title: str, size: int = 14) -> Image.Image:
    if not title:
        return image
    font = _font(size)
    probe = ImageDraw.Draw(image)
    w, h = _text_size(probe, title, font)
    out = Image.new("RGB", (max(image.width, w + 8), image.height + h + 10), BACKGROUND)
    ImageDraw.Draw(out).text((4, 3), title, fill=INK, font=font)
    out.paste(image, (0, h + 10))
    return out


def image_grid(images, labels=None, columns: int = 8, scale: int = 2, title: str = "",
               label_size: int = 11, gap: int = 6) -> Picture:
    """Images in a grid, ``columns`` per row, each with its label underneath."""
    images = [to_pil(im, scale) for im in images]
    if not images:
        raise ValueError("image_grid needs at least one image.")
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"got {len(images)} images but {len(labels)} labels.")
    font = _font(label_size)
    cell_w = max(im.width for im in images)
    label_h = label_size + 4 if labels is not None else 0
    if labels is not None:
        probe = ImageDraw.Draw(images[0])
        cell_w = max(cell_w, *(_text_size(probe, str(lab), font)[0] for lab in labels))
    cell_h = max(im.height for im in images) + label_h
    columns = max(1, min(columns, len(images)))
    n_rows = -(-len(images) // columns)
    sheet = Image.new("RGB", (columns * (cell_w + gap) + gap, n_rows * (cell_h + gap) + gap), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for k, im in enumerate(images):
        x0 = gap + (k % columns) * (cell_w + gap)
        y0 = gap + (k // columns) * (cell_h + gap)
        sheet.paste(im, (x0 + (cell_w - im.width) // 2, y0))
        if labels is not None:
            text = str(labels[k])
            w, _ = _text_size(draw, text, font)
            draw.text((x0 + (cell_w - w) // 2, y0 + im.height + 2), text, fill=INK, font=font)
    return Picture(_with_title(sheet, title))


def scene(image, boxes=None, labels=None, patch: int | None = None, scale: int = 3, title: str = "",
          patch_numbers: bool = False, shade: dict[int, str] | None = None, box_color="#111111") -> Picture:
    """One rendered scene, optionally with its patch grid (``patch`` px), patch numbers, tinted
    patches (``shade``: patch index -> what it holds) and object boxes (x0, y0, x1, y1) with labels."""
    base = to_pil(image, scale)
    canvas = base.width // scale
    overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    if patch:
        if canvas % patch:
            raise ValueError(f"the canvas ({canvas} px) is not a whole number of {patch} px patches.")
        side = canvas // patch
        for p in (shade or {}):
            if not 0 <= int(p) < side * side:
                raise ValueError(f"shade names patch {p}, but the grid has patches 0..{side * side - 1}.")
            r, c = divmod(int(p), side)
            draw.rectangle([c * patch * scale, r * patch * scale, (c + 1) * patch * scale - 1,
                            (r + 1) * patch * scale - 1], fill=(255, 212, 0, 100))
        for k in range(1, side):
            draw.line([(k * patch * scale, 0), (k * patch * scale, base.height)], fill=(255, 255, 255, 200))
            draw.line([(0, k * patch * scale), (base.width, k * patch * scale)], fill=(255, 255, 255, 200))
        if patch_numbers:
            font = _font(max(8, min(12, patch * scale // 4)))
            for p in range(side * side):
                r, c = divmod(p, side)
                draw.text((c * patch * scale + 2, r * patch * scale + 1), str(p), fill=(255, 255, 255, 230), font=font)
    if boxes is not None and len(boxes):
        boxes = np.asarray(boxes).reshape(-1, 4)
        labels = labels if labels is not None else [f"object {k + 1}" for k in range(len(boxes))]
        if len(labels) != len(boxes):
            raise ValueError(f"got {len(boxes)} boxes but {len(labels)} labels.")
        color = _rgb(box_color) + (255,)
        font = _font(12)
        for (x0, y0, x1, y1), lab in zip(boxes.tolist(), labels):
            draw.rectangle([x0 * scale, y0 * scale, x1 * scale - 1, y1 * scale - 1], outline=color, width=2)
            w, h = _text_size(draw, str(lab), font)
            ty = y0 * scale - h - 4 if y0 * scale >= h + 4 else y1 * scale + 1
            draw.rectangle([x0 * scale, ty, x0 * scale + w + 4, ty + h + 3], fill=(255, 255, 255, 200))
            draw.text((x0 * scale + 2, ty), str(lab), fill=color, font=font)
    composed = Image.alpha_composite(base.convert("RGBA"), overlay).convert("RGB")
    return Picture(_with_title(composed, title))


def text_panel(lines: list[str], colors=None, title: str = "", size: int = 13, width: int | None = None) -> Picture:
    """Lines of text as a picture (to sit beside a scene); ``colors``: one colour per line."""
    if colors is not None and len(colors) != len(lines):
        raise ValueError(f"got {len(lines)} lines but {len(colors)} colours.")
    font = _font(size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_h = size + 5
    w = width or max([_text_size(probe, line, font)[0] for line in lines] + [10]) + 12
    panel = Image.new("RGB", (w, line_h * max(1, len(lines)) + 8), BACKGROUND)
    draw = ImageDraw.Draw(panel)
    for k, line in enumerate(lines):
        fill = _rgb(colors[k]) if colors is not None else INK
        if colors is not None and sum(fill) > 600:  # a near-white colour: draw a dark swatch behind it
            draw.rectangle([2, 4 + k * line_h, w - 2, 4 + (k + 1) * line_h - 1], fill=(90, 90, 90))
        draw.text((6, 4 + k * line_h), line, fill=fill, font=font)
    return Picture(_with_title(panel, title))


def side_by_side(*pictures: Picture, gap: int = 16, title: str = "") -> Picture:
    """Pictures in one row, top-aligned (scaled down as a whole if wider than the column)."""
    if not pictures:
        raise ValueError("side_by_side needs at least one picture.")
    images = [p.image if isinstance(p, Picture) else to_pil(p) for p in pictures]
    row = Image.new("RGB", (sum(im.width for im in images) + gap * (len(images) - 1), max(im.height for im in images)),
                    BACKGROUND)
    x = 0
    for im in images:
        row.paste(im, (x, 0))
        x += im.width + gap
    return Picture(_with_title(row, title))
