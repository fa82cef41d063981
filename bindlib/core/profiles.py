"""Every table that differs between the cpu and paper profiles, every regime list, where files live,
how runs are named, and the numbers the paper reports. It imports nothing from bindlib, so every
other module may read it.

Paper numbers carry their source: "paper" = the abstract or an official listing; "summary" =
detailed secondary summaries of the full text (likely right, unverified). See SPEC §1.
"""
from __future__ import annotations

import functools
import itertools
from pathlib import Path

# ---------------------------------------------------------------- where files live
REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_ROOT / "data"
RESULTS_DIR = DATA_DIR / "results"
CHECKPOINTS_DIR = DATA_DIR / "checkpoints"
ENCODERS_DIR = DATA_DIR / "encoders"  # project-pretrained encoders: <name>/encoder.json + encoder.safetensors

# ---------------------------------------------------------------- the two profiles
PROFILE_NAMES = ("cpu", "paper", "deep", "cpu216")
# The paper's architecture [summary]; the CPU profile is ours, sized to train live in a chapter.
# "deep" is the paper's depth and vocabulary trained with the CPU recipe on one CPU thread: 12 blocks,
# 216 colours and 216 shapes from the first step (the cpu profile sees 16 of each). "cpu216" is its control for
# depth: the cpu profile's 4 blocks with the deep profile's vocabulary and budgets, so depth and vocabulary can be
# read apart.
MODEL = {
    "paper": dict(n_layers=12, d_model=128, n_heads=4, d_ff=512),
    "cpu": dict(n_layers=4, d_model=128, n_heads=4, d_ff=512),
    "deep": dict(n_layers=12, d_model=128, n_heads=4, d_ff=512),
    "cpu216": dict(n_layers=4, d_model=128, n_heads=4, d_ff=512),
}
# What a profile changes of the task (bindlib.core.task.TaskConfig): the deep profile's vocabulary.
TASK = {"cpu": {}, "paper": {}, "deep": dict(n_colors=216, n_shapes=216), "cpu216": dict(n_colors=216, n_shapes=216)}
# The text recipe (bindlib.experiments.recipes): steps of its four stages and the optimiser settings.
RECIPE = {
    "cpu": dict(steps=(1500, 500, 1500, 1500), batch_size=64, lr=1e-3, warmup=100, eval_every=100, hop_layer=1),
    "paper": dict(steps=(3000, 1000, 3000, 3000), batch_size=256, lr=1e-3, warmup=300, eval_every=250, hop_layer=5),
    # The cpu recipe at twice its stage budgets, each a ceiling (leave_at: a stage ends once two-hop ID accuracy
    # reaches it). Deep supervision reads block 5, the last block of the first half: the cpu recipe reads
    # block 1 of 4, the end of its first half, so each hop gets the same share of the depth.
    "deep": dict(steps=(3000, 1000, 3000, 3000), batch_size=64, lr=1e-3, warmup=100, eval_every=100, hop_layer=5,
                 leave_at=0.995),
    # the deep recipe on 4 blocks: deep supervision at block 1, the end of the first half, as in the cpu recipe
    "cpu216": dict(steps=(3000, 1000, 3000, 3000), batch_size=64, lr=1e-3, warmup=100, eval_every=100, hop_layer=1,
                   leave_at=0.995),
}
# Steps added after the text recipe. Image regimes: an image stage then a 20% image / 80% text mix;
# text regimes get the same total as more text (compute-matched).
REGIME = {
    "cpu": dict(image_steps=150, mix_steps=150, batch_size=32, lr=1e-3, warmup=20, eval_every=50, eval_size=128),
    "paper": dict(image_steps=3000, mix_steps=3000, batch_size=256, lr=1e-3, warmup=300, eval_every=250, eval_size=512),
    "deep": dict(image_steps=150, mix_steps=150, batch_size=32, lr=1e-3, warmup=20, eval_every=50, eval_size=128),
    "cpu216": dict(image_steps=150, mix_steps=150, batch_size=32, lr=1e-3, warmup=20, eval_every=50, eval_size=128),
}
# The rendered context: canvas and patch (one image token per patch). "cpu": 112 px, a 7 x 7 grid of
# 49 tokens; "paper": the paper's 224 px input, 14 x 14 = 196 tokens, as the hub encoders see it.
VISION = {"cpu": dict(canvas=112, patch=16), "paper": dict(canvas=224, patch=16), "deep": dict(canvas=112, patch=16),
          "cpu216": dict(canvas=112, patch=16)}


def check_profile(profile: str) -> str:
    if profile not in PROFILE_NAMES:
        raise ValueError(f"unknown profile {profile!r}: allowed {PROFILE_NAMES}.")
    return profile


def image_token_count(profile: str = "cpu") -> int:
    p = VISION[check_profile(profile)]
    return (p["canvas"] // p["patch"]) ** 2


# ---------------------------------------------------------------- regimes
REGIMES = ("text_only", "text_only_matched", "noise_text", "image_text", "noise_image_text")
IMAGE_REGIMES = ("image_text", "noise_image_text")
NOISE_REGIMES = ("noise_text", "noise_image_text")
# The four regimes of the paper's table, in the order the interpretability chapters show them.
ANALYSED_REGIMES = ("text_only", "noise_text", "image_text", "noise_image_text")
SEEDS = (0, 1, 2)
# Every frozen image encoder by name (bindlib.vision.encoders builds each): the paper's hub encoders (dinov2
# stands in for dinov3 where that is unavailable), the controls, and the encoders this project pretrains.
PROJECT_ENCODERS = ("project_cnn", "project_vit", "project_cnn_grid")
ENCODERS = ("resnet152", "vit_b16", "dinov3", "dinov2", "random_cnn", "pixels", *PROJECT_ENCODERS)
MAIN_ENCODER = "project_cnn"  # the default encoder: that of the headline table (the others are per-encoder results)
TABLE_ENCODERS = (MAIN_ENCODER, "project_vit", "random_cnn", "pixels")
# The paper's name for each regime's row of its OOD table (OOD_ACCURACY keys).
PAPER_ROW = {"text_only": "text_only", "noise_text": "noise_text", "image_text": "image_text",
             "noise_image_text": "noise_image_text", "text_only_matched": None}


def check_regime(regime: str) -> str:
    if regime not in REGIMES:
        raise ValueError(f"unknown regime {regime!r}: allowed {REGIMES}.")
    return regime


def regime_order(regime: str) -> int:
    return REGIMES.index(regime) if regime in REGIMES else len(REGIMES)


# ---------------------------------------------------------------- run names
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
    return CHECKPOINTS_DIR / run_tag(regime, seed, profile, encoder)


# ---------------------------------------------------------------- the paper's numbers
# Text-only OOD accuracy (N > 8, text modality, averaged over N), per training regime.
OOD_ACCURACY = {
    "text_only": {"value": 0.372, "source": "paper"},
    "noise_text": {"value": 0.575, "source": "summary"},
    "image_text": {"value": 0.695, "source": "paper"},
    "noise_image_text": {"value": 0.836, "source": "summary"},
}
# In-distribution accuracy of the text-only model: "~100%" in the abstract.
TEXT_ONLY_ID_ACCURACY = {"value": 1.0, "source": "paper", "approximate": True}
# The final vocabulary after the curriculum's expansion stage.
VOCABULARY = {"n_colors": 216, "n_shapes": 216, "n_items": 32, "source": "summary"}


def paper_value(regime: str) -> float:
    if regime not in OOD_ACCURACY:
        raise ValueError(f"the paper reports no OOD accuracy for regime {regime!r}; known: {sorted(OOD_ACCURACY)}.")
    return OOD_ACCURACY[regime]["value"]


# ---------------------------------------------------------------- the positional-encoding axis
# bindlib.core.model implements them; the table's encoding is RoPE, the others are an axis named _<x>pos
DEFAULT_POS_ENCODING = "rope"  # the default of every model, run and record: the table's RoPE
POS_ENCODINGS = (DEFAULT_POS_ENCODING, "learned", "none")


def check_pos_encoding(pos_encoding: str) -> str:
    if pos_encoding not in POS_ENCODINGS:
        raise ValueError(f"unknown pos_encoding {pos_encoding!r}: allowed {POS_ENCODINGS}.")
    return pos_encoding


def pos_suffix(pos_encoding: str = DEFAULT_POS_ENCODING) -> str:
    """``_learnedpos`` / ``_nonepos`` for the positional-encoding axis (empty for the default): a name computed
    from the setting, never read back (a checkpoint's model.json holds the setting itself)."""
    return "" if check_pos_encoding(pos_encoding) == DEFAULT_POS_ENCODING else f"_{pos_encoding}pos"


def pos_setting(pos_encoding: str = DEFAULT_POS_ENCODING) -> dict:
    """``{"pos_encoding": x}`` where x is not the default, else ``{}``: what model overrides, saved configs and
    results records hold (so the default runs' files stay as they were)."""
    return {} if check_pos_encoding(pos_encoding) == DEFAULT_POS_ENCODING else {"pos_encoding": pos_encoding}


# ---------------------------------------------------------------- the vocabulary's tables (bindlib.core.task re-exports them)
@functools.lru_cache(maxsize=None)
def cube_colors() -> tuple[tuple[int, int, int], ...]:
    """The 6x6x6 RGB cube (216 colours), ordered so that any prefix is spread out.

    Greedy farthest-point order from black: the first 16 colours are far apart,
    which keeps small vocabularies visually distinct when a later chapter renders them.
    """
    levels = [0, 51, 102, 153, 204, 255]
    cube = list(itertools.product(levels, repeat=3))
    order = [cube.pop(0)]
    dist = [sum((a - b) ** 2 for a, b in zip(c, order[0])) for c in cube]
    while cube:
        k = max(range(len(cube)), key=lambda i: (dist[i], -i))
        chosen = cube.pop(k)
        dist.pop(k)
        order.append(chosen)
        dist = [min(d, sum((a - b) ** 2 for a, b in zip(c, chosen))) for c, d in zip(cube, dist)]
    return tuple(order)


SHAPE_KINDS = ("poly", "star", "flower", "gear", "cross", "ring")
SHAPE_STYLES = ("solid", "hollow", "split")


@functools.lru_cache(maxsize=None)
def shape_family() -> tuple[dict, ...]:
    """A procedural family of 6 kinds x 12 sizes x 3 styles = 216 shapes.

    Ordered so a prefix cycles through kinds first: small vocabularies get
    shapes that differ in kind, not only in a vertex count.
    """
    out = []
    for style in SHAPE_STYLES:
        for j in range(12):
            for kind in SHAPE_KINDS:
                k = j + (3 if kind in ("poly", "flower") else 4 if kind in ("star", "ring") else 5 if kind == "gear" else 2)
                out.append({"kind": kind, "k": k, "style": style, "name": f"{kind}{k}" + ("" if style == "solid" else f"-{style}")})
    return tuple(out)
