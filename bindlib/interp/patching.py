"""Interchange interventions (patch the read-out token's residual from a counterfactual source, per layer)
and the position-id swap, through nnsight on the model's named hook points."""
from __future__ import annotations

import math
import time

import torch

from ..core import io
from ..core.task import PAD, Batch
from .pairs import Pairs, _rows, argmax_item, item_logits, n_layers_of, readout_logits, requery, traced


# ============================================================== 2. interchange interventions
@torch.no_grad()
def patched_logits(model, pairs: Pairs, layer: int, positions: str = "last") -> torch.Tensor:
    """Base read-out logits [M, V] after overwriting ``blocks[layer].hook_resid_pre`` of the base with the source's.

    One stacked [base; source] forward.  positions: "last" patches only the read-out token (the
    interchange intervention); "all" patches every position (a control: it must reproduce the source).
    """
    both, m = pairs.stacked(), len(pairs)
    rows, last_b, last_s = _rows(pairs.base.tokens), pairs.base.query_pos, pairs.source.query_pos
    nm = traced(model)
    with nm.trace(**both.model_inputs()):
        resid = nm.blocks[layer].hook_resid_pre.output
        if positions == "last":
            resid[rows, last_b] = resid[rows + m, last_s]
        elif positions == "all":
            resid[:m] = resid[m:]
        else:
            raise ValueError(f"unknown positions {positions!r}: allowed 'last' and 'all'.")
        logits = nm.output.save()
    return logits[rows, last_b]


def pack_last_token_copies(pairs: Pairs, n_copies: int) -> tuple[dict, torch.Tensor]:
    """Model inputs for [base; source] where each base row ends in ``n_copies`` copies of its read-out token.

    Every copy sits right after the base's body, takes the read-out token's position id and may
    attend only to the body and to itself (``attn_mask``), so each copy computes exactly what the
    lone read-out token computes.  Patching copy j at one layer then gives that layer's interchange
    result, and the body, computed once, is shared by every layer: an all-layer sweep costs about one
    forward pass of the stacked batch.  Returns (inputs, copy positions [M, n_copies]).
    """
    base, source = pairs.base, pairs.source
    m, L = base.tokens.shape
    Lp = L + n_copies - 1
    dev = base.tokens.device
    idx = torch.arange(Lp, device=dev)[None, :]
    last = base.query_pos[:, None]
    rows = torch.arange(m, device=dev)

    def extend(x, fill):
        return torch.cat([x, x.new_full((m, n_copies - 1), fill)], 1)

    body = idx < last
    is_copy = (idx >= last) & (idx < last + n_copies)
    query_token = base.tokens[rows, base.query_pos][:, None]
    base_tokens = torch.where(body, extend(base.tokens, PAD), torch.where(is_copy, query_token, PAD))
    base_pid = torch.where(is_copy, base.position_ids[rows, base.query_pos][:, None], extend(base.position_ids, 0))
    base_attn = body[:, None, :] | torch.eye(Lp, dtype=torch.bool, device=dev)[None]
    src_pid = torch.cat([source.position_ids, source.position_ids[:, -1:] + torch.arange(1, n_copies, device=dev)], 1)
    inputs = {
        "tokens": torch.cat([base_tokens, extend(source.tokens, PAD)]),
        "position_ids": torch.cat([base_pid, src_pid]),
        "key_mask": torch.cat([body | is_copy, extend(source.key_mask, False)]),
        "attn_mask": torch.cat([base_attn, torch.ones(m, Lp, Lp, dtype=torch.bool, device=dev)]),
    }
    return inputs, last + torch.arange(n_copies, device=dev)


@torch.no_grad()
def _sweep_packed(model, pairs: Pairs, layers: list[int], chunk: int):
    """All layers in one forward per chunk (see ``pack_last_token_copies``); copy 0 stays clean."""
    patched, clean = [], []
    nm = traced(model)
    for start in range(0, len(pairs), chunk):
        p = pairs.select(range(start, min(start + chunk, len(pairs))))
        m = len(p)
        inputs, copies = pack_last_token_copies(p, len(layers) + 1)
        rows = _rows(copies)
        with nm.trace(**inputs):
            for j, layer in enumerate(layers):  # hook points are visited in execution order
                resid = nm.blocks[layer].hook_resid_pre.output
                resid[rows, copies[:, j + 1]] = resid[rows + m, p.source.query_pos]
            logits = nm.output.save()
        clean.append(logits[rows, copies[:, 0]])
        patched.append(logits[rows[:, None], copies[:, 1:]])
    return torch.cat(patched), torch.cat(clean)


@torch.no_grad()
def _sweep_stacked(model, pairs: Pairs, layers: list[int], chunk: int):
    """One stacked [base; source] forward per layer and chunk; chunk=1 is the per-pair reference loop."""
    patched, clean = [], []
    for start in range(0, len(pairs), chunk):
        p = pairs.select(range(start, min(start + chunk, len(pairs))))
        patched.append(torch.stack([patched_logits(model, p, layer) for layer in layers], 1))
        clean.append(readout_logits(model, p.base.model_inputs(), p.base.query_pos))
    return torch.cat(patched), torch.cat(clean)


@torch.no_grad()
def rebind(model, pairs, layers=None, chunk: int = 256) -> dict:
    """Patch the last token's residual entering each layer from a rebind source (``pairs.RebindPairs``); per
    layer, the share of argmax outputs (over the base's in-context items) equal to each target, and other."""
    layers = sorted(set(range(n_layers_of(model)) if layers is None else layers))
    t0 = time.perf_counter()
    patched, _ = _sweep_packed(model, pairs, layers, chunk)
    per_layer = []
    for j, layer in enumerate(layers):
        pred = argmax_item(patched[:, j], pairs.base.items)
        row = {"layer": layer, **{k: (pred == t).float().mean().item() for k, t in pairs.targets().items()}}
        per_layer.append({**row, "other": max(0.0, 1.0 - row["stay"] - row["shape"] - row["reflexive"])})
    return {"layers": layers, "n_pairs": len(pairs), "per_layer": per_layer, "patched_logits": patched,
            "wall_seconds": time.perf_counter() - t0}


def binding_score(p_sym: float, p_pos: float) -> float:
    """BS = (P_sym - P_pos) / (P_sym + P_pos): +1 purely symbolic, -1 purely positional, nan if neither."""
    total = p_sym + p_pos
    return (p_sym - p_pos) / total if total > 0 else float("nan")


def iia_metrics(patched: torch.Tensor, clean: torch.Tensor, pairs: Pairs) -> dict:
    """Shares of the patched argmax (over the base's in-context items) that equal each target, BS,
    and the logit-difference companion.

    none = the base's own answer (no effect); other = anything else.
    logit_diff = mean(l(sym) - l(pos)) / mean(clean gap), where the clean gap of a pair is the clean
    base logit of its answer minus the mean clean logit of its other in-context items: +1 means the
    patched run prefers SYM over POS as strongly as a clean run prefers its answer, -1 the reverse.
    """
    items = pairs.base.items
    pred = argmax_item(patched, items)
    share = {name: (pred == t).float().mean().item() for name, t in
             (("positional", pairs.positional), ("symbolic", pairs.symbolic), ("reflexive", pairs.reflexive),
              ("none", pairs.base_answer))}
    share["other"] = max(0.0, 1.0 - sum(share.values()))
    diff = patched.gather(-1, pairs.symbolic[:, None]) - patched.gather(-1, pairs.positional[:, None])
    clean_items = item_logits(clean, items)
    is_answer = items == pairs.base_answer[:, None]
    others = clean_items.masked_fill(is_answer | (items < 0), 0.0).sum(-1) / ((items >= 0) & ~is_answer).sum(-1)
    gap = clean.gather(-1, pairs.base_answer[:, None]).squeeze(-1) - others
    share["binding_score"] = binding_score(share["symbolic"], share["positional"])
    share["logit_diff"] = (diff.mean() / gap.mean()).item()
    return share


def routing_summary(per_layer: list[dict], layers: list[int], tol: float = 0.05) -> dict:
    """The routing layer maximises P_sym + P_pos; report BS and Sym/Pos there.

    Ties (within ``tol``) go to the DEEPEST such layer: before the query colour has been read,
    patching the last token merely swaps the query, which scores P_sym = 1 at every early layer;
    the deepest layer still routing is where the pointer lives just before it is dereferenced.
    """
    total = [d["positional"] + d["symbolic"] for d in per_layer]
    j = max(i for i, t in enumerate(total) if t >= max(total) - tol)
    sym, pos = per_layer[j]["symbolic"], per_layer[j]["positional"]
    ratio = sym / pos if pos > 0 else (float("inf") if sym > 0 else float("nan"))
    return {"routing_layer": layers[j], "routing_share": total[j], "binding_score": per_layer[j]["binding_score"],
            "sym_pos_ratio": ratio, "tie_tolerance": tol}


def interchange(model, pairs: Pairs, layers=None, *, method: str = "packed", chunk: int = 256) -> dict:
    """Patch the last token's residual entering each layer from the source; IIA per hypothesis and layer.

    method: "packed" (all layers in one forward per chunk), "stacked" (one [base; source] forward
    per layer and chunk) or "loop" (per pair and layer, the slow reference).  All three agree.
    Returns per-layer metrics (``iia_metrics``), the routing summary, and the raw patched and clean
    read-out logits ([M, n_layers, V] and [M, V]).
    """
    layers = sorted(set(range(n_layers_of(model)) if layers is None else layers))
    t0 = time.perf_counter()
    if method == "packed":
        patched, clean = _sweep_packed(model, pairs, layers, chunk)
    elif method in ("stacked", "loop"):
        patched, clean = _sweep_stacked(model, pairs, layers, chunk if method == "stacked" else 1)
    else:
        raise ValueError(f"unknown method {method!r}: allowed 'packed', 'stacked', 'loop'.")
    wall = time.perf_counter() - t0
    per_layer = [dict(layer=layer, **iia_metrics(patched[:, j], clean, pairs)) for j, layer in enumerate(layers)]
    return {"method": method, "layers": layers, "n_pairs": len(pairs), "per_layer": per_layer,
            "summary": routing_summary(per_layer, layers), "patched_logits": patched, "clean_logits": clean,
            "wall_seconds": wall}


def _json_number(x, digits: int = 4):
    """Round, and map nan/inf (not valid JSON) to None."""
    x = float(x)
    return round(x, digits) if math.isfinite(x) else None


def interchange_record(result: dict, *, regime: str, seed: int, profile: str, command: str | None = None,
                       device="cpu", **extra) -> dict:
    """The results-file dict of an ``interchange`` result (write it with ``io.write_results``)."""
    per_layer = result["per_layer"]
    return {
        "kind": "interchange", "regime": regime, "seed": seed, "profile": profile,
        "method": result["method"], "n_pairs": result["n_pairs"], "layers": result["layers"],
        "iia": [{k: _json_number(d[k]) for k in ("positional", "symbolic", "reflexive")} for d in per_layer],
        "per_layer": [{k: (v if k == "layer" else _json_number(v)) for k, v in d.items()} for d in per_layer],
        "summary": {k: (v if k == "routing_layer" else _json_number(v)) for k, v in result["summary"].items()},
        **extra,
        "provenance": io.provenance(command, device, result["wall_seconds"]),
    }


def time_sweep(model, pairs: Pairs, loop_pairs: int = 32, chunk: int = 256, packed: dict | None = None,
               stacked: bool = True) -> dict:
    """Wall time of an all-layer sweep: packed (``packed``: a result already run over every pair) and, with
    ``stacked``, stacked over every pair; the per-pair loop over the first ``loop_pairs`` (extrapolated
    linearly); also the largest logit difference between them (they must agree)."""
    packed = packed or interchange(model, pairs, method="packed", chunk=chunk)
    k = min(loop_pairs, len(pairs))
    loop = interchange(model, pairs.select(torch.arange(k)), method="loop")
    diff = (packed["patched_logits"][:k] - loop["patched_logits"]).abs().max().item()
    out = {"n_pairs": len(pairs), "n_layers": len(packed["layers"]), "threads": torch.get_num_threads(),
           "packed_seconds": packed["wall_seconds"]}
    if stacked:
        res = interchange(model, pairs, method="stacked", chunk=chunk)
        out["stacked_seconds"] = res["wall_seconds"]
        diff = max(diff, (packed["patched_logits"] - res["patched_logits"]).abs().max().item())
    per_pair = loop["wall_seconds"] / k
    return {**out, "loop_pairs": k, "loop_seconds": loop["wall_seconds"],
            "loop_seconds_extrapolated": per_pair * len(pairs),
            "speedup_packed_vs_loop": per_pair * len(pairs) / packed["wall_seconds"], "max_abs_logit_diff": diff}


# ============================================================== 3. position-id swap
@torch.no_grad()
def position_swap(model, batch: Batch, i: int, j: int, only_correct: bool = True, moved=None) -> dict:
    """Swap only the position ids of objects i and j's declaration tokens (colour and shape), keep content.

    Every prompt is re-asked about object i (rows with N <= max(i, j) are dropped), so POS predicts
    the answer flips to i_j (object i now sits at slot j's positions) and SYM predicts it stays i_i.
    Shares are of the argmax over in-context items; with ``only_correct`` only rows the model
    answers correctly unswapped count. ``moved`` (a Batch -> Batch function, e.g. a gap after the
    context) is applied to the re-asked prompts before anything is measured.
    """
    if i == j:
        raise ValueError("i and j must differ")
    b = requery(batch.select((batch.n_objects > max(i, j)).nonzero().squeeze(1)), i)
    if moved is not None:
        b = moved(b)
    r = _rows(b.tokens)
    pid = b.position_ids.clone()
    for a, c in ((i, j), (j, i)):
        for pos in (b.color_pos, b.shape_pos):
            pid[r, pos[:, a]] = b.position_ids[r, pos[:, c]]
    clean = argmax_item(readout_logits(model, b.model_inputs(), b.query_pos), b.items)
    swapped = argmax_item(readout_logits(model, {**b.model_inputs(), "position_ids": pid}, b.query_pos), b.items)
    keep = clean == b.target if only_correct else torch.ones_like(clean, dtype=torch.bool)
    n = int(keep.sum())
    share = (lambda hit: (hit & keep).float().sum().item() / n) if n else (lambda hit: float("nan"))
    flip, stay = share(swapped == b.items[:, j]), share(swapped == b.items[:, i])
    return {"i": i, "j": j, "n": n, "clean_accuracy": (clean == b.target).float().mean().item(),
            "flip_rate": flip, "stay_rate": stay, "other_rate": 1.0 - flip - stay if n else float("nan")}
