"""How does a model bind? Interchange interventions, the position-id swap, attention knockouts
and linear probes, following the measurement spec (notes/measurement-spec.md, SPEC §4).

Every activation is read or written with nnsight 0.8.1 through the model's named hook points
(``blocks[l].hook_resid_pre``, ``blocks[l].attn.hook_scores``, ...), never through its weights,
so the same code runs on the trained Transformer and on the hand-wired ``ToyBindingModel`` at
the end of this file, whose mechanism is known by construction and validates the measurements.

Notation (base prompt b, declaration order k = 0..N-1): object k is (c_k, s_k, i_k), colour,
shape and the item bound to that shape.  The query of b asks colour c_{q_b}; its answer is i_{q_b}.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import io
from .task import (BOS, CTX_END, FILL, PAD, QUE, Batch, TaskConfig, Vocab, check_n_range, line_width, prompt_length,
                   sample_batch)

RESIDUAL_HOOKS = ("hook_resid_pre", "hook_attn_out", "hook_resid_mid", "hook_mlp_out", "hook_resid_post")


def traced(model: nn.Module):
    """The nnsight wrapper of ``model`` (cheap to build; nnsight is imported only when first needed)."""
    from nnsight import NNsight

    return NNsight(model)


def n_layers_of(model) -> int:
    return len(model.blocks)


def _rows(x: torch.Tensor) -> torch.Tensor:
    return torch.arange(x.shape[0], device=x.device)


@torch.no_grad()
def readout_logits(model, inputs: dict, readout_pos: torch.Tensor) -> torch.Tensor:
    """Logits [B, V] at each row's read-out position of a plain forward pass."""
    logits = model(**inputs)
    return logits[_rows(readout_pos), readout_pos]


def item_logits(logits: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Logits [B, Nmax] of each row's in-context items (object-indexed, -inf on padding)."""
    out = logits.gather(-1, items.clamp(min=0))
    return out.masked_fill(items < 0, float("-inf"))


def argmax_item(logits: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """The in-context item with the highest logit, as a token id [B]."""
    return items.gather(-1, item_logits(logits, items).argmax(-1, keepdim=True)).squeeze(-1)


# ============================================================== prompts built from object fields
def build_prompts(vocab: Vocab, colors, shapes, items, line_of, query_slot, n_objects, offset: int = 0,
                  meta: dict | None = None) -> Batch:
    """Assemble two-hop prompts in exactly the format of ``task.sample_batch`` (``meta["format"]``,
    default 'standard'; in the 'ordered' format line_of must be the identity).

    colors/shapes/items: [B, Nmax] token ids in declaration order (anything beyond a row's N is ignored);
    line_of[b, k]: the association line of object k; query_slot: the queried object.
    """
    fmt = (meta or {}).get("format", "standard")
    w = line_width(fmt)
    B, nmax = colors.shape
    dev = colors.device
    slot = torch.arange(nmax, device=dev).expand(B, nmax)
    valid = slot < n_objects[:, None]
    if w == 1 and bool(((line_of != slot) & valid).any()):
        raise ValueError("the 'ordered' format lists items in declaration order: line_of must be the identity.")
    ctx0 = 1 + offset
    color_pos = ctx0 + 2 * slot
    shape_pos = color_pos + 1
    assoc_item_pos = ctx0 + 2 * n_objects[:, None] + 1 + w * line_of + (w - 1)
    assoc_shape_pos = assoc_item_pos - 1 if w == 2 else torch.full_like(assoc_item_pos, -1)
    query_pos = ctx0 + (2 + w) * n_objects + 2
    L = prompt_length(nmax, offset, fmt)

    tokens = torch.full((B, L), PAD, dtype=torch.long, device=dev)
    tokens[:, 0] = BOS
    tokens[:, 1:ctx0] = FILL
    rows = torch.arange(B, device=dev)[:, None].expand(B, nmax)
    writes = ((color_pos, colors), (shape_pos, shapes), (assoc_item_pos, items)) + (((assoc_shape_pos, shapes),) if w == 2 else ())
    for pos, val in writes:
        tokens[rows[valid], pos[valid]] = val[valid]
    r = torch.arange(B, device=dev)
    tokens[r, ctx0 + 2 * n_objects] = CTX_END
    tokens[r, query_pos - 1] = QUE
    tokens[r, query_pos] = colors[r, query_slot]

    def pad(x):
        return x.masked_fill(~valid, -1)

    return Batch(
        tokens=tokens, position_ids=torch.arange(L, device=dev).expand(B, L).clone(),
        key_mask=torch.arange(L, device=dev)[None, :] <= query_pos[:, None], query_pos=query_pos,
        target=items[r, query_slot], n_objects=n_objects.clone(), query_slot=query_slot.clone(),
        query_kind=["two_hop"] * B, colors=pad(colors), shapes=pad(shapes), items=pad(items),
        color_pos=pad(color_pos), shape_pos=pad(shape_pos),
        assoc_shape_pos=pad(assoc_shape_pos), assoc_item_pos=pad(assoc_item_pos),
        vocab=vocab, meta=dict(meta or {}, offset=offset),
    )


def association_lines(batch: Batch) -> torch.Tensor:
    """line_of[b, k]: the association line of object k (0 on padding)."""
    w = line_width(batch.meta.get("format", "standard"))
    assoc0 = batch.color_pos[:, :1] + 2 * batch.n_objects[:, None] + 1  # color_pos[:, 0] = 1 + offset
    return ((batch.assoc_item_pos - assoc0 - (w - 1)) // w).masked_fill(batch.colors < 0, 0)


def requery(batch: Batch, slot) -> Batch:
    """The same prompts asking about object ``slot`` (an int or a [B] tensor) instead."""
    slot = torch.as_tensor(slot, device=batch.tokens.device).expand(len(batch)).clone()
    return build_prompts(batch.vocab, batch.colors, batch.shapes, batch.items, association_lines(batch), slot,
                         batch.n_objects, batch.meta.get("offset", 0), batch.meta)


def concat_batches(*batches: Batch) -> Batch:
    """Rows of several batches of the same prompt length, in order."""
    first = batches[0]
    out = {}
    for k, v in first.__dict__.items():
        if torch.is_tensor(v):
            out[k] = torch.cat([getattr(b, k) for b in batches])
        elif k == "query_kind":
            out[k] = [x for b in batches for x in b.query_kind]
        else:
            out[k] = v
    return Batch(**out)


# ============================================================== 1. counterfactual pairs
@dataclass
class Pairs:
    """Base/source pairs for interchange interventions, with the item each hypothesis predicts.

    All targets are token ids [M] of items of the base context:
      positional  i_{q_s}:      the base's item at the source's query *slot* q_s (POS: the last token carries an index);
      symbolic    i_{o}:        the base's item bound to the source's queried colour/shape, o = source_objects[q_s]
                                (SYM: the last token carries the bound shape/colour);
      reflexive   i_{x}:        the source's answer.  The source trades the items of o and a third object x,
                                so REF (the last token carries the answer item itself) predicts a 4th item;
      base_answer i_{q_b}:      the intervention had no effect.
    """

    base: Batch
    source: Batch
    positional: torch.Tensor
    symbolic: torch.Tensor
    reflexive: torch.Tensor
    base_answer: torch.Tensor
    source_objects: torch.Tensor  # [M, Nmax] base index of the object in each source slot (identity on padding)
    traded_object: torch.Tensor  # [M] x: the object whose item the source's queried object took

    def __len__(self) -> int:
        return len(self.base)

    def select(self, idx) -> "Pairs":
        idx = torch.as_tensor(idx, device=self.base.tokens.device)
        return Pairs(self.base.select(idx), self.source.select(idx),
                     *(getattr(self, k)[idx] for k in ("positional", "symbolic", "reflexive", "base_answer",
                                                       "source_objects", "traded_object")))

    def stacked(self) -> Batch:
        """One batch [base rows; source rows]: row m + M is the source of row m."""
        return concat_batches(self.base, self.source)

    def targets(self) -> dict:
        return {"positional": self.positional, "symbolic": self.symbolic, "reflexive": self.reflexive,
                "base_answer": self.base_answer}


def _random_derangements(n_objects: torch.Tensor, nmax: int, g: torch.Generator) -> torch.Tensor:
    """perm[b, j] != j for every j < N_b (identity beyond N); rejection-sampled row by row."""
    B, dev = len(n_objects), n_objects.device
    slot = torch.arange(nmax, device=dev).expand(B, nmax)
    valid = slot < n_objects[:, None]
    perm = slot.clone()
    todo = torch.ones(B, dtype=torch.bool, device=dev)
    while todo.any():  # about 1/e of uniform permutations are derangements
        idx = todo.nonzero().squeeze(1)
        keys = torch.rand(len(idx), nmax, generator=g, device=dev).masked_fill(~valid[idx], 2.0)
        cand = keys.argsort(dim=-1, stable=True)  # padding keeps its order, hence identity
        ok = ((cand != slot[idx]) | ~valid[idx]).all(-1)
        perm[idx[ok]] = cand[ok]
        todo[idx[ok]] = False
    return perm


def _random_choice(allowed: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """One allowed index per row, uniformly."""
    if not allowed.any(-1).all():
        raise ValueError("a row has no allowed choice")
    keys = torch.rand(allowed.shape, generator=g, device=allowed.device).masked_fill(~allowed, -1.0)
    return keys.argmax(-1)


def pairs_from_base(base: Batch, g: torch.Generator) -> Pairs:
    """Build the source of each base prompt (see ``make_pairs`` for the design)."""
    B, nmax = base.colors.shape
    r = _rows(base.colors)
    slot = torch.arange(nmax, device=r.device).expand(B, nmax)
    valid = slot < base.n_objects[:, None]
    src_obj = _random_derangements(base.n_objects, nmax, g)
    q_b = base.query_slot[:, None]
    # source query slot q_s: neither it nor the object it shows (o) may be the base's queried object
    q_s = _random_choice(valid & (slot != q_b) & (src_obj != q_b), g)
    o = src_obj[r, q_s]
    x = _random_choice(valid & (slot != q_b) & (slot != q_s[:, None]) & (slot != o[:, None]), g)

    if base.meta.get("format", "standard") == "ordered":
        # Items belong to slots (line k = object k).  The source keeps the base's item list but trades the
        # items on lines q_s and x, so its answer is i_x (REF); POS (the base's item at the source's slot
        # q_s) and SYM (the base's item of the source's queried colour, i_o) are as in the standard design.
        items_lines = base.items.clone()
        items_lines[r, q_s], items_lines[r, x] = base.items[r, x], base.items[r, q_s]
        source = build_prompts(base.vocab, base.colors.gather(1, src_obj), base.shapes.gather(1, src_obj), items_lines,
                               association_lines(base), q_s, base.n_objects, base.meta.get("offset", 0), base.meta)
        return Pairs(base, source, positional=base.items[r, q_s], symbolic=base.items[r, o],
                     reflexive=base.items[r, x], base_answer=base.target.clone(),
                     source_objects=src_obj, traded_object=x)

    items_src = base.items.clone()  # object-indexed, with the items of o and x traded
    items_src[r, o], items_src[r, x] = base.items[r, x], base.items[r, o]
    source = build_prompts(
        base.vocab, base.colors.gather(1, src_obj), base.shapes.gather(1, src_obj), items_src.gather(1, src_obj),
        association_lines(base),  # source slot j uses base slot j's line: same slot -> line map
        q_s, base.n_objects, base.meta.get("offset", 0), base.meta)
    return Pairs(base, source, positional=base.items[r, q_s], symbolic=base.items[r, o],
                 reflexive=base.items[r, x], base_answer=base.target.clone(),
                 source_objects=src_obj, traded_object=x)


def distinct_targets(pairs: Pairs) -> torch.Tensor:
    """[M] bool: the four predicted items are pairwise distinct."""
    t = torch.stack([pairs.positional, pairs.symbolic, pairs.reflexive, pairs.base_answer], 1)
    return (t[:, :, None] != t[:, None, :]).sum((1, 2)) == 12


@torch.no_grad()
def correct_on_both(model, pairs: Pairs) -> torch.Tensor:
    """[M] bool: the model's argmax (over the whole vocabulary) is right on the base and on the source."""
    both = pairs.stacked()
    pred = readout_logits(model, both.model_inputs(), both.query_pos).argmax(-1)
    hit = pred == both.target
    return hit[: len(pairs)] & hit[len(pairs):]


def make_pairs(task: TaskConfig, n_pairs: int, seed: int = 0, *, n: int | tuple[int, int] | None = None,
               model=None, association_order: str = "shuffled", offset: int = 0, device="cpu",
               max_rounds: int = 50) -> Pairs:
    """Base/source pairs where the POS, SYM and REF hypotheses and "no effect" predict four different items.

    Design (measurement spec §1):
    - the base b is a ``sample_batch`` prompt with N >= 4 objects (default N in max(4, ID lo)..ID hi);
    - the source s holds the same colour-shape objects in a *deranged* declaration order: source slot j
      shows base object ``source_objects[j]`` != j;
    - association lines of s are ordered consistently: source slot j is declared on the line base slot j
      used, so the slot -> line map (and thus its distribution: shuffled, declared, ...) is the same in b and s;
    - s asks slot q_s, showing base object o = source_objects[q_s], with q_s != q_b and o != q_b;
    - s trades the items of o and of a third object x (x not in {q_s, o, q_b}), so s's answer is i_x;
    - targets: positional = i_{q_s}, symbolic = i_o, reflexive = i_x, base_answer = i_{q_b}
      (items as bound in b); pairs with colliding targets are rejected (none arise by construction).
    Base and source have the same N, hence the same length, format and position ids.
    With ``model``, only pairs it answers correctly on both prompts are kept.
    """
    lo, hi = (max(4, task.id_range[0]), task.id_range[1]) if n is None else ((n, n) if isinstance(n, int) else n)
    check_n_range(lo, hi, task.vocab)
    if lo < 4:
        raise ValueError(f"pairs need N >= 4 objects so that four targets are distinct; got N={lo}.")
    g = torch.Generator(device=device).manual_seed(int(seed))
    kept, total = [], 0
    for _ in range(max_rounds):
        want = n_pairs - total
        size = want if model is None else max(2 * want, 64)
        base = sample_batch(task, size, n=(lo, hi), association_order=association_order, offset=offset,
                            device=device, generator=g)
        pairs = pairs_from_base(base, g)
        keep = distinct_targets(pairs)
        if model is not None:
            keep &= correct_on_both(model, pairs)
        pairs = pairs.select(keep.nonzero().squeeze(1)[:want])
        kept.append(pairs)
        total += len(pairs)
        if total >= n_pairs:
            break
    if total < n_pairs:
        raise RuntimeError(f"found only {total} of {n_pairs} pairs the model answers correctly on both prompts "
                           f"after {max_rounds} rounds; is the model trained for N in {lo}..{hi}?")
    return Pairs(concat_batches(*(p.base for p in kept)), concat_batches(*(p.source for p in kept)),
                 *(torch.cat([getattr(p, k) for p in kept]) for k in
                   ("positional", "symbolic", "reflexive", "base_answer", "source_objects", "traded_object")))


# ============================================================== 1b. rebind pairs (colour versus bound shape)
@dataclass
class RebindPairs:
    """Base/source pairs that re-pair colours with shapes and keep everything else of the query.

    The source keeps every colour in its slot and asks the same colour at the same slot, but object k
    now shows shape s_{pi(k)} (pi a derangement), declared on slot k's association line (the slot -> line
    map of the base, as in ``make_pairs``, so a declared-order base gives a declared-order source), with
    the item that shape has in the base, except that the queried shape s_o (o = pi(q_b)) trades its
    item with a third shape s_x.  Targets, as items of the base context:
      stay    i_{q_b}:  the last token carries the query colour or its slot (identical in both prompts),
                        or patching had no effect;
      shape   i_o:      the last token carries the bound *shape* (the base retrieves s_o's item);
      reflexive i_x:    the last token carries the answer item itself (the source's answer).
    The existing pos/sym/ref pairs cannot tell a query swap from routing; these can.
    Only the 'standard' format has shapes on the association lines, so only it has rebind pairs.
    """

    base: Batch
    source: Batch
    stay: torch.Tensor
    shape: torch.Tensor
    reflexive: torch.Tensor
    shape_perm: torch.Tensor  # [M, Nmax] pi: source slot k shows base shape pi(k)
    traded_object: torch.Tensor  # [M] x

    def __len__(self) -> int:
        return len(self.base)

    def select(self, idx) -> "RebindPairs":
        idx = torch.as_tensor(idx, device=self.base.tokens.device)
        return RebindPairs(self.base.select(idx), self.source.select(idx),
                           *(getattr(self, k)[idx] for k in ("stay", "shape", "reflexive", "shape_perm", "traded_object")))

    def stacked(self) -> Batch:
        return concat_batches(self.base, self.source)

    def targets(self) -> dict:
        return {"stay": self.stay, "shape": self.shape, "reflexive": self.reflexive}


def rebind_pairs_from_base(base: Batch, g: torch.Generator) -> RebindPairs:
    """The rebind source of each base prompt (see ``RebindPairs``)."""
    if base.meta.get("format", "standard") != "standard":
        raise ValueError("rebind pairs re-pair colours with shapes, which only the 'standard' format binds to items.")
    B, nmax = base.colors.shape
    r = _rows(base.colors)
    slot = torch.arange(nmax, device=r.device).expand(B, nmax)
    valid = slot < base.n_objects[:, None]
    perm = _random_derangements(base.n_objects, nmax, g)
    q_b = base.query_slot
    o = perm[r, q_b]
    x = _random_choice(valid & (slot != q_b[:, None]) & (slot != o[:, None]), g)
    items_by_shape = base.items.clone()  # base-object-indexed: the item bound to base shape k, o and x traded
    items_by_shape[r, o], items_by_shape[r, x] = base.items[r, x], base.items[r, o]
    source = build_prompts(base.vocab, base.colors, base.shapes.gather(1, perm), items_by_shape.gather(1, perm),
                           association_lines(base), q_b, base.n_objects,
                           base.meta.get("offset", 0), base.meta)
    return RebindPairs(base, source, stay=base.target.clone(), shape=base.items[r, o], reflexive=base.items[r, x],
                       shape_perm=perm, traded_object=x)


def make_rebind_pairs(task: TaskConfig, n_pairs: int, seed: int = 0, *, n: int | tuple[int, int] | None = None,
                      association_order: str = "shuffled", offset: int = 0, device="cpu") -> RebindPairs:
    """``n_pairs`` rebind pairs (N >= 3 objects; default N in max(3, ID lo)..ID hi)."""
    lo, hi = (max(3, task.id_range[0]), task.id_range[1]) if n is None else ((n, n) if isinstance(n, int) else n)
    check_n_range(lo, hi, task.vocab)
    if lo < 3:
        raise ValueError(f"rebind pairs need N >= 3 objects so that three targets are distinct; got N={lo}.")
    g = torch.Generator(device=device).manual_seed(int(seed))
    base = sample_batch(task, n_pairs, n=(lo, hi), association_order=association_order, offset=offset,
                        device=device, generator=g)
    return rebind_pairs_from_base(base, g)


def concat_rebind_pairs(parts: list[RebindPairs]) -> RebindPairs:
    return RebindPairs(concat_batches(*(p.base for p in parts)), concat_batches(*(p.source for p in parts)),
                       *(torch.cat([getattr(p, k) for p in parts]) for k in
                         ("stay", "shape", "reflexive", "shape_perm", "traded_object")))


@torch.no_grad()
def rebind(model, pairs: RebindPairs, layers=None, chunk: int = 256) -> dict:
    """Patch the last token's residual entering each layer from the rebind source; per layer, the share of
    argmax outputs (over the base's in-context items) equal to each target, and other."""
    layers = sorted(set(range(n_layers_of(model)) if layers is None else layers))
    t0 = time.perf_counter()
    patched, _ = _sweep_packed(model, pairs, layers, chunk)
    per_layer = []
    for j, layer in enumerate(layers):
        pred = argmax_item(patched[:, j], pairs.base.items)
        row = {"layer": layer, **{k: (pred == t).float().mean().item() for k, t in pairs.targets().items()}}
        row["other"] = max(0.0, 1.0 - row["stay"] - row["shape"] - row["reflexive"])
        per_layer.append(row)
    return {"layers": layers, "n_pairs": len(pairs), "per_layer": per_layer, "patched_logits": patched,
            "wall_seconds": time.perf_counter() - t0}


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


def time_sweep(model, pairs: Pairs, loop_pairs: int = 32, chunk: int = 256) -> dict:
    """Wall time of an all-layer sweep: packed and stacked over every pair, the per-pair loop over
    the first ``loop_pairs`` (extrapolated linearly); also checks that the three agree."""
    packed = interchange(model, pairs, method="packed", chunk=chunk)
    stacked = interchange(model, pairs, method="stacked", chunk=chunk)
    k = min(loop_pairs, len(pairs))
    loop = interchange(model, pairs.select(torch.arange(k)), method="loop")
    diff = max((packed["patched_logits"] - stacked["patched_logits"]).abs().max().item(),
               (packed["patched_logits"][:k] - loop["patched_logits"]).abs().max().item())
    per_pair = loop["wall_seconds"] / k
    return {"n_pairs": len(pairs), "n_layers": len(packed["layers"]), "threads": torch.get_num_threads(),
            "packed_seconds": packed["wall_seconds"], "stacked_seconds": stacked["wall_seconds"],
            "loop_pairs": k, "loop_seconds": loop["wall_seconds"],
            "loop_seconds_extrapolated": per_pair * len(pairs),
            "speedup_packed_vs_loop": per_pair * len(pairs) / packed["wall_seconds"],
            "max_abs_logit_diff": diff}


# ============================================================== 3. position-id swap
@torch.no_grad()
def position_swap(model, batch: Batch, i: int, j: int, only_correct: bool = True) -> dict:
    """Swap only the position ids of objects i and j's declaration tokens (colour and shape), keep content.

    Every prompt is re-asked about object i (rows with N <= max(i, j) are dropped), so POS predicts
    the answer flips to i_j (object i now sits at slot j's positions) and SYM predicts it stays i_i.
    Shares are of the argmax over in-context items; with ``only_correct`` only rows the model
    answers correctly unswapped count.
    """
    if i == j:
        raise ValueError("i and j must differ")
    b = requery(batch.select((batch.n_objects > max(i, j)).nonzero().squeeze(1)), i)
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


# ============================================================== 4. attention knockouts
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
        g = torch.Generator(device=r.device).manual_seed(int(seed))
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
    g = torch.Generator(device=dev).manual_seed(int(seed))
    out = dict(sets)
    for name, mask in sets.items():
        if name == "answer_item":
            out["random_answer_item"] = random_like(b, mask, g)
        else:  # random patches of the same picture, as many as the set holds
            keys = torch.rand(mask.shape, generator=g, device=dev).masked_fill(~image, 2.0)
            out[f"random_{name}"] = keys.argsort(-1).argsort(-1) < mask.sum(-1, keepdim=True)
    return out


# ============================================================== 5. linear probes
ROLES = ("color", "shape", "assoc_shape", "item", "last")
OBJECT_TARGETS = ("index", "bound_color")  # at colour / shape / association tokens
LAST_TARGETS = ("target_shape", "target_index", "answer")  # at the read-out token


def role_positions(batch: Batch, role: str):
    """(positions [B, K], object index [B, K], valid [B, K]) of the tokens playing ``role``.

    color / shape: the declaration tokens; assoc_shape / item: the association tokens (object k's
    shape and item); last: the read-out token, standing for the queried object.
    """
    if role == "last":
        return batch.query_pos[:, None], batch.query_slot[:, None], torch.ones_like(batch.query_pos[:, None], dtype=torch.bool)
    field = {"color": "color_pos", "shape": "shape_pos", "assoc_shape": "assoc_shape_pos", "item": "assoc_item_pos"}
    if role not in field:
        raise ValueError(f"unknown role {role!r}: allowed {ROLES}.")
    valid = batch.colors >= 0
    obj = torch.arange(valid.shape[1], device=valid.device).expand_as(valid)
    return getattr(batch, field[role]).clamp(min=0), obj, valid


def probe_labels(batch: Batch, role: str, target: str, obj: torch.Tensor, n_random: int, g) -> tuple[torch.Tensor, int]:
    """Labels [B, K] and the number of classes of a probing target.

    index: declaration slot of the object; bound_color: the colour bound to the object (the binding
    signature at shape positions); target_shape / target_index / answer: the queried object's shape,
    slot and item (at the read-out token); random: i.i.d. uniform labels (a sanity control).
    """
    v = batch.vocab
    if target == "random":
        return torch.randint(n_random, obj.shape, generator=g, device=obj.device), n_random
    allowed = LAST_TARGETS if role == "last" else OBJECT_TARGETS
    if target not in allowed:
        raise ValueError(f"target {target!r} is not defined at role {role!r}: allowed {allowed + ('random',)}.")
    if target in ("index", "target_index"):
        return obj, batch.colors.shape[1]
    if target == "bound_color":
        return batch.colors.gather(1, obj) - v.color_offset, v.n_colors
    if target == "target_shape":
        return batch.shapes.gather(1, obj) - v.shape_offset, v.n_shapes
    return batch.items.gather(1, obj) - v.item_offset, v.n_items


def identity_split(batch: Batch, obj: torch.Tensor, test_frac: float = 0.4, seed: int = 0):
    """Train/test masks [B, K] such that no colour-shape and no shape-item combination is shared.

    Each colour-shape and each shape-item combination is drawn into the test side with probability
    ``test_frac`` (seeded); an example goes to test if both combinations of its object are test
    combinations, to train if neither is, and is dropped otherwise.
    """
    v = batch.vocab
    g = torch.Generator().manual_seed(int(seed))
    cs = torch.rand(v.n_colors, v.n_shapes, generator=g) < test_frac
    si = torch.rand(v.n_shapes, v.n_items, generator=g) < test_frac
    c = (batch.colors.gather(1, obj) - v.color_offset).clamp(min=0).cpu()
    s = (batch.shapes.gather(1, obj) - v.shape_offset).clamp(min=0).cpu()
    i = (batch.items.gather(1, obj) - v.item_offset).clamp(min=0).cpu()
    a, b = cs[c, s], si[s, i]
    dev = obj.device
    return (~a & ~b).to(dev), (a & b).to(dev)


@torch.no_grad()
def collect_activations(model, batch: Batch, hook: str, positions: torch.Tensor) -> torch.Tensor:
    """Activations [n_layers, B, K, D] of ``blocks[l].<hook>`` at the given positions [B, K]."""
    if hook not in RESIDUAL_HOOKS:
        raise ValueError(f"unknown residual hook {hook!r}: allowed {RESIDUAL_HOOKS}.")
    rows = _rows(positions)[:, None]
    saved = []
    nm = traced(model)
    with nm.trace(**batch.model_inputs()):
        for layer in range(n_layers_of(model)):
            saved.append(getattr(nm.blocks[layer], hook).output[rows, positions].save())
    return torch.stack(saved)


def fit_logistic(X: torch.Tensor, y: torch.Tensor, n_classes: int, C=1.0, max_iter: int = 100,
                 rows: torch.Tensor | None = None):
    """Multinomial logistic regression with L2, by L-BFGS.

    Minimises mean cross-entropy + |W|^2 / (2 C n), sklearn's C (inverse regularisation strength).
    ``rows`` [P, n] bool (with C a scalar or P values) fits P independent problems, each on its own
    rows, in one optimisation: their losses add up and share no parameter, so the joint minimum is
    each problem's minimum, at the Python cost of a single fit.  Returns W [P, D, K] and b [P, K].
    """
    rows = torch.ones(1, len(y), dtype=torch.bool) if rows is None else rows
    P, (n, d) = rows.shape[0], X.shape
    weight = rows.float() / rows.sum(1, keepdim=True).clamp(min=1)  # [P, n]: each problem's mean
    ridge = 1.0 / (2 * torch.as_tensor(C, dtype=X.dtype).expand(P) * rows.sum(1).clamp(min=1))
    W = torch.zeros(P, d, n_classes, requires_grad=True)
    b = torch.zeros(P, n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")
    target = y.expand(P, n)

    def closure():
        opt.zero_grad()
        logits = torch.einsum("nd,pdk->pkn", X, W) + b[:, :, None]
        nll = F.cross_entropy(logits, target, reduction="none")  # [P, n]
        loss = (weight * nll).sum() + (ridge * (W * W).sum((1, 2))).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return W.detach(), b.detach()


@dataclass
class LinearProbe:
    mean: torch.Tensor
    std: torch.Tensor
    W: torch.Tensor
    b: torch.Tensor
    C: float

    def predict(self, X: torch.Tensor) -> torch.Tensor:
        return (((X.float().cpu() - self.mean) / self.std) @ self.W + self.b).argmax(-1)

    def accuracy(self, X: torch.Tensor, y: torch.Tensor) -> float:
        return (self.predict(X) == y.cpu()).float().mean().item() if len(y) else float("nan")


def fit_probe(X: torch.Tensor, y: torch.Tensor, n_classes: int, Cs=(0.01, 0.1, 1.0, 10.0), folds: int = 3,
              seed: int = 0, max_iter: int = 50) -> LinearProbe:
    """Standardise, choose C by k-fold cross-validated accuracy, refit on all the training data."""
    X, y = X.float().cpu(), y.cpu()
    mean, std = X.mean(0), X.std(0).clamp(min=1e-6)
    Z = (X - mean) / std
    best_C = Cs[0]
    if len(Cs) > 1:
        fold = torch.randperm(len(y), generator=torch.Generator().manual_seed(int(seed))) % folds
        held_out = fold[None, :] == torch.arange(folds)[:, None]  # [folds, n]
        grid = torch.tensor(Cs, dtype=Z.dtype).repeat_interleave(folds)  # problem p: C = grid[p], fold p % folds
        W, b = fit_logistic(Z, y, n_classes, grid, max_iter, rows=~held_out.repeat(len(Cs), 1))
        hit = (torch.einsum("nd,pdk->pnk", Z, W) + b[:, None]).argmax(-1) == y
        val_acc = (hit & held_out.repeat(len(Cs), 1)).sum(1) / held_out.sum(1).repeat(len(Cs))
        best_C = Cs[int(val_acc.view(len(Cs), folds).mean(1).argmax())]
    W, b = fit_logistic(Z, y, n_classes, best_C, max_iter)
    return LinearProbe(mean, std, W[0], b[0], best_C)


def random_init_twin(model, seed: int = 0):
    """The same architecture at random initialisation (for a Transformer), without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        twin = type(model)(model.cfg)
    return twin.to(next(model.parameters()).device).eval()


def probe(model, task: TaskConfig, layer_hook: str = "hook_resid_pre", role: str = "shape", target: str = "index", *,
          n_prompts: int = 1024, n: int | tuple[int, int] | None = None, seed: int = 0,
          association_order: str = "shuffled", Cs=(0.01, 0.1, 1.0, 10.0), folds: int = 3, test_frac: float = 0.4,
          control: bool = True, random_init: bool = True, n_random: int = 8, max_iter: int = 50,
          device="cpu") -> dict:
    """Linear probes of ``target`` at tokens of ``role``, on ``blocks[l].<layer_hook>`` for every layer.

    Train/test split by object identity (``identity_split``).  Controls: a Hewitt & Liang control
    task (each token type gets a fixed random label; selectivity = accuracy - control accuracy),
    and the same probe on the same architecture at random initialisation.  ``chance`` is the
    majority-class share of the test set.  Because test combinations never occur in training, a
    probe that decodes a partner through the token's own identity (e.g. the colour through the shape
    it sits on) is systematically wrong on test and can score below chance: compare with the
    random-initialisation baseline, which shows that floor.
    """
    batch = sample_batch(task, n_prompts, seed, n=n if n is not None else task.id_range,
                         association_order=association_order, device=device)
    g = torch.Generator(device=device).manual_seed(int(seed) + 1)
    positions, obj, valid = role_positions(batch, role)
    labels, n_classes = probe_labels(batch, role, target, obj, n_random, g)
    train, test = identity_split(batch, obj, test_frac, seed)
    train, test = train & valid, test & valid
    token_type = batch.tokens.gather(1, positions)
    control_labels = torch.randint(n_classes, (batch.vocab.size,), generator=g, device=device)[token_type]

    def fit_all(acts, y):
        return [fit_probe(a[train], y[train], n_classes, Cs, folds, seed, max_iter) for a in acts]

    acts = collect_activations(model, batch, layer_hook, positions)
    rows = [{"layer": layer, "accuracy": pr.accuracy(a[test], labels[test]), "C": pr.C}
            for layer, (pr, a) in enumerate(zip(fit_all(acts, labels), acts))]
    if control:
        for row, pr, a in zip(rows, fit_all(acts, control_labels), acts):
            row["control_accuracy"] = pr.accuracy(a[test], control_labels[test])
            row["selectivity"] = row["accuracy"] - row["control_accuracy"]
    if random_init:
        twin_acts = collect_activations(random_init_twin(model, seed), batch, layer_hook, positions)
        for row, pr, a in zip(rows, fit_all(twin_acts, labels), twin_acts):
            row["random_init_accuracy"] = pr.accuracy(a[test], labels[test])
    counts = torch.bincount(labels[test].cpu(), minlength=n_classes)
    return {"hook": layer_hook, "role": role, "target": target, "n_classes": n_classes,
            "n_train": int(train.sum()), "n_test": int(test.sum()),
            "chance": (counts.max() / counts.sum()).item() if counts.sum() else float("nan"), "layers": rows}


# ============================================================== models with a known mechanism
class _ToyAttention(nn.Module):
    """Hand-written heads: each is (score(x) -> [B, Q, K], value(x) -> [B, K, D] write)."""

    def __init__(self, heads):
        super().__init__()
        self.heads = heads
        self.hook_scores, self.hook_pattern, self.hook_head_out = nn.Identity(), nn.Identity(), nn.Identity()

    def forward(self, x, allowed):
        scores = self.hook_scores(torch.stack([score(x) for score, _ in self.heads], 1))
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        pattern = self.hook_pattern(scores.softmax(-1).masked_fill(~allowed.any(-1, keepdim=True), 0.0))
        z = self.hook_head_out(torch.stack([pattern[:, h] @ value(x) for h, (_, value) in enumerate(self.heads)], 2))
        return z.sum(2)


class _ToyBlock(nn.Module):
    def __init__(self, heads):
        super().__init__()
        self.attn = _ToyAttention(heads)
        for name in ("hook_resid_pre", "hook_attn_out", "hook_resid_mid", "hook_mlp_out", "hook_resid_post"):
            setattr(self, name, nn.Identity())

    def forward(self, x, allowed):
        x = self.hook_resid_pre(x)
        x = self.hook_resid_mid(x + self.hook_attn_out(self.attn(x, allowed)))
        return self.hook_resid_post(x + self.hook_mlp_out(torch.zeros_like(x)))


class ToyBindingModel(nn.Module):
    """A hand-wired 4-block model with the Transformer's hook points and a mechanism known by construction.

    The residual stream is a concatenation of readable parts:
        tok [V] one-hot token | prev [V] previous token | pos [1] position id | ctx_end [1] position of
        CTX_END | slot [Nmax] one-hot slot pointer | shape [V] one-hot shape pointer | ans [V] answer
    block 0: one head copies the previous token (by position id) into prev, one copies CTX_END's position.
    block 1 (find the queried object), at every token:
        positional: attend to the context token equal to this token (the query colour's declaration)
                    and write its slot, (position id - 1) / 2, into slot;
        symbolic:   attend to the context token whose prev is this token (the bound shape) and write it into shape.
    block 2 (retrieve): attend to the association item on the line numbered slot (positional; needs
        associations in declared order) or whose prev is the shape pointer (symbolic); write it into ans.
    block 3: does nothing.  The read-out is 10 * ans.
    So at the last token, resid_pre of blocks 0-1 holds the query colour (patching there swaps the
    query: SYM for both), block 2 holds the pointer (POS or SYM), block 3 the answer itself (REF).
    Offsets (filler prefixes) are not supported.  ``fmt='ordered'`` (positional only) reads the item lines
    of the ordered format, where the positional mechanism solves every prompt.
    """

    def __init__(self, vocab: Vocab, nmax: int, mechanism: str = "positional", sharpness: float = 30.0,
                 fmt: str = "standard"):
        super().__init__()
        if mechanism not in ("positional", "symbolic"):
            raise ValueError(f"unknown mechanism {mechanism!r}: allowed 'positional' and 'symbolic'.")
        if mechanism == "symbolic" and fmt != "standard":
            raise ValueError("the symbolic toy retrieves by shape; the 'ordered' format has no shapes on its lines.")
        self.line_width = line_width(fmt)
        V = vocab.size
        sizes = {"tok": V, "prev": V, "pos": 1, "ctx_end": 1, "slot": nmax, "shape": V, "ans": V}
        self.parts, start = {}, 0
        for name, size in sizes.items():
            self.parts[name] = slice(start, start + size)
            start += size
        self.d_model, self.vocab, self.nmax, self.mechanism, self.S = start, vocab, nmax, mechanism, sharpness
        self.register_buffer("is_item", (torch.arange(V) >= vocab.item_offset).float(), persistent=False)
        self.embed = nn.Module()
        self.embed.hook_out = nn.Identity()
        find = self._find_slot if mechanism == "positional" else self._find_shape
        retrieve = self._retrieve_by_line if mechanism == "positional" else self._retrieve_by_shape
        self.blocks = nn.ModuleList([
            _ToyBlock([self._previous_token, self._ctx_end_position]),
            _ToyBlock([find]),
            _ToyBlock([retrieve]),
            _ToyBlock([self._nothing]),
        ])
        self.hook_resid_final = nn.Identity()

    # --- reading and writing parts of the residual stream
    def part(self, x, name):
        return x[..., self.parts[name]]

    def write(self, name, value):
        out = value.new_zeros(*value.shape[:-1], self.d_model)
        out[..., self.parts[name]] = value
        return out

    def _in_context(self, x):
        """Keys before CTX_END: they have not seen it (the CTX_END token itself has)."""
        return (self.part(x, "ctx_end")[..., 0] < 0.5).float()[:, None, :]

    # --- heads: (score, value) pairs
    @property
    def _previous_token(self):
        def score(x):
            pos = self.part(x, "pos")[..., 0]
            return -self.S * (pos[:, None, :] - pos[:, :, None] + 1) ** 2
        return score, lambda x: self.write("prev", self.part(x, "tok"))

    @property
    def _ctx_end_position(self):
        def is_ctx_end(x):
            return self.part(x, "tok")[..., CTX_END]
        return (lambda x: self.S * is_ctx_end(x)[:, None, :].expand(-1, x.shape[1], -1),
                lambda x: self.write("ctx_end", (self.part(x, "pos")[..., 0] * is_ctx_end(x))[..., None]))

    @property
    def _find_slot(self):
        def value(x):
            odd = 2 * torch.arange(self.nmax, dtype=x.dtype, device=x.device) + 1  # colour k sits at position 2k + 1
            return self.write("slot", ((self.part(x, "pos") - odd).abs() < 0.5).to(x.dtype))
        tok = lambda x: self.part(x, "tok")
        return lambda x: self.S * (tok(x) @ tok(x).transpose(1, 2)) * self._in_context(x), value

    @property
    def _find_shape(self):
        score = lambda x: self.S * (self.part(x, "tok") @ self.part(x, "prev").transpose(1, 2)) * self._in_context(x)
        return score, lambda x: self.write("shape", self.part(x, "tok"))

    def _item_keys(self, x):
        return (self.part(x, "tok") @ self.is_item.to(x.dtype))[:, None, :]

    @property
    def _retrieve_by_line(self):
        def score(x):
            w = self.line_width  # item of line m sits at CTX_END + w (m + 1): 2m + 2 standard, m + 1 ordered
            line = w * torch.arange(self.nmax, dtype=x.dtype, device=x.device) + w
            key_line = ((self.part(x, "pos") - self.part(x, "ctx_end") - line).abs() < 0.5).to(x.dtype)
            return self.S * (self.part(x, "slot") @ key_line.transpose(1, 2)) * self._item_keys(x)
        return score, lambda x: self.write("ans", self.part(x, "tok"))

    @property
    def _retrieve_by_shape(self):
        score = lambda x: self.S * (self.part(x, "shape") @ self.part(x, "prev").transpose(1, 2)) * self._item_keys(x)
        return score, lambda x: self.write("ans", self.part(x, "tok"))

    @property
    def _nothing(self):
        return (lambda x: x.new_zeros(x.shape[0], x.shape[1], x.shape[1]), lambda x: torch.zeros_like(x))

    def forward(self, tokens, position_ids=None, key_mask=None, attn_mask=None):
        B, L = tokens.shape
        if position_ids is None:
            position_ids = torch.arange(L, device=tokens.device).expand(B, L)
        allowed = torch.ones(L, L, dtype=torch.bool, device=tokens.device).tril()[None, None]
        if key_mask is not None:
            allowed = allowed & key_mask[:, None, None, :].bool()
        if attn_mask is not None:
            allowed = allowed & attn_mask[:, None].bool()
        tok = F.one_hot(tokens, self.vocab.size).float()
        x = self.embed.hook_out(self.write("tok", tok) + self.write("pos", position_ids[..., None].float()))
        for block in self.blocks:
            x = block(x, allowed)
        return 10.0 * self.part(self.hook_resid_final(x), "ans")
