"""A small decoder-only, pre-LayerNorm transformer with named hook points.

Every activation an experiment needs is an ``nn.Identity`` module, so nnsight
(or plain forward hooks) can read and overwrite it without touching internals:

    embed.hook_out                     token (or image) embeddings, [B, L, D]
    blocks[l].hook_resid_pre           residual stream entering block l
    blocks[l].attn.hook_scores         pre-softmax attention scores, [B, H, Q, K]
    blocks[l].attn.hook_pattern        attention pattern after softmax, [B, H, Q, K]
    blocks[l].attn.hook_head_out       per-head output before W_O, [B, L, H, d_head]
    blocks[l].hook_attn_out            attention output, [B, L, D]
    blocks[l].hook_resid_mid           residual after attention
    blocks[l].hook_mlp_out             MLP output
    blocks[l].hook_resid_post          residual leaving block l
    hook_resid_final                   after the final LayerNorm

Masks are applied *after* hook_scores, so a knockout written into the scores
composes with causality and the key mask rather than replacing them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, asdict, field, fields

import torch
import torch.nn as nn

from .profiles import MODEL as PROFILES  # n_layers, d_model, n_heads, d_ff of the cpu and paper profiles
from .profiles import DEFAULT_POS_ENCODING, POS_ENCODINGS, check_pos_encoding


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    n_layers: int = 4
    d_model: int = 128
    n_heads: int = 4
    d_ff: int = 512
    pos_encoding: str = field(default=DEFAULT_POS_ENCODING, metadata={
        "choices": POS_ENCODINGS, "help": "positional encoding (an ablation when not rope: names get a _<x>pos suffix)"})
    max_len: int = 512  # positions 0..max_len-1 of the learned position table (rope and none have no limit)
    rope_base: float = 10000.0
    qkv_bias: bool = False  # a bias lets a head attend by relative position alone from step 0
    tie_embeddings: bool = False  # unembedding = embedding^T, so "write a token" and "read a token" share directions

    def __post_init__(self):
        check_pos_encoding(self.pos_encoding)
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}.")
        if self.pos_encoding == "rope" and (self.d_model // self.n_heads) % 2:
            raise ValueError(f"RoPE needs an even head size; got d_model/n_heads={self.d_model // self.n_heads}.")
        for name in ("vocab_size", "n_layers", "d_model", "n_heads", "d_ff"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1.")

    def to_dict(self) -> dict:
        return asdict(self)


def typed(cls, value):
    """A config dataclass from itself, None or a dict of its fields; a key it lacks is one clear error
    (saved configs and hand-written dicts go through here)."""
    if isinstance(value, cls):
        return value
    value = dict(value or {})
    known = [f.name for f in fields(cls)]
    bad = sorted(set(value) - set(known))
    if bad:
        raise ValueError(f"unknown {cls.__name__} setting(s) {bad}: allowed {known}.")
    return cls(**value)


@dataclass(frozen=True)
class ModelOverrides:
    """What a training config changes of its profile's ModelConfig; None keeps the profile's value.

    The vocabulary size and the position table's length follow from the task, so they are not here.
    Saved configs hold only what is set (``{}`` or ``{"pos_encoding": "learned"}``)."""

    n_layers: int | None = None
    d_model: int | None = None
    n_heads: int | None = None
    d_ff: int | None = None
    pos_encoding: str | None = None
    rope_base: float | None = None
    qkv_bias: bool | None = None
    tie_embeddings: bool | None = None

    def __post_init__(self):
        if self.pos_encoding is not None:
            check_pos_encoding(self.pos_encoding)

    @classmethod
    def of(cls, value) -> "ModelOverrides":
        return typed(cls, value)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def replace(self, **changes) -> "ModelOverrides":
        """These overrides with ``changes`` applied (a value equal to the profile's is still recorded)."""
        return ModelOverrides.of({**self.to_dict(), **changes})


def rope_angles(position_ids: torch.Tensor, d_head: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) [B, 1, L, dh/2] of the angles position * base^(-2i/dh); computed once per forward pass."""
    inv_freq = base ** (-torch.arange(0, d_head, 2, device=position_ids.device, dtype=torch.float32) / d_head)
    ang = position_ids.to(torch.float32)[:, None, :, None] * inv_freq
    return ang.cos(), ang.sin()


def rope_rotate(x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotate channel pairs of x [B, H, L, dh] by the angles of ``rope`` (rope_angles)."""
    cos, sin = (t.to(x.dtype) for t in rope)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


def allowed_keys(L: int, device, key_mask=None, attn_mask=None) -> torch.Tensor:
    """[B or 1, 1, Q, K] bool: causal (in sequence order), minus masked keys, within extra allowed pairs."""
    allowed = torch.ones(L, L, dtype=torch.bool, device=device).tril()[None, None]
    if key_mask is not None:
        allowed = allowed & key_mask[:, None, None, :].bool()
    if attn_mask is not None:
        allowed = allowed & attn_mask[:, None].bool()
    return allowed


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.n_heads, self.d_head = cfg.n_heads, cfg.d_model // cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.qkv_bias)
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.hook_scores = nn.Identity()
        self.hook_pattern = nn.Identity()
        self.hook_head_out = nn.Identity()

    def forward(self, x, rope, allowed):
        B, L, _ = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4)
        if rope is not None:
            q, k = rope_rotate(q, rope), rope_rotate(k, rope)
        scores = self.hook_scores(q @ k.transpose(-1, -2) / math.sqrt(self.d_head))
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        # a query with no allowed key (e.g. a masked-out token) attends to nothing rather than to everything
        pattern = self.hook_pattern(scores.softmax(-1).masked_fill(~allowed.any(-1, keepdim=True), 0.0))
        z = self.hook_head_out((pattern @ v).transpose(1, 2))  # [B, L, H, dh]
        return self.out(z.reshape(B, L, -1))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.attn = Attention(cfg)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(), nn.Linear(cfg.d_ff, cfg.d_model))
        for name in ("hook_resid_pre", "hook_attn_out", "hook_resid_mid", "hook_mlp_out", "hook_resid_post"):
            setattr(self, name, nn.Identity())

    def forward(self, x, rope, allowed):
        x = self.hook_resid_pre(x)
        x = self.hook_resid_mid(x + self.hook_attn_out(self.attn(self.ln1(x), rope, allowed)))
        return self.hook_resid_post(x + self.hook_mlp_out(self.mlp(self.ln2(x))))


class Embedding(nn.Module):
    """Token embeddings, optionally replaced by given vectors (image tokens) at chosen positions."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.max_len, cfg.d_model) if cfg.pos_encoding == "learned" else None
        self.hook_out = nn.Identity()

    def forward(self, tokens, position_ids, inputs_embeds=None, embeds_mask=None):
        x = self.tok(tokens)
        if inputs_embeds is not None:
            x = torch.where(embeds_mask[..., None], inputs_embeds.to(x.dtype), x)
        if self.pos is not None:
            x = x + self.pos(position_ids)
        return self.hook_out(x)


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = Embedding(cfg)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.hook_resid_final = nn.Identity()
        self.unembed = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.apply(self._init)
        for block in self.blocks:  # GPT-2: shrink the residual writes with depth
            for lin in (block.attn.out, block.mlp[2]):
                nn.init.normal_(lin.weight, std=0.02 / math.sqrt(2 * cfg.n_layers))
        if cfg.tie_embeddings:
            self.unembed.weight = self.embed.tok.weight

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    def forward(self, tokens, position_ids=None, key_mask=None, inputs_embeds=None, embeds_mask=None, attn_mask=None):
        """Return logits [B, L, V].

        position_ids: explicit positions (default 0..L-1); they may skip or repeat.
        key_mask: [B, L] bool, False marks tokens no query may attend to (padding, noise).
        inputs_embeds / embeds_mask: [B, L, D] vectors used in place of token embeddings where mask is True.
        attn_mask: optional [B, L, L] bool (query, key) of extra allowed pairs, combined with causality.
        Causality follows sequence order, not position ids.
        """
        B, L = tokens.shape
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.cfg.vocab_size):
            raise ValueError(f"token ids must lie in 0..{self.cfg.vocab_size - 1} (the model's vocab_size), got "
                             f"{int(tokens.min())}..{int(tokens.max())}; the prompts come from another vocabulary.")
        if position_ids is None:
            position_ids = torch.arange(L, device=tokens.device).expand(B, L)
        if self.cfg.pos_encoding == "learned" and L and int(position_ids.max()) >= self.cfg.max_len:
            raise ValueError(f"a sequence reaches position {int(position_ids.max())}, but the model takes positions "
                             f"0..{self.cfg.max_len - 1} (max_len); use fewer objects or a smaller offset.")
        allowed = allowed_keys(L, tokens.device, key_mask, attn_mask)
        rope = (rope_angles(position_ids, self.cfg.d_model // self.cfg.n_heads, self.cfg.rope_base)
                if self.cfg.pos_encoding == "rope" else None)
        x = self.embed(tokens, position_ids, inputs_embeds, embeds_mask)
        for block in self.blocks:
            x = block(x, rope, allowed)
        return self.unembed(self.hook_resid_final(self.ln_f(x)))

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def build_model(vocab_size: int, profile: str = "cpu", **overrides) -> Transformer:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}: allowed {sorted(PROFILES)}.")
    return Transformer(ModelConfig(vocab_size=vocab_size, **{**PROFILES[profile], **overrides}))


def answer_logits(model: Transformer, batch) -> torch.Tensor:
    """Logits at the read-out position of each prompt, [B, V]."""
    logits = model(**batch.model_inputs())
    return logits[torch.arange(len(batch), device=logits.device), batch.query_pos]
