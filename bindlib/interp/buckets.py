"""Binding where the models fail: interchange, rebind pairs and the position-id swap, by bucket.

The interpretability chapters measure binding at in-distribution lengths, where every model answers. The
failures live elsewhere (``bindlib.core.ood_axes``): at larger counts and at longer query-context distances.
Here the same three instruments run inside each bucket of both axes, on the prompts a model still answers:

- count buckets: N in 9..16, 17..24, 25..32 (as far as the vocabulary allows);
- gap buckets: N in 4..8 with the association lines and query moved G positions away (``"gap"``: position
  ids only, so base and source keep one length and every pair stays a clean counterfactual).

Each bucket reports, at its routing layer, P_sym, P_pos and BS (``patching.routing_summary``), the rebind
share that follows the bound shape, and the share of answers a position-id swap flips.
"""
from __future__ import annotations

import dataclasses
import time

import torch

from ..core.ood_axes import move_after_context
from ..core.task import sample_batch
from . import patching as X
from .pairs import correct_on_both, make_pairs, make_rebind_pairs, n_layers_of
from .runs import SWAPS, _clean

COUNT_BUCKETS = ((9, 16), (17, 24), (25, 32))
GAP_BUCKETS = (0, 48, 96)
GAP_N = (4, 8)
MIN_PAIRS = 40  # fewer correct pairs than this: the bucket is reported as not measurable


@dataclasses.dataclass
class BucketSizes:
    pairs: int = 300  # interchange pairs per bucket (answered correctly on both prompts)
    rebind_pairs: int = 300
    swap_prompts: int = 384
    max_draw_factor: int = 8  # stop drawing after this many times ``pairs`` candidates
    seed: int = 0


def _moved(pairs, gap: int):
    if gap == 0:
        return pairs
    return dataclasses.replace(pairs, base=move_after_context(pairs.base, gap, "gap"),
                               source=move_after_context(pairs.source, gap, "gap"))


def _correct(model, task, make, want: int, n_range, gap: int, seed: int, draw_factor: int):
    """Up to ``want`` pairs (of ``make``: make_pairs or make_rebind_pairs) at ``n_range`` moved by ``gap`` that
    the model answers on both prompts; returns (pairs or None, drawn)."""
    kept, total, drawn, rnd = [], 0, 0, 0
    while total < want and drawn < draw_factor * want:
        pool = _moved(make(task, 2 * want, seed=seed + 1000 * rnd, n=n_range), gap)
        drawn, rnd = drawn + len(pool), rnd + 1
        ok = correct_on_both(model, pool).nonzero().squeeze(1)[: want - total]
        if len(ok):
            kept.append(pool.select(ok))
            total += len(ok)
    if total == 0:
        return None, drawn
    first = kept[0]
    return type(first)(*(_cat([getattr(p, f.name) for p in kept]) for f in dataclasses.fields(first))), drawn


def _cat(parts):
    from ..core.task import concat_batches

    return concat_batches(*parts) if hasattr(parts[0], "tokens") else torch.cat(parts)


def _swap(model, task, n_range, gap: int, prompts: int, seed: int) -> dict:
    batch = sample_batch(task, prompts, seed, n=n_range)
    swaps = [X.position_swap(model, batch, i, j, moved=lambda b: move_after_context(b, gap, "gap")) for i, j in SWAPS]
    n = sum(s["n"] for s in swaps)
    return {"n": n, "flip_rate": sum(s["flip_rate"] * s["n"] for s in swaps if s["n"]) / n if n else None}


@torch.no_grad()
def bucket(model, task, n_range, gap: int = 0, sizes: BucketSizes | None = None) -> dict:
    """The three instruments in one bucket (see the module doc)."""
    sizes = sizes or BucketSizes()
    lo, hi = max(4, n_range[0]), n_range[1]
    out = {"n_range": [lo, hi], "gap": gap}
    pairs, drawn = _correct(model, task, make_pairs, sizes.pairs, (lo, hi), gap, sizes.seed, sizes.max_draw_factor)
    out.update(pairs_drawn=drawn, n_pairs=0 if pairs is None else len(pairs))
    if pairs is None or len(pairs) < MIN_PAIRS:
        out["error"] = f"only {out['n_pairs']} of {drawn} pairs answered on both prompts (fewer than {MIN_PAIRS})"
        return out
    res = X.interchange(model, pairs)
    out["summary"] = res["summary"]
    out["per_layer"] = [{k: d[k] for k in ("layer", "positional", "symbolic", "reflexive", "binding_score")}
                        for d in res["per_layer"]]
    if task.format == "standard":
        reb, rdrawn = _correct(model, task, make_rebind_pairs, sizes.rebind_pairs, (max(3, lo), hi), gap, sizes.seed + 5,
                               sizes.max_draw_factor)
        if reb is not None and len(reb) >= MIN_PAIRS:
            r = X.rebind(model, reb, layers=[res["summary"]["routing_layer"]])["per_layer"][0]
            out["rebind"] = {"n_pairs": len(reb), "pairs_drawn": rdrawn, **{k: r[k] for k in ("stay", "shape", "reflexive")}}
    out["position_swap"] = _swap(model, task, (lo, hi), gap, sizes.swap_prompts, sizes.seed + 2)
    return out


def measure(model, task, sizes: BucketSizes | None = None) -> dict:
    """Every count bucket the vocabulary allows (at gap 0) and every gap bucket (at N 4..8)."""
    t0 = time.perf_counter()
    top = task.vocab.max_objects
    count = {f"{lo}-{hi}": bucket(model, task, (lo, hi), 0, sizes) for lo, hi in COUNT_BUCKETS if hi <= top}
    gaps = {str(g): bucket(model, task, GAP_N, g, sizes) for g in GAP_BUCKETS}
    return _clean({"layers": list(range(n_layers_of(model))), "format": task.format, "count": count, "gap": gaps,
                   "sizes": dataclasses.asdict(sizes or BucketSizes()), "wall_seconds": time.perf_counter() - t0})
