"""The two out-of-distribution axes, and how a model fails along them.

A longer prompt in the paper's sense (more objects) changes two things at once: there are more objects
to keep apart (*count*), and the query sits farther from the context it must read (*distance*). This
module moves along each axis alone:

- **count**: accuracy for every N, past the training range, as far as the vocabulary allows;
- **distance**: prompts with an in-distribution N whose association lines and query are moved G
  positions away from the context. Two ways:

  * ``"gap"``: the position ids of every token after ``CTX_END`` grow by G; no token is added. The
    model sees the same tokens as in training, only farther apart (the same as G filler tokens that
    nothing can attend to).
  * ``"filler"``: G ``FILL`` tokens are inserted after ``CTX_END``. They are in no binding, and they can
    be attended to, so they add dilution to the distance.

The same prompts also say *which* step fails: an error taxonomy of the wrong answers, the one-hop
accuracies (colour -> shape reads across the gap; shape -> item does not), and the read-out's attention
to the queried object.
"""
from __future__ import annotations

import torch

from .model import answer_logits
from .profiles import DEFAULT_POS_ENCODING
from .task import CTX_END, FILL, PAD, Batch, TaskConfig, line_width, prompt_length, sample_batch

FILLERS = ("gap", "filler")
GAPS = (0, 16, 32, 48, 64, 80, 96, 112, 128)
FAR_GAPS = (48, 64, 80, 96, 112, 128)  # "long distance": past every query-context distance of training
DIAGNOSED_GAPS = (0, 48, 96)  # the gap buckets whose failures are taken apart
MAX_COUNT = 64  # the count axis stops here, or at the vocabulary's limit
COUNT_BUCKETS = {"id": (2, 8), "9-16": (9, 16), "17-24": (17, 24), "25-32": (25, 32)}
ERROR_KINDS = ("not_in_prompt", "declaration_neighbour", "line_neighbour", "far")


# ---------------------------------------------------------------- moving along the distance axis
def context_end(batch: Batch) -> torch.Tensor:
    """[B] index of each prompt's CTX_END token."""
    return (batch.tokens == CTX_END).float().argmax(-1)


def move_after_context(batch: Batch, gap: int, filler: str = "gap") -> Batch:
    """The prompts with everything after ``CTX_END`` moved ``gap`` positions away (see the module doc)."""
    if filler not in FILLERS:
        raise ValueError(f"unknown filler {filler!r}: allowed {FILLERS}.")
    if gap < 0:
        raise ValueError(f"gap={gap} must be >= 0.")
    if gap == 0:
        return batch
    end = context_end(batch)
    B, L = batch.tokens.shape
    cols = torch.arange(L, device=batch.tokens.device).expand(B, L)
    after = cols > end[:, None]
    if filler == "gap":
        out = batch.select(torch.arange(B))
        out.position_ids = batch.position_ids + gap * after
        out.meta = dict(batch.meta, gap=gap, filler=filler)
        return out
    new_col = cols + gap * after  # where each old token lands
    tokens = torch.full((B, L + gap), PAD, dtype=batch.tokens.dtype, device=batch.tokens.device)
    tokens.scatter_(1, new_col, batch.tokens)
    wide = torch.arange(L + gap, device=tokens.device).expand(B, L + gap)
    tokens[(wide > end[:, None]) & (wide <= end[:, None] + gap)] = FILL
    query_pos = batch.query_pos + gap

    def moved(pos):
        return torch.where(pos >= 0, pos + gap, pos)

    out = batch.select(torch.arange(B))
    out.tokens, out.query_pos = tokens, query_pos
    out.position_ids = wide.clone()
    out.key_mask = wide <= query_pos[:, None]
    out.assoc_item_pos, out.assoc_shape_pos = moved(batch.assoc_item_pos), moved(batch.assoc_shape_pos)
    out.meta = dict(batch.meta, gap=gap, filler=filler)
    return out


def gap_limit(model, task: TaskConfig, n: int) -> int | None:
    """The largest gap a model's positions can hold at N objects (None: no limit, e.g. RoPE)."""
    cfg = getattr(model, "cfg", None)
    if cfg is None or getattr(cfg, "pos_encoding", DEFAULT_POS_ENCODING) != "learned":
        return None
    return cfg.max_len - prompt_length(n, 0, task.format)


def count_limit(model, task: TaskConfig) -> int:
    """The largest N on the count axis: the vocabulary's, MAX_COUNT, and for learned positions the table's."""
    top = min(task.vocab.max_objects, MAX_COUNT)
    cfg = getattr(model, "cfg", None)
    if cfg is not None and getattr(cfg, "pos_encoding", DEFAULT_POS_ENCODING) == "learned":
        while top > 1 and prompt_length(top, 0, task.format) > cfg.max_len:
            top -= 1
    return top


# ---------------------------------------------------------------- measuring one cell
@torch.no_grad()
def answers(model, batch: Batch, chunk: int = 250) -> torch.Tensor:
    """Predicted answer token of every prompt."""
    return torch.cat([answer_logits(model, batch.select(torch.arange(i, min(i + chunk, len(batch)),
                                                                     device=batch.tokens.device))).argmax(-1)
                      for i in range(0, len(batch), chunk)])


def cell_batch(task: TaskConfig, n: int, gap: int, filler: str, size: int, seed: int, query_kind: str = "two_hop",
               device="cpu") -> Batch:
    """``size`` prompts with N = ``n`` objects, moved by ``gap``; the seed depends on (n, gap) only, so the two
    fillers and every model see the same prompts."""
    batch = sample_batch(task, size, seed + 1009 * n + gap, n=n, query_kind=query_kind, device=device)
    return move_after_context(batch, gap, filler)


def error_taxonomy(batch: Batch, pred: torch.Tensor) -> dict:
    """Where the wrong two-hop answers come from, with the share a random other object would give.

    not_in_prompt: no item of this prompt; declaration_neighbour: the item of an object declared next to the
    queried one; line_neighbour: the item on an association line next to the queried object's line; far:
    any other object's item. An answer that is both neighbours counts as a declaration neighbour.
    """
    wrong = pred != batch.target
    counts = dict.fromkeys(ERROR_KINDS, 0)
    chance = {"declaration_neighbour": 0.0, "line_neighbour": 0.0, "far": 0.0}
    n_other, w = 0, line_width(batch.meta.get("format", "standard"))
    for b in torch.nonzero(wrong).flatten().tolist():
        n, q = int(batch.n_objects[b]), int(batch.query_slot[b])
        items = batch.items[b, :n].tolist()
        lines = batch.assoc_item_pos[b, :n]
        p = int(pred[b])
        if p not in items:
            counts["not_in_prompt"] += 1
            continue
        n_other += 1
        kinds = []
        for k in range(n):
            if k == q:
                continue
            decl = abs(k - q) == 1
            line = abs(int(lines[k]) - int(lines[q])) == w
            kinds.append("declaration_neighbour" if decl else "line_neighbour" if line else "far")
        for kind in kinds:
            chance[kind] += 1 / len(kinds)
        k = items.index(p)
        counts[kinds[k if k < q else k - 1]] += 1
    total = int(wrong.sum())
    return {"wrong": total, "counts": counts,
            "share_among_other_items": {k: (counts[k] / n_other if n_other else None) for k in chance},
            "chance_among_other_items": {k: (chance[k] / n_other if n_other else None) for k in chance}}


def half_accuracy(batch: Batch, pred: torch.Tensor) -> dict:
    """Accuracy on objects declared in the first and in the second half of the context."""
    hit = (pred == batch.target).float()
    first = batch.query_slot < (batch.n_objects + 1) // 2
    return {"first_half": hit[first].mean().item() if first.any() else None,
            "second_half": hit[~first].mean().item() if (~first).any() else None}


@torch.no_grad()
def readout_attention(model, batch: Batch) -> dict:
    """Attention from the read-out (the last prompt token) to the queried object, per layer (mean over heads):
    to its association line (shape and item tokens) and to its context pair (colour and shape tokens)."""
    patterns = []
    handles = [blk.attn.hook_pattern.register_forward_hook(lambda m, i, o: patterns.append(o)) for blk in model.blocks]
    try:
        model(**batch.model_inputs())
    finally:
        for h in handles:
            h.remove()
    r = torch.arange(len(batch), device=batch.tokens.device)
    q = batch.query_slot
    line = [batch.assoc_item_pos[r, q]] + ([batch.assoc_shape_pos[r, q]] if bool((batch.assoc_shape_pos >= 0).any()) else [])
    pair = [batch.color_pos[r, q], batch.shape_pos[r, q]]
    out = {"line": [], "context": []}
    for pat in patterns:  # [B, H, Q, K]
        row = pat[r, :, batch.query_pos]  # [B, H, K]
        out["line"].append(sum(row[r, :, p].mean(-1) for p in line).mean().item())
        out["context"].append(sum(row[r, :, p].mean(-1) for p in pair).mean().item())
    return out


# ---------------------------------------------------------------- the axes
def _mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


@torch.no_grad()
def count_axis(model, task: TaskConfig, per_cell: int = 500, seed: int = 2468, device="cpu") -> dict:
    """Two-hop accuracy for every N from 2 to ``count_limit``; per bucket also the one-hop accuracies (colour ->
    shape, shape -> item), the error taxonomy and the halves."""
    top = count_limit(model, task)
    by_n, cells = {}, {}
    for n in range(2, top + 1):
        batch = cell_batch(task, n, 0, "gap", per_cell, seed, device=device)
        pred = answers(model, batch)
        by_n[str(n)] = round((pred == batch.target).float().mean().item(), 4)
        cells[n] = (batch, pred)
    buckets = {}
    for name, (lo, hi) in COUNT_BUCKETS.items():
        ns = [n for n in cells if lo <= n <= hi]
        if not ns:
            continue
        one_hop = {kind: round(_mean([(answers(model, b) == b.target).float().mean().item() for b in
                                      (cell_batch(task, n, 0, "gap", per_cell, seed, query_kind=kind, device=device)
                                       for n in ns)]), 4)
                   for kind in ("color_to_shape", "shape_to_item")}
        buckets[name] = {"accuracy": round(_mean([by_n[str(n)] for n in ns]), 4), "ns": [ns[0], ns[-1]],
                         **one_hop, **_diagnose([cells[n] for n in ns])}
    return {"accuracy_by_n": by_n, "max_n": top, "buckets": buckets}


def _diagnose(cells) -> dict:
    """The taxonomy and the halves of several (batch, prediction) cells together."""
    tax = [error_taxonomy(b, p) for b, p in cells]
    counts = {k: sum(t["counts"][k] for t in tax) for k in ERROR_KINDS}
    other = sum(counts[k] for k in ERROR_KINDS if k != "not_in_prompt")
    chance = {k: _mean([t["chance_among_other_items"][k] for t in tax if t["chance_among_other_items"][k] is not None])
              for k in ("declaration_neighbour", "line_neighbour", "far")}
    halves = [half_accuracy(b, p) for b, p in cells]
    return {"errors": {"wrong": sum(t["wrong"] for t in tax), "counts": counts,
                       "share_among_other_items": {k: (counts[k] / other if other else None) for k in chance},
                       "chance_among_other_items": chance},
            "first_half": _mean([h["first_half"] for h in halves]),
            "second_half": _mean([h["second_half"] for h in halves])}


@torch.no_grad()
def distance_axis(model, task: TaskConfig, n: int | None = None, gaps=None, per_cell: int = 500, seed: int = 1357,
                  device="cpu", diagnose: bool = True) -> dict:
    """Accuracy at N = ``n`` (default: the top of the ID range) for every gap and filler; with ``diagnose``,
    per gap also the one-hop accuracies, the error taxonomy, the halves and the read-out's attention."""
    n, gaps = n or task.id_range[1], gaps or GAPS
    limit = gap_limit(model, task, n)
    out = {"n": n, "gap_limit": limit, "fillers": {}}
    for filler in FILLERS:
        rows = {}
        for gap in gaps:
            if limit is not None and gap > limit:
                rows[str(gap)] = {"skipped": f"position ids past the learned table (largest gap {limit})"}
                continue
            batch = cell_batch(task, n, gap, filler, per_cell, seed, device=device)
            pred = answers(model, batch)
            row = {"accuracy": round((pred == batch.target).float().mean().item(), 4)}
            if diagnose and gap in DIAGNOSED_GAPS:
                for kind in ("color_to_shape", "shape_to_item"):
                    one = cell_batch(task, n, gap, filler, per_cell, seed, query_kind=kind, device=device)
                    row[kind] = round((answers(model, one) == one.target).float().mean().item(), 4)
                row.update(_diagnose([(batch, pred)]))
                att = readout_attention(model, batch.select(torch.arange(min(len(batch), 200))))
                row["attention"] = {k: [round(v, 4) for v in vs] for k, vs in att.items()}
            rows[str(gap)] = row
        far = [rows[str(g)]["accuracy"] for g in FAR_GAPS if str(g) in rows and "accuracy" in rows[str(g)]]
        out["fillers"][filler] = {"by_gap": rows, "far_accuracy": round(_mean(far), 4) if far else None,
                                  "far_gaps": [g for g in FAR_GAPS if str(g) in rows and "accuracy" in rows[str(g)]]}
    return out


@torch.no_grad()
def count_distance_grid(model, task: TaskConfig, ns=(2, 4, 6, 8, 10, 12, 14, 16), gaps=None, per_cell: int = 500,
                        seed: int = 97531, device="cpu") -> dict:
    """Accuracy on an N x G grid (the "gap" filler), so count and distance can be read apart."""
    top, gaps = count_limit(model, task), gaps or GAPS
    grid = {}
    for n in ns:
        if n > top:
            continue
        limit = gap_limit(model, task, n)
        grid[str(n)] = {}
        for gap in gaps:
            if limit is not None and gap > limit:
                continue
            batch = cell_batch(task, n, gap, "gap", per_cell, seed, device=device)
            grid[str(n)][str(gap)] = round((answers(model, batch) == batch.target).float().mean().item(), 4)
    return {"filler": "gap", "grid": grid}


def measure(model, task: TaskConfig, per_cell: int = 500, grid: bool = False, device="cpu") -> dict:
    """Everything an ``ood-axes`` results file holds."""
    model.eval()
    out = {"per_cell": per_cell, "count": count_axis(model, task, per_cell, device=device),
           "distance": distance_axis(model, task, per_cell=per_cell, device=device)}
    if grid:
        out["grid"] = count_distance_grid(model, task, per_cell=per_cell, device=device)
    return out
