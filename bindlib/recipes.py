"""Training recipes: the curriculum and settings each profile uses by default, and named variants.

The two-hop task sits on a long loss plateau when trained directly (chapter 2).
The recipe breaks it with a *sub-skill curriculum*: each prompt is asked the two-hop
query and its two one-hop parts (colour -> shape in the context, shape -> item in the
associations) at once (packed queries), first on prompts with few objects, then on
the full ID range, and finally on the two-hop query alone.
"""
from __future__ import annotations

from .train import Stage, TrainConfig

SUBSKILL_MIX = {"two_hop": 1.0, "color_to_shape": 1.0, "shape_to_item": 1.0}

# Per-profile settings of the recipe. The CPU profile is sized to train live on a laptop.
PROFILE_SETTINGS = {
    "cpu": dict(total=6000, batch_size=64, lr=1e-3, warmup=100, eval_every=250, model={}),
    "paper": dict(total=20000, batch_size=256, lr=1e-3, warmup=500, eval_every=500, model={}),
}


def curriculum(total: int, small_n: tuple = (2, 3), fractions=(0.4, 0.4)) -> list[Stage]:
    """Sub-skills on small N, then sub-skills on the full ID range, then the two-hop task alone."""
    a, b = (max(1, int(total * f)) for f in fractions)
    return [
        Stage("small_n", a, dict(SUBSKILL_MIX), n_range=small_n, until=None),
        Stage("full_n", b, dict(SUBSKILL_MIX)),
        Stage("two_hop", max(1, total - a - b), {"two_hop": 1.0}),
    ]


def recipe(profile: str = "cpu", seed: int = 0, device: str = "cpu", steps_scale: float = 1.0) -> TrainConfig:
    """The default text-only training config of a profile."""
    if profile not in PROFILE_SETTINGS:
        raise ValueError(f"unknown profile {profile!r}: allowed {sorted(PROFILE_SETTINGS)}.")
    s = PROFILE_SETTINGS[profile]
    return TrainConfig(profile=profile, stages=curriculum(max(3, int(s["total"] * steps_scale))),
                       batch_size=s["batch_size"], lr=s["lr"], warmup=s["warmup"], min_lr_frac=1.0,
                       eval_every=s["eval_every"], packed=True, model=dict(s["model"]), seed=seed, device=device)


# Named variants for the learning-curve comparison (python -m bindlib curve --variant NAME).
VARIANTS = {
    "recipe": {"about": "the full recipe"},
    "direct": {"about": "two-hop query only, full ID range, one query per prompt (the naive baseline)"},
    "no_subskills": {"about": "the recipe without the one-hop sub-skill queries"},
    "no_small_n": {"about": "the recipe without the small-N first stage"},
}


def variant(name: str, profile: str = "cpu", seed: int = 0, device: str = "cpu", steps: int | None = None) -> TrainConfig:
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}: allowed {sorted(VARIANTS)}.")
    cfg = recipe(profile, seed=seed, device=device)
    total = steps or cfg.total_steps
    cfg = recipe(profile, seed=seed, device=device, steps_scale=total / cfg.total_steps)
    cfg.early_stop = None  # curves run their whole budget, so variants compare at equal steps
    if name == "direct":
        cfg.packed = False
        cfg.stages = [Stage("two_hop", total, {"two_hop": 1.0})]
    elif name == "no_subskills":
        for st in cfg.stages:
            st.mix = {"two_hop": 1.0}
    elif name == "no_small_n":
        first = cfg.stages.pop(0)
        cfg.stages[0].steps += first.steps
    return cfg
