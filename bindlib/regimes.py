"""The five training regimes of the headline table and where their checkpoints and results live.

Every regime shares stage 1 (the text recipe, bindlib.recipes) and differs in what follows it:

- ``text_only``: stage 1 alone (the committed text checkpoints);
- ``text_only_matched``: stage 1, then more text for as many steps as the image regimes add
  (the compute-matched control the paper lacked);
- ``noise_text``: stage 1, then text with unattendable NOISE tokens for those steps;
- ``image_text``: stage 1, then the image stage (with feature grounding), then 20% image / 80% text;
- ``noise_image_text``: as image_text, with noise in every text batch after stage 1.
"""
from __future__ import annotations

from pathlib import Path

from . import io

REGIMES = ("text_only", "text_only_matched", "noise_text", "image_text", "noise_image_text")
IMAGE_REGIMES = ("image_text", "noise_image_text")
NOISE_REGIMES = ("noise_text", "noise_image_text")
MAIN_ENCODER = "project_cnn"  # the encoder of the headline table (the others are per-encoder results)
TABLE_ENCODERS = ("project_cnn", "project_vit", "random_cnn", "pixels")
# The paper's name for each regime's row of its OOD table (bindlib.paper.OOD_ACCURACY keys).
PAPER_ROW = {"text_only": "text_only", "noise_text": "noise_text", "image_text": "image_text",
             "noise_image_text": "noise_image_text", "text_only_matched": None}


def check_regime(regime: str) -> str:
    if regime not in REGIMES:
        raise ValueError(f"unknown regime {regime!r}: allowed {REGIMES}.")
    return regime


def run_tag(regime: str, seed: int, profile: str = "cpu", encoder: str | None = None) -> str:
    """The name shared by a run's checkpoint folder and results file.

    Text regimes: ``{regime}_{profile}_s{seed}``; image regimes add the encoder:
    ``{regime}_{encoder}_{profile}_s{seed}``.
    """
    check_regime(regime)
    if regime in IMAGE_REGIMES:
        return f"{regime}_{encoder or MAIN_ENCODER}_{profile}_s{seed}"
    return f"{regime}_{profile}_s{seed}"


def checkpoint_dir(regime: str, seed: int, profile: str = "cpu", encoder: str | None = None) -> Path:
    return io.CHECKPOINTS_DIR / run_tag(regime, seed, profile, encoder)
