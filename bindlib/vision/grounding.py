"""Feature grounding, the image stage's auxiliary task (its form in the paper is unknown, so this is our
choice). It works in both directions through the language model's own residual stream:

- *region -> words*: the final residual averaged over an object's patches, read through the
  unembedding, must name the object's colour and its shape (half the probability mass on each);
- *word -> region*: a colour or shape word's embedding, mapped by a trainable query matrix, scores
  every patch's final residual; a softmax over patches must put its mass on that object's patches.
"""
from __future__ import annotations

import torch

from .multimodal import ImageAdapter, ImagePrompts


def _image_residuals(prompts: ImagePrompts, final_resid: torch.Tensor) -> tuple:
    """From the final residual [B, L, D]: the image tokens' residuals h [B, T, D], each object's mean over its
    patches [B, Nmax, D], and which image slots are real patches [B, 1, T] (False on objects_only padding)."""
    T = prompts.features.shape[1]
    h = final_resid[:, prompts.start:prompts.start + T].float()
    cover = prompts.object_patches.float()  # [B, Nmax, T]
    region = (cover @ h) / cover.sum(-1, keepdim=True).clamp(min=1)
    return h, region, prompts.batch.key_mask[:, None, prompts.start:prompts.start + T]


def grounding_loss(model, adapter: ImageAdapter, prompts: ImagePrompts, final_resid: torch.Tensor) -> dict:
    """Both grounding directions from the final (post-LayerNorm) residual ``final_resid`` [B, L, D]."""
    b = prompts.batch
    h, region, real = _image_residuals(prompts, final_resid)
    valid = b.colors >= 0  # [B, Nmax]
    logp = model.unembed(region).float().log_softmax(-1)  # [B, Nmax, V]
    colors, shapes = b.colors.clamp(min=0), b.shapes.clamp(min=0)
    words = -(logp.gather(-1, colors[..., None]) + logp.gather(-1, shapes[..., None])).squeeze(-1) / 2
    to_words = words[valid].mean()
    to_region = 0.0
    for ids in (colors, shapes):
        q = adapter.ground_query(model.embed.tok(ids)).float()  # [B, Nmax, D]
        scores = (q @ h.transpose(1, 2) / h.shape[-1] ** 0.5).masked_fill(~real, float("-inf"))  # [B, Nmax, T]
        hit = torch.logsumexp(scores.masked_fill(~prompts.object_patches, float("-inf")), -1)
        to_region = to_region + (torch.logsumexp(scores, -1) - hit)[valid].mean() / 2
    return {"to_words": to_words, "to_region": to_region}


@torch.no_grad()
def grounding_accuracy(model, adapter: ImageAdapter, prompts: ImagePrompts) -> dict:
    """How often the grounding readouts are right: word from region (colour, shape), region from word."""
    captured = {}
    handle = model.hook_resid_final.register_forward_hook(lambda m, i, o: captured.update(x=o))
    try:
        model(**prompts.model_inputs(adapter))
    finally:
        handle.remove()
    b = prompts.batch
    h, region, real = _image_residuals(prompts, captured["x"])
    valid = b.colors >= 0
    logits = model.unembed(region).float()
    voc = b.vocab
    col = logits[..., voc.color_offset:voc.color_offset + voc.n_colors].argmax(-1) + voc.color_offset
    shp = logits[..., voc.shape_offset:voc.shape_offset + voc.n_shapes].argmax(-1) + voc.shape_offset
    q = adapter.ground_query(model.embed.tok(b.colors.clamp(min=0))).float()
    best = (q @ h.transpose(1, 2)).masked_fill(~real, float("-inf")).argmax(-1)  # [B, Nmax]
    picked = prompts.object_patches.gather(-1, best[..., None]).squeeze(-1)
    return {"color_from_region": (col == b.colors)[valid].float().mean().item(),
            "shape_from_region": (shp == b.shapes)[valid].float().mean().item(),
            "region_from_color": picked[valid].float().mean().item()}
