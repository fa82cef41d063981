"""The settings a user changes end to end, each read from the dataclass field that holds it.

Its choices and help come from the field's metadata, its default from the field. Every command (train,
reproduce, interp, image-stage, ...) adds these flags through ``add_setting``, so a choice added to the
dataclass (e.g. to bindlib.core.model.POS_ENCODINGS) shows up in every command at once.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import fields
from pathlib import Path

from ..core.model import ModelConfig
from ..training.train import TrainConfig
from ..core.relayout import VisionConfig

SETTINGS = {
    "pos_encoding": (ModelConfig, "pos_encoding"),  # --pos-encoding
    "hop_target": (TrainConfig, "hop_target"),  # --hop-target
    "encoder": (VisionConfig, "encoder"),  # --encoder (--encoders where a command takes several)
    "image_positions": (VisionConfig, "image_positions"),  # --image-positions
    "image_tokens": (VisionConfig, "image_tokens"),  # --image-tokens
    "noise_positions": (VisionConfig, "noise_positions"),  # --noise-positions
}


def setting_field(name: str):
    cls, attr = SETTINGS[name]
    return next(f for f in fields(cls) if f.name == attr)


def add_setting(parser, name: str, flag: str | None = None, more_help: str | None = None, **kw):
    """Add the flag of setting ``name`` (SETTINGS) to ``parser``; ``kw`` (e.g. default, nargs) go to argparse."""
    f = setting_field(name)
    kw.setdefault("default", f.default)
    text = f.metadata["help"] + (f"; {more_help}" if more_help else "")
    parser.add_argument(flag or "--" + name.replace("_", "-"), choices=f.metadata["choices"], help=text, **kw)


# ---------------------------------------------------------------- step counts and scales, checked as they are parsed
SMOKE_STEPS = 100  # a curve or image stage shorter than this is a test-sized run: it writes under runs/smoke/
SMOKE_ROOT = Path("runs/smoke")  # small runs (--steps-scale < 1, --tiny, few steps) write here: git ignores runs/


def positive_int(text: str) -> int:
    """argparse ``type`` of a step count: a whole number >= 1 (0 once meant "the full budget", silently)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse ``type`` of a step scale: a finite number > 0 (not inf or nan)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value
