"""Evaluation: accuracy per N, the ID and OOD means, per query slot, and the separate OOD axes."""
from __future__ import annotations

import math

import torch

from .model import answer_logits
from .profiles import DEFAULT_POS_ENCODING
from .task import TaskConfig, sample_batch

# Axes that separate shortcuts (SPEC §2): association order, and an absolute offset.
AXES = {
    "shuffled": dict(association_order="shuffled", offset=0),
    "declared": dict(association_order="declared", offset=0),
    "reversed": dict(association_order="reversed", offset=0),
    "offset_8": dict(association_order="shuffled", offset=8),
}
# The position-shift axis: every position id moved up by k (the tokens unchanged), at ID lengths.
# A relative encoding (RoPE) is blind to it by construction; learned absolute positions are not.
SHIFTS = (0, 8, 32, 64)


@torch.no_grad()
def predictions(model, task: TaskConfig, n: int, size: int, seed: int, device="cpu", chunk: int = 512,
                shift: int = 0, **kw):
    """Sample ``size`` prompts with exactly n objects; return (batch, predicted token ids).

    shift: add this to every position id (the position-shift axis)."""
    batch = sample_batch(task, size, seed, n=n, device=device, **kw)
    if shift:
        batch.position_ids = batch.position_ids + shift
    preds = torch.cat([answer_logits(model, batch.select(torch.arange(i, min(i + chunk, size)))).argmax(-1)
                       for i in range(0, size, chunk)])
    return batch, preds


@torch.no_grad()
def evaluate(model, task: TaskConfig, per_n: int = 256, seed: int = 1234, device="cpu",
             association_order: str = "shuffled", offset: int = 0, shift: int = 0, ns=None) -> dict:
    """Accuracy for every N in the ID and OOD ranges, their means, and ID accuracy per query slot."""
    was_training = model.training
    model.eval()
    by_n, slot_hits, slot_counts = {}, {}, {}
    if ns is None:
        ns = list(range(task.id_range[0], task.id_range[1] + 1)) + list(range(task.ood_range[0], task.ood_range[1] + 1))
    for n in ns:
        batch, preds = predictions(model, task, n, per_n, seed + n, device, association_order=association_order,
                                   offset=offset, shift=shift)
        hit = (preds == batch.target).float()
        by_n[n] = hit.mean().item()
        if n <= task.id_range[1]:
            for s, h in zip(batch.query_slot.tolist(), hit.tolist()):
                slot_hits[s] = slot_hits.get(s, 0.0) + h
                slot_counts[s] = slot_counts.get(s, 0) + 1
    model.train(was_training)
    id_ns = [n for n in ns if task.id_range[0] <= n <= task.id_range[1]]
    ood_ns = [n for n in ns if task.ood_range[0] <= n <= task.ood_range[1]]
    return {
        "id_accuracy": sum(by_n[n] for n in id_ns) / len(id_ns) if id_ns else float("nan"),
        "ood_accuracy": sum(by_n[n] for n in ood_ns) / len(ood_ns) if ood_ns else float("nan"),
        "accuracy_by_n": {str(n): round(a, 4) for n, a in by_n.items()},
        "accuracy_by_slot": {str(s): round(slot_hits[s] / slot_counts[s], 4) for s in sorted(slot_hits)},
        "per_n": per_n,
        "eval_seed": seed,
    }


def evaluate_axes(model, task: TaskConfig, per_n: int = 128, seed: int = 4321, device="cpu") -> dict:
    """ID and OOD accuracy on each shortcut-separating axis."""
    out = {}
    for name, kw in AXES.items():
        if task.format == "ordered" and kw["association_order"] == "reversed":
            continue  # the ordered format has no association order to change
        r = evaluate(model, task, per_n=per_n, seed=seed, device=device, **kw)
        out[name] = {"id_accuracy": round(r["id_accuracy"], 4), "ood_accuracy": round(r["ood_accuracy"], 4),
                     "accuracy_by_n": r["accuracy_by_n"]}
    return out


def mean_sd(values) -> tuple[float, float]:
    """Mean and sample standard deviation of the finite values (None and nan are skipped; nan if none is left)."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return float("nan"), float("nan")
    m = sum(vals) / len(vals)
    sd = (sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5 if len(vals) > 1 else 0.0
    return m, sd


def steps_to_reach(history: list[dict], accuracy: float = 0.99, key: str = "acc_two_hop") -> int | None:
    """The first evaluated step at which ``key`` reached ``accuracy`` (None if never)."""
    return next((h["step"] for h in history if h[key] >= accuracy), None)


def max_shift(model, task: TaskConfig) -> int | None:
    """The largest position shift the model can take at ID lengths (None: no limit, e.g. RoPE)."""
    cfg = getattr(model, "cfg", None)
    if cfg is None or getattr(cfg, "pos_encoding", DEFAULT_POS_ENCODING) != "learned":
        return None
    from .task import prompt_length

    return cfg.max_len - prompt_length(task.id_range[1], 0, task.format)


def evaluate_shift(model, task: TaskConfig, shifts=SHIFTS, per_n: int = 128, seed: int = 4321, device="cpu") -> dict:
    """ID accuracy with every position id moved up by k, for each k in ``shifts`` (those the model's
    position table can hold; larger ones are recorded as skipped)."""
    limit = max_shift(model, task)
    ns = list(range(task.id_range[0], task.id_range[1] + 1))
    out = {"shifts": {}, "max_shift": limit, "per_n": per_n, "eval_seed": seed}
    for k in shifts:
        if limit is not None and k > limit:
            out["shifts"][str(k)] = {"skipped": f"position ids would exceed the learned table (max shift {limit})"}
            continue
        r = evaluate(model, task, per_n=per_n, seed=seed, device=device, shift=k, ns=ns)
        out["shifts"][str(k)] = {"id_accuracy": round(r["id_accuracy"], 4), "accuracy_by_n": r["accuracy_by_n"]}
    return out
