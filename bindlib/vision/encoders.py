"""Frozen visual encoders: images ``[B, 3, H, W]`` in 0..1 -> patch tokens ``[B, T, D]``.

The paper renders each prompt's context as an image and feeds it through a frozen
encoder (ResNet-152, ViT-B/16 or DINOv3, about 196 patch tokens); a trainable
projector then maps the tokens into the transformer's width. This module has:

    hub encoders       resnet152, vit_b16, dinov3, dinov2   Hugging Face transformers classes
    controls           random_cnn, pixels                  no weights needed
    project encoders   project_cnn, project_vit            small nets we pretrain, in data/encoders/

    enc = get_encoder("vit_b16")            # offline: local folder, then the HF cache, else EncoderUnavailable
    tokens = enc.encode(images)             # [B, enc.n_tokens(), enc.dim], under no_grad
    enc = profile_encoder("project_cnn", profile="cpu")   # 112 px canvas -> 49 tokens of width 128

Two image profiles (RENDER_PROFILES): "cpu", a 112 px canvas cut into 7 x 7 patches of 16 px,
which every chapter uses; "paper", the paper's 224 px input and 14 x 14 = 196 tokens.

The project encoders are pretrained by ``python -m bindlib pretrain-encoder --name NAME``
(bindlib.pretrain): per-patch supervised prediction of the covering object's colour and
shape (or background) on rendered scenes of the task; the heads are discarded and the trunk
is frozen. encoder.json records the objective, the steps and the held-out accuracies.

Every encoder resizes its input to ``enc.image_size`` (as a Hugging Face image
processor would), normalises it itself, and stays frozen and in eval mode even
inside a module that is put in train mode. ``from_config(name, tiny_config(name))``
builds the same model classes with random weights, so shapes can be checked offline.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn as nn

from ..core.io import CheckpointError, atomic_write, atomic_write_json, read_verified, sha256_bytes

from ..core.profiles import ENCODERS, ENCODERS_DIR, VISION
from ..core.task import seeded
from .hub import (HUB_SPECS, PAPER_ENCODERS, WEIGHTS_ENV, HubEncoder, HubSpec, _load_kwargs,  # noqa: F401
                  _model_class, _transformers_class, dinov3_available, hub_encoder, load_hub_model, paper_encoders)
from .nets import (HALF, IMAGENET_MEAN, IMAGENET_STD, ConvNet, ConvNetConfig, EncoderUnavailable,  # noqa: F401
                   FrozenEncoder, NetEncoder, PixelEncoder, SmallViT, SmallViTConfig, build_net, patchify, random_cnn,
                   unpatchify)
from .render import RenderConfig

# ---------------------------------------------------------------- profiles and project-pretrained encoders
# Two image profiles.  "cpu" (the one every chapter runs): 112 px canvas, 16 px objects, 16 px
# patches -> a 7 x 7 grid = 49 patch tokens of width 128.  "paper": the paper's 224 px input,
# 14 x 14 = 196 tokens, as the hub encoders see it.
RENDER_PROFILES = {name: RenderConfig(canvas_size=p["canvas"]) for name, p in VISION.items()}
PROFILES = tuple(RENDER_PROFILES)

# The project encoders as committed in data/encoders/<name>/ (cpu profile) ...
PROJECT_CONFIGS = {
    "project_cnn": ConvNetConfig(patch=16, width=32, dim=128),
    "project_vit": SmallViTConfig(image_size=112, patch=16, dim=128, n_layers=4, n_heads=4),
    # project_cnn's architecture, pretrained and used on grid-aligned scenes (ENCODER_RENDER): one object
    # per 16 px patch, so every object's whole shape lies in one token's cell.
    "project_cnn_grid": ConvNetConfig(patch=16, width=32, dim=128),
}
# Render options an encoder was pretrained with and must be used with (RenderConfig fields).
ENCODER_RENDER = {"project_cnn_grid": {"grid": 16}}
# ... and their paper-scale versions (224 px, 196 tokens), pretrained with --profile paper into
# data/encoders/<name>_paper/.
PAPER_PROJECT_CONFIGS = {
    "project_cnn": ConvNetConfig(patch=16, width=32, dim=256),
    "project_vit": SmallViTConfig(image_size=224, patch=16, dim=128, n_layers=4, n_heads=4),
}
# The random-features control at each profile: project_cnn's architecture, untrained.
RANDOM_CNN_CONFIGS = {"cpu": PROJECT_CONFIGS["project_cnn"], "paper": PAPER_PROJECT_CONFIGS["project_cnn"]}
PRETRAIN_COMMAND = "python -m bindlib pretrain-encoder --name {name}"


def render_config(name: str, profile: str = "cpu") -> RenderConfig:
    """The scenes encoder ``name`` sees at ``profile``: the profile's canvas plus its ENCODER_RENDER options."""
    _check_profile(profile)
    extra = ENCODER_RENDER.get(name, {})
    return RenderConfig(canvas_size=RENDER_PROFILES[profile].canvas_size, **extra) if extra else RENDER_PROFILES[profile]


def _check_profile(profile: str) -> None:
    if profile not in RENDER_PROFILES:
        raise ValueError(f"unknown profile {profile!r}: allowed {PROFILES}.")


def project_config(name: str, profile: str = "cpu"):
    """The architecture config of project encoder ``name`` at ``profile``."""
    _check_profile(profile)
    configs = PROJECT_CONFIGS if profile == "cpu" else PAPER_PROJECT_CONFIGS
    if name not in configs:
        raise ValueError(f"{name!r} is not a project encoder: allowed {tuple(configs)}.")
    return configs[name]


def project_encoder_dir(name: str, profile: str = "cpu") -> Path:
    """Where the committed weights of a project encoder live: data/encoders/<name>[_paper]/."""
    _check_profile(profile)
    return ENCODERS_DIR / (name if profile == "cpu" else f"{name}_{profile}")


def pretrain_command(name: str, profile: str = "cpu") -> str:
    return PRETRAIN_COMMAND.format(name=name) + ("" if profile == "cpu" else f" --profile {profile}")


def project_encoder(name: str, config=None, image_size: int | None = None, seed: int = 0,
                    weights: str | Path | None = None) -> NetEncoder:
    """A project encoder: loaded from ``weights`` (a folder) if given, else randomly initialised."""
    if weights is not None:
        return load_project_encoder(name, weights, image_size=image_size)
    cfg = config or PROJECT_CONFIGS[name]
    if type(cfg) is not type(PROJECT_CONFIGS[name]):
        raise ValueError(f"{name} takes a {type(PROJECT_CONFIGS[name]).__name__}, not a {type(cfg).__name__}.")
    # a CNN takes any size; by default the cpu profile's canvas, which the committed weights were trained on
    size = image_size or getattr(cfg, "image_size", RENDER_PROFILES["cpu"].canvas_size)
    return NetEncoder(name, build_net(cfg, seed), size, weights_id=f"random(seed={seed}, {cfg})")


def save_project_encoder(encoder_or_net: nn.Module, name: str, path: str | Path | None = None,
                         meta: dict | None = None) -> Path:
    """Write <path>/encoder.safetensors, then <path>/encoder.json (config, sha256) last, so the
    sidecar only ever describes a complete weights file (the bindlib.core.io checkpoint convention)."""
    from safetensors.torch import save as st_save

    net = encoder_or_net.net if isinstance(encoder_or_net, NetEncoder) else encoder_or_net
    path = Path(path) if path is not None else ENCODERS_DIR / name
    blob = st_save({k: v.detach().to("cpu", torch.float32).contiguous() for k, v in net.state_dict().items()})
    atomic_write(path / "encoder.safetensors", blob)
    atomic_write_json(path / "encoder.json", {
        **(meta or {}),  # first, so it cannot overwrite the fields that loading checks
        "encoder": name,
        "architecture": type(net.cfg).__name__,
        "config": asdict(net.cfg),
        "weights_file": "encoder.safetensors",
        "sha256": sha256_bytes(blob),
    })
    return path


def load_project_encoder(name: str, path: str | Path | None = None, image_size: int | None = None) -> NetEncoder:
    """Load a project encoder saved by ``save_project_encoder``, verifying its sha256."""
    from safetensors.torch import load as st_load

    if name not in PROJECT_CONFIGS:
        raise ValueError(f"{name!r} is not a project encoder: allowed {tuple(PROJECT_CONFIGS)}.")
    path = Path(path) if path is not None else ENCODERS_DIR / name
    sidecar = path / "encoder.json"
    if not sidecar.exists():
        raise EncoderUnavailable(
            f"no pretrained weights for project encoder {name!r}: {sidecar} is missing. The committed ones "
            f"live in data/encoders/ (restore them with `git checkout -- data/encoders`); make them again with "
            f"`{PRETRAIN_COMMAND.format(name=name)}` (add `--profile paper` for the 224 px version, written to "
            f"data/encoders/{name}_paper), or pass the folder holding encoder.json and encoder.safetensors as "
            f"weights=PATH."
        )
    try:
        meta = json.loads(sidecar.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{sidecar} is not valid JSON ({e}); delete {path} and pretrain again.") from e
    if meta.get("encoder") != name:
        raise CheckpointError(f"{path} holds encoder {meta.get('encoder')!r}, not {name!r}; pass the matching folder.")
    weights = path / meta.get("weights_file", "encoder.safetensors")
    blob = read_verified(weights, meta.get("sha256"), sidecar, f"pretrain it again (`{pretrain_command(name)}`)")
    cfg_class = type(PROJECT_CONFIGS[name])
    net = build_net(cfg_class(**meta["config"]))
    try:
        net.load_state_dict(st_load(blob))
    except RuntimeError as e:
        raise CheckpointError(f"weights in {weights} do not fit the config in {sidecar}: {e}") from e
    # default size: the canvas it was pretrained on (recorded in the sidecar), else the cpu profile's
    size = image_size or getattr(net.cfg, "image_size", None) or meta.get("image_size") \
        or RENDER_PROFILES["cpu"].canvas_size
    return NetEncoder(name, net, size, weights_id=f"sha256:{meta['sha256']}")


def tiny_config(name: str):
    """A tiny config of the same architecture family, for offline shape tests (random weights)."""
    if name in ("random_cnn", "project_cnn", "project_cnn_grid"):
        return ConvNetConfig(width=4, dim=8)
    if name == "project_vit":
        return SmallViTConfig(dim=16, n_layers=1, n_heads=2)
    if name not in HUB_SPECS:
        raise ValueError(f"no tiny config for {name!r}: allowed {tuple(n for n in ENCODERS if n != 'pixels')}.")
    spec = HUB_SPECS[name]
    config_class = _transformers_class(spec.config_class)
    if config_class is None:
        _model_class(name)  # raises EncoderUnavailable with the explanation
    vit_like = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=spec.image_size)
    return {
        "resnet152": lambda: config_class(embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1],
                                          layer_type="bottleneck"),
        "vit_b16": lambda: config_class(intermediate_size=64, patch_size=16, **vit_like),
        "dinov3": lambda: config_class(intermediate_size=64, patch_size=16, num_register_tokens=4, **vit_like),
        "dinov2": lambda: config_class(mlp_ratio=2, patch_size=14, **vit_like),
    }[name]()


def from_config(name: str, config, image_size: int | None = None, seed: int = 0, **kw) -> FrozenEncoder:
    """The same encoder classes as ``get_encoder``, randomly initialised from ``config`` (no download)."""
    if name == "random_cnn":
        return random_cnn(image_size or 224, config.patch, config.width, config.dim, seed)
    if name in PROJECT_CONFIGS:
        return project_encoder(name, config, image_size, seed)
    if name not in HUB_SPECS:
        _unknown(name)
    cls = _model_class(name)
    with seeded(seed):
        model = cls(config, **_load_kwargs(name))
    return HubEncoder(name, model, image_size, weights_id=f"random(seed={seed}, from_config)", **kw)


# ---------------------------------------------------------------- registry
_BUILDERS = {
    "resnet152": lambda **kw: hub_encoder("resnet152", **kw),
    "vit_b16": lambda **kw: hub_encoder("vit_b16", **kw),
    "dinov3": lambda **kw: hub_encoder("dinov3", **kw),
    "dinov2": lambda **kw: hub_encoder("dinov2", **kw),
    "random_cnn": random_cnn,
    "pixels": PixelEncoder,
    "project_cnn": lambda **kw: project_encoder("project_cnn", **kw),
    "project_vit": lambda **kw: project_encoder("project_vit", **kw),
    "project_cnn_grid": lambda **kw: project_encoder("project_cnn_grid", **kw),
}
assert tuple(_BUILDERS) == ENCODERS, "bindlib.core.profiles.ENCODERS names every encoder built here, in this order"


def _unknown(name):
    raise ValueError(f"unknown encoder {name!r}: allowed {ENCODERS}.")


def get_encoder(name: str, **kw) -> FrozenEncoder:
    """Build a frozen encoder by name. Hub encoders take weights=, allow_download=, cache_dir=,
    image_size= (and stage= for resnet152); controls and project encoders take their own options."""
    if name not in _BUILDERS:
        _unknown(name)
    return _BUILDERS[name](**kw)


def profile_encoder(name: str, profile: str = "cpu", **kw) -> FrozenEncoder:
    """Any encoder, set up for an image profile (RENDER_PROFILES) and frozen.

    cpu   (112 px, 49 tokens): project_cnn / project_vit loaded from data/encoders/<name>
          (sha256-verified; EncoderUnavailable says how to make them), random_cnn with
          project_cnn's architecture (dim 128), raw 16 px pixel patches (dim 768); hub encoders
          are fed 112 px (49 tokens at patch 16).
    paper (224 px, 196 tokens): hub encoders as the paper used them, project encoders from
          data/encoders/<name>_paper, random_cnn at dim 256, pixels at 224.
    Extra keywords go to the builder (e.g. seed= for random_cnn, weights= for hub encoders).
    """
    _check_profile(profile)
    size = RENDER_PROFILES[profile].canvas_size
    if name in PROJECT_CONFIGS:
        weights = kw.pop("weights", None) or project_encoder_dir(name, profile)
        return load_project_encoder(name, weights, image_size=size, **kw)
    if name == "random_cnn":
        cfg = RANDOM_CNN_CONFIGS[profile]
        return random_cnn(image_size=size, patch=cfg.patch, width=cfg.width, dim=cfg.dim, **kw)
    if name == "pixels":
        return PixelEncoder(image_size=size, **kw)
    if name in HUB_SPECS:
        if profile == "cpu":
            kw.setdefault("image_size", size)
        return hub_encoder(name, **kw)
    _unknown(name)


# ---------------------------------------------------------------- encoding many images
@torch.no_grad()
def encode_in_chunks(encoder: FrozenEncoder, images: torch.Tensor, chunk_size: int = 64,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Encode many images a chunk at a time on the encoder's device; features come back on the CPU."""
    out = [encoder.encode(images[i:i + chunk_size]).to("cpu", dtype) for i in range(0, len(images), chunk_size)]
    return torch.cat(out) if out else torch.empty(0, encoder.n_tokens(), encoder.dim, dtype=dtype)
