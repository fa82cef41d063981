"""Figures a reader needs: the two hops on one prompt, deep supervision, grounding (Pillow pictures),
and the attention patterns of a trained model on one prompt (an altair chart).

The pictures are plain ``PIL.Image`` objects: a notebook shows them as PNG, so they need no script
to render and look the same online and offline.
"""
from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

INK, MUTED, HOP1, HOP2, LOSS = "#222222", "#888888", "#d95f02", "#1b9e77", "#7570b3"


def _font(size: int = 13):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one fixed bitmap size
        return ImageFont.load_default()


def _box(draw, xy, text, fill="white", outline=INK, font=None, ink=INK, width=1):
    draw.rectangle(xy, fill=fill, outline=outline, width=width)
    x0, y0, x1, y1 = xy
    draw.text(((x0 + x1) / 2, (y0 + y1) / 2), text, fill=ink, font=font or _font(), anchor="mm")


def _arrow(draw, points, color, width=2, head=7):
    draw.line(points, fill=color, width=width, joint="curve")
    (xa, ya), (xb, yb) = points[-2], points[-1]
    import math

    angle = math.atan2(yb - ya, xb - xa)
    left = (xb - head * math.cos(angle - 0.45), yb - head * math.sin(angle - 0.45))
    right = (xb - head * math.cos(angle + 0.45), yb - head * math.sin(angle + 0.45))
    draw.polygon([(xb, yb), left, right], fill=color)


def _luminance(hex_color: str) -> float:
    r, g, b = (int(hex_color[k: k + 2], 16) for k in (1, 3, 5))
    return 0.299 * r + 0.587 * g + 0.114 * b


def two_hop_figure(batch, i: int = 0, cell: int = 58) -> Image.Image:
    """The tokens of prompt ``i`` in a row, with hop 1 (query colour -> its declaration -> the shape beside it)
    drawn above and hop 2 (that shape -> its association line -> the item) below."""
    names = batch.vocab.names()
    last = int(batch.query_pos[i])
    tokens = [names[int(t)] for t in batch.tokens[i, : last + 1]]
    slot = int(batch.query_slot[i])
    color_at, shape_at = int(batch.color_pos[i, slot]), int(batch.shape_pos[i, slot])
    assoc_at, item_at = int(batch.assoc_shape_pos[i, slot]), int(batch.assoc_item_pos[i, slot])
    answer = names[int(batch.target[i])]
    width, top = cell * (len(tokens) + 2) + 20, 70
    img = Image.new("RGB", (width, 230), "white")
    draw = ImageDraw.Draw(img)
    font, small = _font(11), _font(13)

    def x(p):
        return 10 + p * cell

    for p, name in enumerate(tokens):
        fill = name if name.startswith("#") else "white"
        ink = "white" if name.startswith("#") and _luminance(name) < 110 else INK
        outline = HOP1 if p in (color_at, shape_at, last) else HOP2 if p in (assoc_at, item_at) else MUTED
        _box(draw, (x(p), top, x(p) + cell - 6, top + 36), name, fill=fill, outline=outline, font=font, ink=ink,
             width=3 if outline != MUTED else 1)
        draw.text((x(p) + cell / 2 - 3, top + 44), str(p), fill=MUTED, font=font, anchor="mt")
    _box(draw, (x(last + 1) + 10, top, x(last + 1) + cell + 30, top + 36), answer, outline=HOP2, width=3, font=font)
    mid = lambda p: x(p) + cell / 2 - 3  # noqa: E731
    # hop 1, above: from the query token back to the colour's declaration, then one step right to its shape
    _arrow(draw, [(mid(last), top - 2), (mid(last), top - 40), (mid(color_at), top - 40), (mid(color_at), top - 4)], HOP1)
    _arrow(draw, [(mid(color_at) + 8, top - 14), (mid(shape_at), top - 14), (mid(shape_at), top - 4)], HOP1)
    draw.text((mid(color_at) + 6, top - 58), "hop 1: the queried colour's shape", fill=HOP1, font=small)
    # hop 2, below: from the shape to the same shape in the associations, then to the item after it
    yb = top + 62
    _arrow(draw, [(mid(shape_at), top + 38), (mid(shape_at), yb), (mid(assoc_at), yb), (mid(assoc_at), top + 40)], HOP2)
    _arrow(draw, [(mid(assoc_at), top + 54), (mid(item_at), top + 54), (mid(item_at), top + 40)], HOP2)
    _arrow(draw, [(mid(item_at), yb + 14), (x(last + 1) + cell / 2 + 20, yb + 14), (x(last + 1) + cell / 2 + 20, top + 40)],
           HOP2)
    draw.text((mid(shape_at) + 6, yb + 22), "hop 2: that shape's item, the answer", fill=HOP2, font=small)
    draw.text((10, 8), f"{names[int(batch.colors[i, slot])]} -> {tokens[shape_at]} -> {answer}", fill=INK, font=small)
    return img


def deep_supervision_figure(n_layers: int = 4, hop_layer: int = 1) -> Image.Image:
    """The model's blocks at the read-out token, with the two losses of the compose stage: the answer item at the
    top, and the intermediate shape read from the residual leaving block ``hop_layer`` through the final
    LayerNorm and unembedding."""
    h = 80 + 52 * n_layers + 110
    img = Image.new("RGB", (620, h), "white")
    draw = ImageDraw.Draw(img)
    font = _font(13)
    y = h - 60
    _box(draw, (40, y, 240, y + 34), "embed (… QUE colour)", font=font)
    centres = {}
    for layer in range(n_layers):
        y -= 52
        _arrow(draw, [(140, y + 52), (140, y + 36)], MUTED)
        _box(draw, (40, y, 240, y + 34), f"block {layer}", font=font,
             outline=LOSS if layer == hop_layer else INK, width=3 if layer == hop_layer else 1)
        centres[layer] = y + 17
    y -= 52
    _arrow(draw, [(140, y + 52), (140, y + 36)], MUTED)
    _box(draw, (40, y, 240, y + 34), "final LayerNorm + unembed", font=font)
    _box(draw, (300, y, 600, y + 34), "loss: the answer item", outline=HOP2, width=3, font=font)
    _arrow(draw, [(240, y + 17), (298, y + 17)], HOP2)
    ys = centres[hop_layer]
    _box(draw, (300, ys - 30, 600, ys - 2), "same LayerNorm + unembed", font=font, outline=LOSS)
    _box(draw, (300, ys + 6, 600, ys + 36), "loss: the intermediate shape", outline=LOSS, width=3, font=font)
    _arrow(draw, [(240, ys), (270, ys), (270, ys - 16), (298, ys - 16)], LOSS)
    _arrow(draw, [(450, ys - 2), (450, ys + 4)], LOSS)
    draw.text((40, 8), f"deep supervision: blocks[{hop_layer}].hook_resid_post at the read-out token", fill=INK, font=font)
    draw.text((40, 26), "must already name the queried colour's shape", fill=INK, font=font)
    draw.text((40, 44), f"(that tensor is blocks[{hop_layer + 1}].hook_resid_pre)", fill=MUTED, font=font)
    return img


def grounding_figure() -> Image.Image:
    """Image prompts and the two grounding read-outs: region -> words and word -> region."""
    img = Image.new("RGB", (770, 280), "white")
    draw = ImageDraw.Draw(img)
    font = _font(13)
    # a 4 x 4 patch grid with one object on four patches
    x0, y0, s = 30, 60, 32
    for r in range(4):
        for c in range(4):
            on = r in (1, 2) and c in (1, 2)
            draw.rectangle((x0 + c * s, y0 + r * s, x0 + (c + 1) * s, y0 + (r + 1) * s), outline=MUTED,
                           fill="#e7298a" if on else "white")
    draw.text((x0, y0 - 22), "picture, cut into patches", fill=INK, font=font)
    _arrow(draw, [(x0 + 4 * s + 8, y0 + 2 * s), (200, y0 + 2 * s)], MUTED)
    _box(draw, (204, y0 + 2 * s - 20, 330, y0 + 2 * s + 20), "frozen encoder", font=font)
    _arrow(draw, [(330, y0 + 2 * s), (360, y0 + 2 * s)], MUTED)
    _box(draw, (364, y0 + 2 * s - 20, 470, y0 + 2 * s + 20), "adapter", font=font)
    _arrow(draw, [(470, y0 + 2 * s), (500, y0 + 2 * s)], MUTED)
    _box(draw, (504, y0 + 2 * s - 20, 740, y0 + 2 * s + 20), "language model (patch tokens)", font=font)
    yb = 200
    draw.rectangle((20, yb, 375, yb + 62), outline=HOP1, width=2)
    draw.rectangle((395, yb, 750, yb + 62), outline=HOP2, width=2)
    for k, line in enumerate(("region -> words: the mean of an object's patches,",
                              "read through the unembedding, must name",
                              "the object's colour and shape")):
        draw.text((30, yb + 6 + 17 * k), line, fill=HOP1, font=font)
    for k, line in enumerate(("word -> region: a colour or shape embedding",
                              "scores every patch; the softmax must put",
                              "its mass on that object's patches")):
        draw.text((405, yb + 6 + 17 * k), line, fill=HOP2, font=font)
    _arrow(draw, [(620, y0 + 2 * s + 22), (620, yb - 2)], HOP2)
    _arrow(draw, [(520, y0 + 2 * s + 22), (215, yb - 2)], HOP1)
    draw.text((30, 10), "feature grounding (both directions read the language model's final residual)", fill=INK, font=font)
    return img


def attention_rows(model, batch, i: int = 0) -> list[dict]:
    """The read-out token's attention over the prompt, every layer and head: rows {layer, head, position,
    token, weight} from ``blocks[l].attn.hook_pattern``."""
    import torch

    from ..interp.pairs import traced

    last = int(batch.query_pos[i])
    one = batch.select(torch.tensor([i]))
    nm = traced(model)
    saved = []
    with nm.trace(**one.model_inputs()):
        for block in nm.blocks:
            saved.append(block.attn.hook_pattern.output[0, :, last, : last + 1].detach().save())
    names = batch.vocab.names()
    tokens = [names[int(t)] for t in batch.tokens[i, : last + 1]]
    return [{"layer": layer, "head": head, "position": p, "token": f"{p}: {tokens[p]}", "weight": float(w)}
            for layer, pattern in enumerate(saved) for head, row in enumerate(pattern) for p, w in enumerate(row)]


def attention_chart(model, batch, i: int = 0, title: str | None = None):
    """Layer x head grid of the read-out token's attention on one prompt (altair heatmap)."""
    import altair as alt

    rows = attention_rows(model, batch, i)
    for r in rows:
        r["layer, head"] = f"L{r['layer']} H{r['head']}"
    order = [r["token"] for r in rows if r["layer"] == 0 and r["head"] == 0]
    return alt.Chart(alt.Data(values=rows)).mark_rect().encode(
        x=alt.X("token:N", sort=order, title="key token (position: token)"),
        y=alt.Y("layer, head:N", sort=None, title="layer, head"),
        color=alt.Color("weight:Q", scale=alt.Scale(scheme="greys", domain=[0, 1]), title="attention"),
        tooltip=["layer:Q", "head:Q", "token:N", alt.Tooltip("weight:Q", format=".2f")],
    ).properties(width=alt.Step(26), height=alt.Step(16),
                 title=title or "Attention of the read-out token, every layer and head")
