"""Packed training batches: many independent queries about each prompt body in one sequence."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .task import PAD, QSHAPE, QUE, QUERY_KINDS, Batch


@dataclass
class PackedBatch:
    """Many independent queries about each prompt body, packed into one sequence for training.

    Every query pair (marker, query token) sees the prompt body and itself only, and takes the
    positions a lone query would have, so it computes exactly what the single-query prompt
    would; one forward pass thus trains on every object and query kind of a prompt.
    """

    tokens: torch.Tensor  # [B, L]
    position_ids: torch.Tensor  # [B, L]
    key_mask: torch.Tensor  # [B, L]
    attn_mask: torch.Tensor  # [B, L, L]
    readout_pos: torch.Tensor  # [B, K] where each query's answer is read out
    target: torch.Tensor  # [B, K], -100 for padding pairs
    kind: torch.Tensor  # [B, K] index into QUERY_KINDS
    hop_target: torch.Tensor  # [B, K] the intermediate shape of two-hop queries, -100 elsewhere

    def model_inputs(self) -> dict:
        return {"tokens": self.tokens, "position_ids": self.position_ids, "key_mask": self.key_mask, "attn_mask": self.attn_mask}


def pack_queries(batch: Batch, kinds=QUERY_KINDS) -> PackedBatch:
    """Turn a sampled batch into a PackedBatch asking every object under every kind in ``kinds``."""
    for k in kinds:
        if k not in QUERY_KINDS:
            raise ValueError(f"unknown query kind {k!r}: allowed {QUERY_KINDS}.")
    dev = batch.tokens.device
    B, nmax = batch.colors.shape
    body = batch.query_pos - 1  # body length = index of the QUE marker
    lb = int(body.max())
    markers, queries, targets, kind_ids = [], [], [], []
    for k in kinds:
        kid = QUERY_KINDS.index(k)
        markers.append(torch.full((B, nmax), QSHAPE if k == "color_to_shape" else QUE, device=dev))
        queries.append(batch.shapes if k == "shape_to_item" else batch.colors)
        targets.append(batch.shapes if k == "color_to_shape" else batch.items)
        kind_ids.append(torch.full((B, nmax), kid, device=dev))
    marker, query, target, kind = (torch.cat(x, 1) for x in (markers, queries, targets, kind_ids))
    valid = query >= 0
    K = marker.shape[1]
    L = lb + 2 * K
    tokens = torch.full((B, L), PAD, dtype=torch.long, device=dev)
    tokens[:, :lb] = batch.tokens[:, :lb]
    tokens[:, lb::2] = marker.masked_fill(~valid, PAD)
    tokens[:, lb + 1::2] = query.clamp(min=0).masked_fill(~valid, PAD)
    idx = torch.arange(L, device=dev)
    attendable = torch.zeros(B, L, dtype=torch.bool, device=dev)
    attendable[:, :lb] = batch.key_mask[:, :lb]  # keeps noise tokens unattendable
    in_body = (idx[None, :] < body[:, None]) & attendable
    pair = torch.where(idx >= lb, (idx - lb) // 2, -1).expand(B, L)
    body_pos = torch.zeros(B, L, dtype=torch.long, device=dev)
    body_pos[:, :lb] = batch.position_ids[:, :lb]
    marker_pos = batch.position_ids.gather(1, body[:, None])  # where a lone query's marker would sit
    pos = torch.where(idx[None, :] >= lb, marker_pos + (idx[None, :] - lb) % 2, body_pos)
    pair_valid = torch.zeros(B, L, dtype=torch.bool, device=dev)
    pair_valid[:, lb:] = valid.repeat_interleave(2, 1)
    key_mask = in_body | pair_valid
    same_pair = (pair[:, :, None] == pair[:, None, :]) & (pair[:, :, None] >= 0)
    attn_mask = in_body[:, None, :] | same_pair
    return PackedBatch(
        tokens=tokens, position_ids=pos, key_mask=key_mask, attn_mask=attn_mask,
        readout_pos=(lb + 1 + 2 * torch.arange(K, device=dev)).expand(B, K),
        target=target.masked_fill(~valid, -100), kind=kind,
        hop_target=batch.shapes.repeat(1, len(kinds)).masked_fill(~valid | (kind != QUERY_KINDS.index("two_hop")), -100),
    )


HOP_TARGETS = ("shape", "slot")  # what deep supervision of the intermediate hop asks for


def hop_loss(model, resid: torch.Tensor, packed: PackedBatch, nmax: int, hop_target: str = "shape",
             head: torch.nn.Module | None = None) -> torch.Tensor:
    """Deep supervision of the two-hop queries' residual ``resid`` [B, L, D] (a block's output), read at each
    query's read-out position through the final LayerNorm: "shape" asks the unembedding for the queried
    colour's shape; "slot" asks ``head`` (a train-time linear readout, not part of the model) for the
    queried object's declaration index (queries are packed kind-major, so query j asks slot j % nmax)."""
    x = model.ln_f(resid.gather(1, packed.readout_pos[..., None].expand(-1, -1, resid.shape[-1])))
    if hop_target == "shape":
        return F.cross_entropy(model.unembed(x).flatten(0, 1).float(), packed.hop_target.flatten(), ignore_index=-100)
    if head is None:
        raise ValueError("hop_target 'slot' needs the train-time slot head (bindlib.training.train.hop_head_for).")
    slot = (torch.arange(packed.hop_target.shape[1], device=x.device) % nmax).expand_as(packed.hop_target)
    return F.cross_entropy(head(x).flatten(0, 1).float(), slot.masked_fill(packed.hop_target < 0, -100).flatten(),
                           ignore_index=-100)
