"""Training recipes: the curriculum and settings each profile uses by default.

The two-hop task sits on a long loss plateau when trained directly (see the
book's chapter 2). What breaks it is a *sub-skill curriculum*: each batch mixes
the two-hop query with its two one-hop parts (colour -> shape in the context,
shape -> item in the associations), so each hop gets its own gradient, and the
mixture is then annealed to the two-hop task alone.
"""
from __future__ import annotations

from .train import Stage, TrainConfig

SUBSKILL_MIX = {"two_hop": 1.0, "color_to_shape": 1.0, "shape_to_item": 1.0}


def curriculum(total: int, mix_fraction: float = 0.6, until: float | None = 0.97) -> list[Stage]:
    """Sub-skill mixture first, then the two-hop task alone."""
    mixed = max(1, int(total * mix_fraction))
    return [
        Stage("subskills", mixed, dict(SUBSKILL_MIX), until=until),
        Stage("two_hop", max(1, total - mixed), {"two_hop": 1.0}),
    ]


def recipe(profile: str = "cpu", seed: int = 0, device: str = "cpu", steps_scale: float = 1.0) -> TrainConfig:
    """The default text-only training config of a profile."""
    if profile == "cpu":
        total = int(3000 * steps_scale)
        return TrainConfig(profile="cpu", stages=curriculum(total), batch_size=64, lr=3e-3, warmup=100,
                           eval_every=250, seed=seed, device=device)
    if profile == "paper":
        total = int(20000 * steps_scale)
        return TrainConfig(profile="paper", stages=curriculum(total), batch_size=256, lr=1e-3, warmup=500,
                           eval_every=500, seed=seed, device=device)
    raise ValueError(f"unknown profile {profile!r}: allowed 'cpu' and 'paper'.")
