"""The command line's parser: one flag per setting, no prefix matching, one-line usage errors."""
from __future__ import annotations

import argparse

from .core.profiles import PROFILE_NAMES, PROJECT_ENCODERS, REGIMES, TABLE_ENCODERS
from .experiments.settings import SMOKE_STEPS, add_setting, positive_float, positive_int

class UsageError(Exception):
    """A command line argparse rejects."""


class Parser(argparse.ArgumentParser):
    """No prefix matching (``--step`` is not ``--steps-scale``), and a bad flag is one line, exit code 2."""

    def __init__(self, *a, **kw):
        kw.setdefault("allow_abbrev", False)
        super().__init__(*a, **kw)

    def error(self, message):
        raise UsageError(f"{message} (`{self.prog} --help` lists the flags)")


# The other arms of ``python -m bindlib train`` (the recipe's controls; --hop-target is a setting): flag, options.
ARM_ARGS = (
    ("--format", dict(default="standard", choices=["standard", "ordered"],
                      help="task format; ordered (items in declaration order, no shapes) is the positional positive "
                           "control, trained without deep supervision unless --hop-weight says otherwise (_ordered)")),
    ("--hop-weight", dict(type=float, default=None, help="weight of deep supervision (recipe: 1; 0: off; _hopw<x>)")),
    ("--hop-layer", dict(type=int, default=None, help="block whose output deep supervision reads (cpu 1; _hopl<x>)")),
    ("--declared-share", dict(type=float, default=None,
                              help="shortcut dial: share of training prompts with associations in declaration order "
                                   "(_decl<100p>)")),
)

RESULTS_COMMANDS = ("train", "curve", "bench", "evaluate", "pretrain-encoder", "reproduce", "interp",
                    "bench-image", "image-stage", "encoder-ceiling", "expand-vocab", "pretrained", "progress", "migrate",
                    "ood-axes", "interp-buckets", "run")


def build_parser(description: str) -> Parser:
    p = Parser(prog="python -m bindlib", description=description)
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", help="train a text-only model with the profile's recipe, then evaluate it")
    t.add_argument("--profile", default="cpu", choices=PROFILE_NAMES)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto, cpu or cuda")
    t.add_argument("--steps-scale", type=positive_float, default=1.0, help="multiply every stage's step budget")
    t.add_argument("--run-dir", help="working folder for resumable state (default runs/...)")
    t.add_argument("--checkpoint", help="final bf16 checkpoint folder (default data/checkpoints/...; "
                                        "runs/smoke/checkpoints/... below --steps-scale 1)")
    t.add_argument("--results", help="results file name (default training_text_only_<profile>_s<seed>[_<variant>])")
    t.add_argument("--results-dir", help="results folder (default data/results; runs/smoke/results below scale 1)")
    t.add_argument("--fresh", action="store_true", help="ignore an existing run folder instead of resuming")
    add_setting(t, "pos_encoding")
    t.add_argument("--until-stage", help="stop after this curriculum stage (saves an intermediate checkpoint)")
    t.add_argument("--leave-at", type=float, default=None,
                   help="leave every stage but the last once two-hop ID accuracy reaches this (e.g. 0.995); the "
                        "last stage's early stop then ends the run (default: every stage runs its full budget)")
    add_setting(t, "hop_target")
    for flag, kw in ARM_ARGS:  # the recipe's arms (its controls), each named by its suffix
        t.add_argument(flag, **kw)
    t.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    t.add_argument("--quiet", action="store_true", help="log JSON lines instead of a progress bar")

    c = sub.add_parser("curve", help="train a named variant and record its learning curve (sub-skill accuracies)")
    c.add_argument("--variant", required=True, help="a name from bindlib.experiments.recipes.VARIANTS")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--steps", type=positive_int, default=None,
                   help=f"override the variant's total step budget (below {SMOKE_STEPS}: a test run, written under runs/smoke/)")
    c.add_argument("--n-layers", type=int, default=None,
                   help="a deeper (or shallower) model than the profile's; the default name gets _L<n>")
    c.add_argument("--device", default="auto")
    c.add_argument("--threads", type=int, default=0)
    c.add_argument("--run-dir", help="resumable working folder (default: none, no resume)")
    c.add_argument("--results", help="results file name in data/results (default curve_<variant>[_L<n>]_s<seed>)")
    c.add_argument("--quiet", action="store_true")

    b = sub.add_parser("bench", help="measure training steps per second for each profile")
    b.add_argument("--profile", action="append", choices=PROFILE_NAMES, help="repeatable (default: both)")
    b.add_argument("--steps", type=positive_int, default=20)
    b.add_argument("--warmup", type=int, default=3)
    b.add_argument("--device", default="auto")
    b.add_argument("--threads", type=int, default=0)
    b.add_argument("--results", default="throughput_cpu")

    e = sub.add_parser("evaluate", help="evaluate a checkpoint and write a results file")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--device", default="auto")
    e.add_argument("--per-n", type=int, default=256)
    e.add_argument("--results", help="results file name in data/results")
    e.add_argument("--shift", type=int, nargs="*", default=None, metavar="K",
                   help="only the position-shift axis: ID accuracy with every position id moved up by K (default "
                        "0 8 32 64; 0 is always included); writes position_shift_<checkpoint>.json")

    oa = sub.add_parser("ood-axes", help="the two OOD axes of checkpoints: count (accuracy per N) and distance "
                                         "(a gap after CTX_END), with the failure diagnostics; one file each")
    oa.add_argument("--checkpoint", required=True, nargs="+", help="one or more checkpoint folders")
    oa.add_argument("--per-cell", type=positive_int, default=500, help="prompts per (N, gap) cell")
    oa.add_argument("--grid", action="store_true", help="also the N x G grid (count and distance apart)")
    oa.add_argument("--device", default="auto")
    oa.add_argument("--threads", type=int, default=0)

    ib = sub.add_parser("interp-buckets", help="interchange, rebind and the position-id swap in each count and gap "
                                               "bucket (bindlib.interp.buckets); interchange_buckets_<checkpoint>.json")
    ib.add_argument("--checkpoint", required=True, nargs="+", help="one or more checkpoint folders")
    ib.add_argument("--pairs", type=positive_int, default=300, help="pairs per bucket (interchange and rebind)")
    ib.add_argument("--draw-factor", type=positive_int, default=8,
                    help="candidate pairs drawn at most, as a multiple of --pairs (a failing bucket keeps what it finds)")
    ib.add_argument("--device", default="auto")
    ib.add_argument("--threads", type=int, default=0)

    pe = sub.add_parser("pretrain-encoder", help="pretrain a project encoder (per-patch colour/shape) and freeze it")
    pe.add_argument("--name", required=True, choices=PROJECT_ENCODERS)
    pe.add_argument("--profile", default="cpu", choices=PROFILE_NAMES,
                    help="cpu: 112 px, 49 tokens, data/encoders/<name>; paper: 224 px, 196 tokens, <name>_paper")
    pe.add_argument("--seed", type=int, default=0)
    pe.add_argument("--max-steps", type=positive_int, default=None, help="step cap (default bindlib.vision.pretrain.PretrainConfig)")
    pe.add_argument("--time-budget", type=float, default=300.0, help="stop after this many seconds")
    pe.add_argument("--target", type=float, default=0.95, help="stop once held-out object-patch accuracy reaches it")
    pe.add_argument("--eval-every", type=int, default=100)
    pe.add_argument("--eval-scenes", type=int, default=512)
    pe.add_argument("--batch-size", type=int, default=32)
    pe.add_argument("--lr", type=float, default=3e-3)
    pe.add_argument("--device", default="cpu")
    pe.add_argument("--threads", type=int, default=0)
    pe.add_argument("--out", help="output folder (default data/encoders/<name>[_paper])")
    pe.add_argument("--results", help="results file name (default encoder_<name>_<profile>)")
    pe.add_argument("--results-dir", help="results folder (default data/results)")
    pe.add_argument("--tiny", action="store_true", help="a tiny trunk (tests only; writes under runs/smoke/)")
    pe.add_argument("--quiet", action="store_true")

    r = sub.add_parser("reproduce", help="train and evaluate every regime x encoder x seed of the headline table")
    r.add_argument("--profile", default="cpu", choices=PROFILE_NAMES)
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    r.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=list(REGIMES))
    add_setting(r, "encoder", "--encoders", "one or more, for the image regimes", nargs="+", default=list(TABLE_ENCODERS))
    r.add_argument("--ablate-grounding", type=int, nargs="*", default=[], metavar="SEED",
                   help="also run image_text without feature grounding for these seeds")
    r.add_argument("--steps-scale", type=positive_float, default=1.0, help="multiply the post-text stages' step budgets")
    r.add_argument("--image-stage", choices=["short", "learning"], default="short",
                   help="short: the first grid's 150 + 150 steps (every encoder); learning: the image stage that "
                        "learns (bindlib.experiments.headline; cpu profile, the grid-aligned CNN unless --encoders names one)")
    r.add_argument("--force", action="store_true", help="rerun runs whose results file exists")
    add_setting(r, "pos_encoding", more_help="every regime starts from text_only_<profile>_s<seed>_<x>pos (trained if "
                                             "missing; rope: the table's runs)")
    add_setting(r, "hop_target", more_help="every regime starts from text_only_<profile>_s<seed>_hop<x> (trained if "
                                           "missing); names get the same suffix")
    r.add_argument("--device", default="auto")
    r.add_argument("--threads", type=int, default=0)
    r.add_argument("--quiet", action="store_true", help="log JSON lines instead of progress bars")

    ip = sub.add_parser("interp", help="interchange interventions, attention knockouts and probes of a checkpoint")
    ip.add_argument("--regime", help="text_only, noise_text, image_text, noise_image_text, text_only_matched")
    ip.add_argument("--seed", type=int, default=0)
    ip.add_argument("--profile", default="cpu", choices=PROFILE_NAMES)
    add_setting(ip, "encoder", more_help="of an image regime (default: the main encoder)")
    add_setting(ip, "pos_encoding", more_help="the checkpoint of that encoding (as train and reproduce name it)")
    add_setting(ip, "hop_target", more_help="the checkpoint trained with that hop target (as train and reproduce "
                                            "name it)")
    ip.add_argument("--all", action="store_true", help="every existing checkpoint of the 4 regimes, seeds 0-2")
    ip.add_argument("--missing-only", action="store_true",
                    help="with --all: skip checkpoints whose results files exist and match their sha256")
    ip.add_argument("--kinds", default="interchange,knockout,probe", help="comma-separated subset")
    ip.add_argument("--pairs", type=positive_int, default=600, help="ID-length interchange pairs")
    ip.add_argument("--ood-pairs", type=int, default=None, help="OOD-length pairs (default 2/5 of --pairs)")
    ip.add_argument("--swap-prompts", type=int, default=384)
    ip.add_argument("--knockout-prompts", type=int, default=128)
    ip.add_argument("--probe-prompts", type=int, default=320)
    ip.add_argument("--all-pairs", action="store_true",
                    help="keep pairs the model gets wrong (for untrained models; the default keeps correct ones only)")
    ip.add_argument("--checkpoint", help="a checkpoint folder instead of the regime's (named as --regime/--seed)")
    ip.add_argument("--variant", help="the folder <regime>_<profile>_s<seed>_<variant> (e.g. ordered, decl090); with --all too")
    ip.add_argument("--rebind-pairs", type=int, default=400, help="ID-length rebind pairs (standard format)")
    ip.add_argument("--declared-pairs", type=int, default=0, help="pairs on declared-order prompts (the shortcut dial)")
    ip.add_argument("--results-dir", help="where to write (default data/results)")
    ip.add_argument("--device", default="cpu")
    ip.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")

    from .experiments.imagestage import add_commands

    add_commands(sub)  # bench-image, image-stage, encoder-ceiling (each with its own handler)
    from .experiments.registry import add_command as add_run_command

    add_run_command(sub)  # run: one named experiment
    from .experiments.expand import add_command as add_expand_command

    add_expand_command(sub)  # expand-vocab
    from .pretrained.runs import add_parser as add_pretrained_parser

    add_pretrained_parser(sub)  # chapter 8: a pretrained LLM/VLM pair
    from .training.state import add_command as add_progress_command

    add_progress_command(sub)  # progress: an unfinished run's curve, on record

    sb = sub.add_parser("student-book", help="write the student edition (exercise solutions removed) to a folder")
    sb.add_argument("--out", default="_student", help="where to write it (default _student/, ignored by git)")

    m = sub.add_parser("migrate", help="make paths in results and checkpoint metadata repo-relative, add manifests")
    m.add_argument("--checkpoints-dir", default=None, help="default data/checkpoints")
    m.add_argument("--results-dir", default=None, help="default data/results")

    for name in RESULTS_COMMANDS:
        sp = sub.choices[name]
        sp.add_argument("--allow-dirty", action="store_true",
                        help="run from a tree with uncommitted changes (the diff is stored beside the results)")
        sp.add_argument("--overwrite", action="store_true", help="replace committed checkpoints and results files")
    return p
