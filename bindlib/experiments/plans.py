"""What ``train`` and ``curve`` run, from their flags: the TrainConfig and the names a run writes.

``command_config`` rebuilds the config of a run from its recorded command line (``progress --log``).
"""
from __future__ import annotations

import shlex

from ..core.profiles import pos_suffix


ARM_KEYS = ("format", "hop_target", "hop_weight", "hop_layer", "declared_share")


def train_plan(args, device: str = "cpu"):
    """What ``train`` runs, from its flags: (TrainConfig, name tag, variant or None)."""
    from .recipes import arm_recipe

    if args.steps_scale <= 0:
        raise ValueError(f"--steps-scale {args.steps_scale:g} must be > 0 (1 is the full recipe).")
    # the ordered format's default: no deep supervision (its shape target is not on the only route there)
    cfg, arm = arm_recipe(args.profile, args.seed, device, args.steps_scale, **{k: getattr(args, k) for k in ARM_KEYS})
    tag = f"text_only_{args.profile}_s{args.seed}" + (f"_steps{args.steps_scale:g}x" if args.steps_scale != 1 else "")
    variant = None
    if pos_suffix(args.pos_encoding):  # an ablation: its own names and kind, so the table's loaders never see it
        cfg.model = cfg.model.replace(pos_encoding=args.pos_encoding)
        variant = pos_suffix(args.pos_encoding)[1:]
        tag += pos_suffix(args.pos_encoding)
    if arm:  # a recipe arm (one of its controls): its own names, marked as a variant like the ablations
        variant = variant + arm if variant else arm[1:]
        tag += arm
    if args.leave_at is not None:  # a stage's budget is a ceiling, not a duration
        if not 0.0 < args.leave_at <= 1.0:
            raise ValueError(f"--leave-at {args.leave_at:g} is a two-hop ID accuracy and must lie in (0, 1]; "
                             "e.g. --leave-at 0.995.")
        for st in cfg.stages[:-1]:
            st.until = args.leave_at
    if args.until_stage:
        names = [st.name for st in cfg.stages]
        if args.until_stage not in names:
            raise ValueError(f"unknown stage {args.until_stage!r}: the {args.profile} recipe has stages {names}.")
        cfg.stages = cfg.stages[: names.index(args.until_stage) + 1]
        cfg.early_stop = None
        tag += f"_{args.until_stage}"
    return cfg, tag, variant


def curve_plan(args, device: str = "cpu"):
    """What ``curve`` runs, from its flags: (TrainConfig, results name)."""
    from .recipes import variant

    cfg = variant(args.variant, seed=args.seed, device=device, steps=args.steps)
    layers = ""
    if args.n_layers is not None and args.n_layers != cfg.model_config().n_layers:
        cfg.model = cfg.model.replace(n_layers=args.n_layers)
        cfg.model_config()  # a bad depth fails here, before anything is written
        layers = f"_L{args.n_layers}"
    return cfg, args.results or f"curve_{args.variant}{layers}_s{args.seed}"


def command_config(run_command: str, build_parser) -> tuple[dict, dict]:
    """The config a ``train`` or ``curve`` command line trains with, and its model's config (both as dicts);
    ``build_parser`` is the command line's parser (bindlib.cli), passed in so this module stays below it."""
    words = shlex.split(run_command)
    words = words[words.index("bindlib") + 1:] if "bindlib" in words else words
    if not words or words[0] not in ("train", "curve"):
        raise ValueError(f"--run-command {run_command!r} is not a train or curve command; pass the run's own "
                         f"command line, e.g. 'python -m bindlib curve --variant direct --steps 40000 ...'.")
    args = build_parser("python -m bindlib").parse_args(words)
    cfg = train_plan(args)[0] if words[0] == "train" else curve_plan(args)[0]
    return cfg.to_dict(), cfg.model_config().to_dict()
