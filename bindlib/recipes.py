"""Training recipes: the curriculum and settings each profile uses by default, and named variants.

Trained directly, the two-hop task sits on a loss plateau that outlasts a CPU budget
(chapter 2). The recipe breaks it in four stages, all with packed queries (every object of a
prompt asked under every query kind in one pass):

1. ``subskills``: the two-hop query together with its one-hop parts (colour -> shape,
   shape -> item) on prompts with few objects, so each hop forms with its own gradient;
2. ``compose``: the same, plus deep supervision: a middle layer of the two-hop query is asked
   for the intermediate shape, which puts hop one's result where hop two can read it;
3. ``full_n``: the same on the full ID range of N;
4. ``two_hop``: the task alone, without aids, until ID accuracy reaches 99.5%.
"""
from __future__ import annotations

from .train import Stage, TrainConfig

SUBSKILL_MIX = {"two_hop": 1.0, "color_to_shape": 1.0, "shape_to_item": 1.0}

# Per-profile settings. The CPU profile is sized to train on a laptop; the paper profile is for a GPU.
PROFILE_SETTINGS = {
    "cpu": dict(steps=(1500, 500, 1500, 1500), batch_size=64, lr=1e-3, warmup=100, eval_every=100, hop_layer=1),
    "paper": dict(steps=(3000, 1000, 3000, 3000), batch_size=256, lr=1e-3, warmup=300, eval_every=250, hop_layer=5),
}
SMALL_N = (2, 3)


def curriculum(steps: tuple, hop_weight: float = 1.0, subskills: bool = True, small_n: bool = True) -> list[Stage]:
    mix = dict(SUBSKILL_MIX) if subskills else {"two_hop": 1.0}
    first_n = SMALL_N if small_n else None
    return [
        Stage("subskills", steps[0], dict(mix), n_range=first_n),
        Stage("compose", steps[1], dict(mix), n_range=first_n, hop_weight=hop_weight),
        Stage("full_n", steps[2], dict(mix), hop_weight=hop_weight),
        Stage("two_hop", steps[3], {"two_hop": 1.0}),
    ]


def recipe(profile: str = "cpu", seed: int = 0, device: str = "cpu", steps_scale: float = 1.0, *,
           task_format: str = "standard", hop_target: str = "shape", hop_layer: int | None = None,
           declared_share: float = 0.0, **aids) -> TrainConfig:
    """The default text-only training config of a profile; ``aids`` switch parts of the curriculum off.

    The keyword arms (all default to the recipe): ``task_format`` ('ordered': the positional positive
    control, see task.FORMATS), ``hop_target`` ('slot': deep supervision asks for the queried object's
    slot instead of its shape), ``hop_layer`` (which block's output deep supervision reads) and
    ``declared_share`` (the shortcut dial: this share of training prompts lists associations in
    declaration order).
    """
    if profile not in PROFILE_SETTINGS:
        raise ValueError(f"unknown profile {profile!r}: allowed {sorted(PROFILE_SETTINGS)}.")
    s = PROFILE_SETTINGS[profile]
    steps = tuple(max(1, int(n * steps_scale)) for n in s["steps"])
    cfg = TrainConfig(profile=profile, stages=curriculum(steps, **aids), batch_size=s["batch_size"], lr=s["lr"],
                      warmup=s["warmup"], min_lr_frac=1.0, eval_every=s["eval_every"], packed=True,
                      hop_layer=s["hop_layer"] if hop_layer is None else hop_layer, seed=seed, device=device,
                      hop_target=hop_target, declared_share=declared_share,
                      task={"format": task_format} if task_format != "standard" else {})
    n_layers = cfg.model_config().n_layers
    if not 0 <= cfg.hop_layer < n_layers:
        raise ValueError(f"hop_layer={cfg.hop_layer} is outside the {profile} model's blocks 0..{n_layers - 1}.")
    return cfg


def arm_suffix(task_format: str = "standard", hop_target: str = "shape", hop_weight: float | None = None,
               hop_layer: int | None = None, declared_share: float | None = None) -> str:
    """The name suffix of a recipe arm (empty for the recipe itself), so no arm overwrites another's files:
    ``_ordered``, ``_hopslot``, ``_hopw0``, ``_hopl2``, ``_decl090`` (declared share 0.90; any given share, 0 included, is named), combined in this order."""
    parts = []
    if task_format != "standard":
        parts.append(task_format)
    if hop_target != "shape":
        parts.append(f"hop{hop_target}")
    if hop_weight is not None:
        parts.append(f"hopw{hop_weight:g}".replace(".", "p"))
    if hop_layer is not None:
        parts.append(f"hopl{hop_layer}")
    if declared_share is not None:
        parts.append(f"decl{round(100 * declared_share):03d}")
    return "".join(f"_{x}" for x in parts)


# Named variants for the learning-curve comparison (python -m bindlib curve --variant NAME).
VARIANTS = {
    "direct": {"about": "the two-hop query alone, full ID range, one query per prompt (the naive baseline)"},
    "no_deep_supervision": {"about": "the recipe without deep supervision of the intermediate hop"},
    "no_subskills": {"about": "the recipe without the one-hop sub-skill queries"},
    "recipe": {"about": "the full recipe"},
}


def variant(name: str, profile: str = "cpu", seed: int = 0, device: str = "cpu", steps: int | None = None) -> TrainConfig:
    """A variant of the recipe, with the same total step budget (``steps`` overrides it)."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}: allowed {sorted(VARIANTS)}.")
    base = recipe(profile, seed=seed, device=device)
    scale = (steps or base.total_steps) / base.total_steps
    aids = {"no_deep_supervision": {"hop_weight": 0.0}, "no_subskills": {"subskills": False}}.get(name, {})
    cfg = recipe(profile, seed=seed, device=device, steps_scale=scale, **aids)
    if name == "direct":
        cfg.packed = False
        cfg.stages = [Stage("two_hop", cfg.total_steps, {"two_hop": 1.0})]
    cfg.early_stop = None  # curves run their whole budget, so variants compare at equal steps
    return cfg
