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

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..core.task import (Batch, TaskConfig, build_prompts, check_n_range, concat_batches, line_width, make_generator,
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


def association_lines(batch: Batch) -> torch.Tensor:
    """line_of[b, k]: the association line of object k (0 on padding)."""
    w = line_width(batch.meta.get("format", "standard"))
    assoc0 = batch.color_pos[:, :1] + 2 * batch.n_objects[:, None] + 1  # color_pos[:, 0] = 1 + offset
    return ((batch.assoc_item_pos - assoc0 - (w - 1)) // w).masked_fill(batch.colors < 0, 0)


def requery(batch: Batch, slot) -> Batch:
    """The same prompts asking about object ``slot`` (an int or a [B] tensor) instead."""
    slot = torch.as_tensor(slot, device=batch.tokens.device).expand(len(batch)).clone()
    return build_prompts(batch.vocab, batch.colors, batch.shapes, batch.items, association_lines(batch), slot,
                         batch.n_objects, batch.meta.get("offset", 0), meta=batch.meta)


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
        lines = base.items.clone()
        lines[r, q_s], lines[r, x] = base.items[r, x], base.items[r, q_s]
        source = build_prompts(base.vocab, base.colors.gather(1, src_obj), base.shapes.gather(1, src_obj), lines,
                               association_lines(base), q_s, base.n_objects, base.meta.get("offset", 0), meta=base.meta)
        return Pairs(base, source, positional=base.items[r, q_s], symbolic=base.items[r, o],
                     reflexive=base.items[r, x], base_answer=base.target.clone(), source_objects=src_obj, traded_object=x)

    items_src = base.items.clone()  # object-indexed, with the items of o and x traded
    items_src[r, o], items_src[r, x] = base.items[r, x], base.items[r, o]
    source = build_prompts(
        base.vocab, base.colors.gather(1, src_obj), base.shapes.gather(1, src_obj), items_src.gather(1, src_obj),
        association_lines(base),  # source slot j uses base slot j's line: same slot -> line map
        q_s, base.n_objects, base.meta.get("offset", 0), meta=base.meta)
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
    - in the 'ordered' format (items listed by slot, no shapes on the lines) the source keeps the base's
      item list and trades the items on lines q_s and x instead: POS = the base's item at the source's
      slot, SYM = the base's item of the source's queried colour, REF = i_x, as above.
    Base and source have the same N, hence the same length, format and position ids.
    With ``model``, only pairs it answers correctly on both prompts are kept.
    """
    lo, hi = (max(4, task.id_range[0]), task.id_range[1]) if n is None else ((n, n) if isinstance(n, int) else n)
    check_n_range(lo, hi, task.vocab)
    if lo < 4:
        raise ValueError(f"pairs need N >= 4 objects so that four targets are distinct; got N={lo}.")
    g = make_generator(seed, device)
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
    return concat_pairs(kept)


def concat_pairs(parts: list[Pairs]) -> Pairs:
    """Rows of several Pairs, in order."""
    if len(parts) == 1:
        return parts[0]
    return Pairs(concat_batches(*(p.base for p in parts)), concat_batches(*(p.source for p in parts)),
                 *(torch.cat([getattr(p, k) for p in parts]) for k in
                   ("positional", "symbolic", "reflexive", "base_answer", "source_objects", "traded_object")))


# ============================================================== rebind pairs (colour versus bound shape)
@dataclass
class RebindPairs:
    """Base/source pairs that re-pair colours with shapes and keep everything else of the query.

    The source keeps every colour in its slot and asks the same colour at the same slot, but object k
    now shows shape s_{pi(k)} (pi a derangement), declared on slot k's association line (the base's
    slot -> line map, as in ``make_pairs``), with the item that shape has in the base, except that the
    queried shape s_o (o = pi(q_b)) trades its item with a third shape s_x.  Targets, items of the base:
      stay      i_{q_b}: the last token carries the query colour or its slot (the same in both prompts),
                         or patching had no effect;
      shape     i_o:     the last token carries the bound *shape* (the base retrieves s_o's item);
      reflexive i_x:     the last token carries the answer item itself (the source's answer).
    pos/sym/ref pairs cannot tell a query swap from routing; these can.  Only the 'standard' format has
    shapes on its association lines, so only it has rebind pairs.
    """

    base: Batch
    source: Batch
    stay: torch.Tensor
    shape: torch.Tensor
    reflexive: torch.Tensor
    shape_perm: torch.Tensor  # [M, Nmax] pi: source slot k shows base shape pi(k)
    traded_object: torch.Tensor  # [M] x

    FIELDS = ("stay", "shape", "reflexive", "shape_perm", "traded_object")

    def __len__(self) -> int:
        return len(self.base)

    def select(self, idx) -> "RebindPairs":
        idx = torch.as_tensor(idx, device=self.base.tokens.device)
        return RebindPairs(self.base.select(idx), self.source.select(idx), *(getattr(self, k)[idx] for k in self.FIELDS))

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
    items_by_shape = base.items.clone()  # indexed by base object: the item bound to base shape k, o and x traded
    items_by_shape[r, o], items_by_shape[r, x] = base.items[r, x], base.items[r, o]
    source = build_prompts(base.vocab, base.colors, base.shapes.gather(1, perm), items_by_shape.gather(1, perm),
                           association_lines(base), q_b, base.n_objects, base.meta.get("offset", 0), meta=base.meta)
    return RebindPairs(base, source, stay=base.target.clone(), shape=base.items[r, o], reflexive=base.items[r, x],
                       shape_perm=perm, traded_object=x)


def make_rebind_pairs(task: TaskConfig, n_pairs: int, seed: int = 0, *, n: int | tuple[int, int] | None = None,
                      association_order: str = "shuffled", offset: int = 0, device="cpu") -> RebindPairs:
    """``n_pairs`` rebind pairs (N >= 3 objects; default N in max(3, ID lo)..ID hi)."""
    lo, hi = (max(3, task.id_range[0]), task.id_range[1]) if n is None else ((n, n) if isinstance(n, int) else n)
    check_n_range(lo, hi, task.vocab)
    if lo < 3:
        raise ValueError(f"rebind pairs need N >= 3 objects so that three targets are distinct; got N={lo}.")
    g = make_generator(seed, device)
    base = sample_batch(task, n_pairs, n=(lo, hi), association_order=association_order, offset=offset,
                        device=device, generator=g)
    return rebind_pairs_from_base(base, g)


def concat_rebind_pairs(parts: list[RebindPairs]) -> RebindPairs:
    """Rows of several RebindPairs, in order."""
    return RebindPairs(concat_batches(*(p.base for p in parts)), concat_batches(*(p.source for p in parts)),
                       *(torch.cat([getattr(p, k) for p in parts]) for k in RebindPairs.FIELDS))
