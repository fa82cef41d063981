"""A hand-wired model whose binding mechanism is known by construction (positional or symbolic), with the
Transformer's hook points: the positive control of every measurement in bindlib.interp."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.model import allowed_keys
from ..core.task import CTX_END, Vocab, line_width

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
        allowed = allowed_keys(L, tokens.device, key_mask, attn_mask)
        tok = F.one_hot(tokens, self.vocab.size).float()
        x = self.embed.hook_out(self.write("tok", tok) + self.write("pos", position_ids[..., None].float()))
        for block in self.blocks:
            x = block(x, allowed)
        return 10.0 * self.part(self.hook_resid_final(x), "ans")
