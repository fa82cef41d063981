"""Attention knockouts: the read-out token may not attend to a target set of positions, at chosen layers
(and heads), written into ``blocks[l].attn.hook_scores`` through nnsight."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..core.task import BOS, CTX_END, QUE, Batch, make_generator
from .pairs import _rows, n_layers_of, readout_logits, traced


def _onehot_positions(pos: torch.Tensor, length: int) -> torch.Tensor:
    """[B, K] positions (-1 = none) -> [B, L] bool mask."""
    hit = pos[..., None] == torch.arange(length, device=pos.device)
    return hit.any(1) if hit.dim() == 3 else hit


def random_like(batch: Batch, mask: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Per row, as many random context positions (before the read-out token) as ``mask`` holds."""
    L = batch.tokens.shape[1]
    context = torch.arange(L, device=mask.device)[None, :] < batch.query_pos[:, None]
    keys = torch.rand(mask.shape, generator=g, device=mask.device).masked_fill(~context, 2.0)
    rank = keys.argsort(-1).argsort(-1)
    return rank < mask.sum(-1, keepdim=True)


def target_sets(batch: Batch, seed: int = 0, controls: bool = True) -> dict[str, torch.Tensor]:
    """Knockout target sets, each a [B, L] bool mask of key positions.

    answer_shape: the queried shape in the associations; answer_item: the answer item;
    query_declaration: the queried object's colour and shape tokens in the context;
    structural: BOS, CTX_END and QUE; other_objects: every token of every other object.
    With ``controls``, random_<name>: random context positions, as many per row as <name> (seeded).
    """
    L = batch.tokens.shape[1]
    r, q = _rows(batch.tokens), batch.query_slot
    before_readout = torch.arange(L, device=r.device)[None, :] < batch.query_pos[:, None]
    other = (torch.arange(batch.colors.shape[1], device=r.device)[None, :] != q[:, None]) & (batch.colors >= 0)
    other_pos = torch.cat([p.masked_fill(~other, -1) for p in
                           (batch.color_pos, batch.shape_pos, batch.assoc_shape_pos, batch.assoc_item_pos)], 1)
    sets = {
        "answer_shape": _onehot_positions(batch.assoc_shape_pos[r, q][:, None], L),
        "answer_item": _onehot_positions(batch.assoc_item_pos[r, q][:, None], L),
        "query_declaration": _onehot_positions(torch.stack([batch.color_pos[r, q], batch.shape_pos[r, q]], 1), L),
        "structural": before_readout & ((batch.tokens == BOS) | (batch.tokens == CTX_END) | (batch.tokens == QUE)),
        "other_objects": _onehot_positions(other_pos, L),
    }
    if controls:
        g = make_generator(seed, r.device)
        sets.update({f"random_{name}": random_like(batch, mask, g) for name, mask in list(sets.items())})
    return sets


@torch.no_grad()
def knockout(model, batch: Batch, targets: torch.Tensor, layers, *, heads=None, inputs: dict | None = None) -> torch.Tensor:
    """Read-out logits [B, V] with the last token's attention to ``targets`` ([B, L] bool) knocked out.

    At ``blocks[l].attn.hook_scores`` of every given layer, the pre-softmax scores from the read-out
    token to the target keys become the dtype's minimum (not -inf, which gives NaNs). ``heads``
    restricts the knockout to those heads (default: all). ``inputs`` replaces ``batch.model_inputs()``,
    e.g. image prompts' inputs with their patch embeddings (``ImagePrompts.model_inputs``).
    """
    L = batch.tokens.shape[1]
    is_readout = torch.arange(L, device=targets.device)[None, :] == batch.query_pos[:, None]
    blocked = (is_readout[:, :, None] & targets[:, None, :])[:, None]  # [B, 1, Q, K]
    nm = traced(model)
    with nm.trace(**(inputs if inputs is not None else batch.model_inputs())):
        for layer in sorted(set(layers)):
            scores = nm.blocks[layer].attn.hook_scores.output
            mask = blocked
            if heads is not None:
                on = torch.zeros(scores.shape[1], dtype=torch.bool, device=targets.device)
                on[list(heads)] = True
                mask = blocked & on[None, :, None, None]
            nm.blocks[layer].attn.hook_scores.output = scores.masked_fill(mask, torch.finfo(scores.dtype).min)
        logits = nm.output.save()
    return logits[_rows(batch.query_pos), batch.query_pos]


def knockout_layers(layer: int, n_layers: int, mode: str = "window", k: int = 1) -> list[int]:
    """window: the k layers l - k//2 .. l - k//2 + k - 1 (clipped); cumulative: every layer >= l."""
    if mode == "window":
        return [x for x in range(layer - k // 2, layer - k // 2 + k) if 0 <= x < n_layers]
    if mode == "cumulative":
        return list(range(layer, n_layers))
    raise ValueError(f"unknown mode {mode!r}: allowed 'window' and 'cumulative'.")


def answer_probability(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return logits.float().softmax(-1).gather(-1, target[:, None]).squeeze(-1)


def relative_change(p_new: torch.Tensor, p_base: torch.Tensor) -> float:
    """100 (mean p_new - mean p_base) / mean p_base: the change of the answer's mean probability.

    A ratio of means, not a mean of per-prompt ratios, which a prompt with a tiny clean
    probability can blow up; it is bounded below by -100%.
    """
    base = p_base.mean().item()
    return 100.0 * (p_new.mean().item() - base) / base if base > 0 else float("nan")


@torch.no_grad()
def knockout_sweep(model, batch: Batch, sets: dict | None = None, *, mode: str = "window", k: int = 1,
                   seed: int = 0, inputs: dict | None = None) -> dict:
    """Accuracy and the relative change of the answer's mean probability (``relative_change``) for
    every layer and target set. ``inputs`` as in :func:`knockout`."""
    sets = target_sets(batch, seed) if sets is None else sets
    inputs = inputs if inputs is not None else batch.model_inputs()
    n_layers = n_layers_of(model)
    clean = readout_logits(model, inputs, batch.query_pos)
    p_base = answer_probability(clean, batch.target)
    out = {}
    for name, mask in sets.items():
        acc, rel = [], []
        for layer in range(n_layers):
            logits = knockout(model, batch, mask, knockout_layers(layer, n_layers, mode, k), inputs=inputs)
            acc.append((logits.argmax(-1) == batch.target).float().mean().item())
            rel.append(relative_change(answer_probability(logits, batch.target), p_base))
        out[name] = {"accuracy": acc, "relative_change": rel, "mean_size": mask.sum(-1).float().mean().item()}
    return {"mode": mode, "k": k, "layers": list(range(n_layers)), "n_prompts": len(batch),
            "base_accuracy": (clean.argmax(-1) == batch.target).float().mean().item(), "sets": out}


@torch.no_grad()
def head_knockout_sweep(model, batch: Batch, sets: dict, *, inputs: dict | None = None) -> dict:
    """Per (layer, head): accuracy and relative change with only that head's read-out attention to
    each set knocked out. Returns {set: {"accuracy": [[layer][head]], "relative_change": ...}}."""
    inputs = inputs if inputs is not None else batch.model_inputs()
    p_base = answer_probability(readout_logits(model, inputs, batch.query_pos), batch.target)
    heads = [heads_of(block.attn) for block in model.blocks]
    out = {}
    for name, mask in sets.items():
        acc, rel = [[0.0] * h for h in heads], [[0.0] * h for h in heads]
        for layer, n_heads in enumerate(heads):
            for head in range(n_heads):
                logits = knockout(model, batch, mask, [layer], heads=[head], inputs=inputs)
                acc[layer][head] = (logits.argmax(-1) == batch.target).float().mean().item()
                rel[layer][head] = relative_change(answer_probability(logits, batch.target), p_base)
        out[name] = {"accuracy": acc, "relative_change": rel}
    return {"n_heads": heads, "base_accuracy": (readout_logits(model, inputs, batch.query_pos).argmax(-1)
                                                == batch.target).float().mean().item(), "sets": out}


def heads_of(attn: nn.Module) -> int:
    """How many heads an attention module has (trained model: n_heads; hand-wired toy: its list)."""
    return attn.n_heads if hasattr(attn, "n_heads") else len(attn.heads)


def image_target_sets(prompts, seed: int = 0) -> dict[str, torch.Tensor]:
    """Knockout target sets of image prompts ([B, L] bool each).

    query_patches: the patches the queried object overlaps; other_patches: those of every other
    object (minus the queried object's); background_patches: patches no object touches;
    answer_item: the answer item in the (text) associations. Each has a ``random_<name>`` control:
    as many random patches of the same picture (for answer_item: random context positions).
    """
    b = prompts.batch
    B, L = b.tokens.shape
    T = prompts.features.shape[1]
    dev = b.tokens.device
    image = torch.zeros(B, L, dtype=torch.bool, device=dev)
    image[:, prompts.start:prompts.start + T] = True
    query = prompts.patch_positions(b.query_slot)
    any_obj = torch.zeros(B, L, dtype=torch.bool, device=dev)
    for k in range(b.colors.shape[1]):
        any_obj |= prompts.patch_positions(torch.full_like(b.query_slot, k).masked_fill(b.colors[:, k] < 0, -1))
    sets = {"query_patches": query, "other_patches": any_obj & ~query, "background_patches": image & ~any_obj,
            "answer_item": target_sets(b, controls=False)["answer_item"]}
    g = make_generator(seed, dev)
    out = dict(sets)
    for name, mask in sets.items():
        if name == "answer_item":
            out["random_answer_item"] = random_like(b, mask, g)
        else:  # random patches of the same picture, as many as the set holds
            keys = torch.rand(mask.shape, generator=g, device=dev).masked_fill(~image, 2.0)
            out[f"random_{name}"] = keys.argsort(-1).argsort(-1) < mask.sum(-1, keepdim=True)
    return out
