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
import itertools
import math
import os
import re
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .io import DATA_DIR, CheckpointError, atomic_write, atomic_write_json, sha256_bytes
from .render import RenderConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)  # maps 0..1 to -1..1

WEIGHTS_ENV = "BINDLIB_WEIGHTS_DIR"  # $BINDLIB_WEIGHTS_DIR/<name> holds a downloaded hub model
ENCODERS_DIR = DATA_DIR / "encoders"  # project-pretrained encoders: <name>/encoder.json + encoder.safetensors


class EncoderUnavailable(RuntimeError):
    """The weights an encoder needs are not on this machine (and downloading is off)."""


# ---------------------------------------------------------------- the frozen-encoder interface
class FrozenEncoder(nn.Module):
    """Base class: resize -> normalise -> ``tokens(x)``; frozen, eval-only, no gradients.

    Subclasses set ``dim`` and ``patch`` (the side, in input pixels, of the image cell that
    one token covers) and implement ``tokens``.
    """

    def __init__(self, name: str, image_size: int, mean=None, std=None, weights_id: str = "random"):
        super().__init__()
        self.name = name
        self.image_size = int(image_size)
        self.weights_id = weights_id  # where the weights came from: hub id, folder, sha256 or "random(...)"
        self.normalise = mean is not None
        if self.normalise:
            self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def freeze(self) -> "FrozenEncoder":
        self.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True):
        # A frozen encoder is never in train mode: BatchNorm and dropout would change its features.
        return super().train(False)

    @property
    def pretrained(self) -> bool:
        return not self.weights_id.startswith(("random", "none"))

    @property
    def signature(self) -> str:
        """Identifies what features this encoder computes; cached features are checked against it."""
        return f"{self.name}|{self.weights_id}|image_size={self.image_size}|tokens={self.n_tokens()}|dim={self.dim}"

    @property
    def device(self) -> torch.device:
        first = next(itertools.chain(self.parameters(), self.buffers()), None)
        return first.device if first is not None else torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        first = next(itertools.chain(self.parameters(), self.buffers()), None)
        return first.dtype if first is not None else torch.float32

    def n_tokens(self, image_size: int | None = None) -> int:
        """Tokens per image for an encoder fed ``image_size`` pixels (default: its own)."""
        size = self.image_size if image_size is None else int(image_size)
        if size % self.patch:
            raise ValueError(f"{self.name}: image_size={size} is not a multiple of its patch size {self.patch}.")
        return (size // self.patch) ** 2

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` floats in 0..1 -> ``[B, n_tokens(), dim]``."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"{self.name}: expected images [B, 3, H, W], got shape {tuple(images.shape)}.")
        x = images.to(self.device, torch.float32)  # resize and normalise in fp32 even for a bf16 encoder
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              antialias=True, align_corners=False)
        if self.normalise:
            x = (x - self.mean.float()) / self.std.float()
        tokens = self.tokens(x.to(self.dtype))
        if tokens.shape[1] != self.n_tokens():  # e.g. a checkpoint whose config strides differently
            raise RuntimeError(f"{self.name} gave {tokens.shape[1]} tokens, expected {self.n_tokens()}.")
        return tokens

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode(images)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"name={self.name!r}, image_size={self.image_size}, tokens={self.n_tokens()}, dim={self.dim}"


def _seeded(seed: int, build):
    """Build a module with a fixed seed without disturbing the caller's random stream."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


# ---------------------------------------------------------------- controls: raw pixels
def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, (H/p)*(W/p), C*p*p]``, patches in row-major order."""
    B, C, H, W = images.shape
    x = images.reshape(B, C, H // patch, patch, W // patch, patch)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(B, (H // patch) * (W // patch), C * patch * patch)


def unpatchify(tokens: torch.Tensor, patch: int, channels: int = 3) -> torch.Tensor:
    """Inverse of ``patchify`` for square images."""
    B, T, _ = tokens.shape
    side = math.isqrt(T)
    x = tokens.reshape(B, side, side, channels, patch, patch)
    return x.permute(0, 3, 1, 4, 2, 5).reshape(B, channels, side * patch, side * patch)


class PixelEncoder(FrozenEncoder):
    """Raw non-overlapping pixel patches: the only learned map is the projector that follows.

    No normalisation, so the tokens are a lossless reshape of the image.
    """

    def __init__(self, image_size: int = 224, patch: int = 16):
        super().__init__("pixels", image_size, weights_id="none (raw pixels)")
        self.patch, self.dim = patch, 3 * patch * patch
        self.n_tokens()  # fail early if image_size does not tile into patches
        self.freeze()

    def tokens(self, x):
        return patchify(x, self.patch)


# ---------------------------------------------------------------- small nets: random_cnn and the project encoders
@dataclass(frozen=True)
class ConvNetConfig:
    """Stride-2 3x3 convolutions, one per halving: log2(patch) layers give one token per patch x patch cell."""
    patch: int = 16
    width: int = 32  # channels after the first layer; doubled by each later layer, up to dim
    dim: int = 256

    def __post_init__(self):
        if self.patch < 2 or self.patch & (self.patch - 1):
            raise ValueError(f"ConvNetConfig.patch={self.patch} must be a power of two >= 2.")


class ConvNet(nn.Module):
    """A plain trainable CNN; the frozen encoders wrap it (pretraining uses it bare)."""

    def __init__(self, cfg: ConvNetConfig):
        super().__init__()
        self.cfg = cfg
        n_layers = int(math.log2(cfg.patch))
        widths = [min(cfg.width * 2 ** i, cfg.dim) for i in range(n_layers - 1)] + [cfg.dim]
        layers, c_in = [], 3
        for i, c_out in enumerate(widths):
            layers.append(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1))
            if i < n_layers - 1:
                layers.append(nn.ReLU())
            c_in = c_out
        self.layers = nn.Sequential(*layers)
        for m in self.layers:
            if isinstance(m, nn.Conv2d):  # He init keeps activations O(1) through the ReLUs, even untrained
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x):  # [B, 3, H, W] -> [B, T, dim]
        return self.layers(x).flatten(2).transpose(1, 2)


@dataclass(frozen=True)
class SmallViTConfig:
    """A pre-LayerNorm ViT without a CLS token: every output token is a patch token."""
    image_size: int = 224  # learned position embeddings fix the grid
    patch: int = 16
    dim: int = 128
    n_layers: int = 4
    n_heads: int = 4
    mlp_ratio: int = 4

    def __post_init__(self):
        if self.image_size % self.patch:
            raise ValueError(f"SmallViTConfig: image_size={self.image_size} is not a multiple of patch={self.patch}.")
        if self.dim % self.n_heads:
            raise ValueError(f"SmallViTConfig: dim={self.dim} must be divisible by n_heads={self.n_heads}.")


class ViTBlock(nn.Module):
    def __init__(self, cfg: SmallViTConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.ln1, self.ln2 = nn.LayerNorm(cfg.dim), nn.LayerNorm(cfg.dim)
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim)
        self.proj = nn.Linear(cfg.dim, cfg.dim)
        self.mlp = nn.Sequential(nn.Linear(cfg.dim, cfg.mlp_ratio * cfg.dim), nn.GELU(),
                                 nn.Linear(cfg.mlp_ratio * cfg.dim, cfg.dim))

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v)  # bidirectional: every patch sees every patch
        x = x + self.proj(attn.transpose(1, 2).reshape(B, T, D))
        return x + self.mlp(self.ln2(x))


class SmallViT(nn.Module):
    def __init__(self, cfg: SmallViTConfig):
        super().__init__()
        self.cfg = cfg
        n_patches = (cfg.image_size // cfg.patch) ** 2
        self.patch_embed = nn.Conv2d(3, cfg.dim, cfg.patch, stride=cfg.patch)
        self.pos = nn.Parameter(torch.randn(1, n_patches, cfg.dim) * 0.02)
        self.blocks = nn.ModuleList(ViTBlock(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.dim)

    def forward(self, x):  # [B, 3, H, W] -> [B, T, dim]
        x = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)


NET_CLASSES = {ConvNetConfig: ConvNet, SmallViTConfig: SmallViT}


class NetEncoder(FrozenEncoder):
    """Wraps a ConvNet or SmallViT as a frozen encoder (inputs normalised to -1..1)."""

    def __init__(self, name: str, net: nn.Module, image_size: int, weights_id: str):
        super().__init__(name, image_size, HALF, HALF, weights_id)
        self.net = net
        self.patch, self.dim = net.cfg.patch, net.cfg.dim
        if isinstance(net, SmallViT) and image_size != net.cfg.image_size:
            raise ValueError(f"{name}: the ViT was built for image_size={net.cfg.image_size}, not {image_size}.")
        self.n_tokens()
        self.freeze()

    def tokens(self, x):
        return self.net(x)


def build_net(cfg, seed: int = 0) -> nn.Module:
    return _seeded(seed, lambda: NET_CLASSES[type(cfg)](cfg))


def random_cnn(image_size: int = 224, patch: int = 16, width: int = 32, dim: int = 256, seed: int = 0) -> NetEncoder:
    """The random-features control: project_cnn's architecture, randomly initialised with a fixed seed.

    ``profile_encoder("random_cnn")`` is the cpu-profile version (112 px, patch 16: 49 tokens, dim 128,
    project_cnn's committed architecture); a smaller patch keeps more tokens (112 px with patch=8: 196).
    """
    cfg = ConvNetConfig(patch=patch, width=width, dim=dim)
    return NetEncoder("random_cnn", build_net(cfg, seed), image_size, weights_id=f"random(seed={seed}, {cfg})")


# ---------------------------------------------------------------- profiles and project-pretrained encoders
# Two image profiles.  "cpu" (the one every chapter runs): 112 px canvas, 16 px objects, 16 px
# patches -> a 7 x 7 grid = 49 patch tokens of width 128.  "paper": the paper's 224 px input,
# 14 x 14 = 196 tokens, as the hub encoders see it.
RENDER_PROFILES = {"cpu": RenderConfig(canvas_size=112), "paper": RenderConfig(canvas_size=224)}
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
    if not extra:
        return RENDER_PROFILES[profile]
    return RenderConfig(canvas_size=RENDER_PROFILES[profile].canvas_size, **extra)


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
    sidecar only ever describes a complete weights file (the bindlib.io checkpoint convention)."""
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
    if not weights.exists():
        raise CheckpointError(f"{weights} is missing although {sidecar} exists; pretrain the encoder again.")
    blob = weights.read_bytes()
    digest = sha256_bytes(blob)
    if digest != meta.get("sha256"):
        raise CheckpointError(
            f"sha256 mismatch for {weights}: expected {meta.get('sha256')}, got {digest}. The file is corrupt or "
            f"was changed after saving; restore it (git checkout -- {weights}) or pretrain it again."
        )
    cfg_class = type(PROJECT_CONFIGS[name])
    net = build_net(cfg_class(**meta["config"]))
    try:
        net.load_state_dict(st_load(blob))
    except RuntimeError as e:
        raise CheckpointError(f"weights in {weights} do not fit the config in {sidecar}: {e}") from e
    # default size: the canvas it was pretrained on (recorded in the sidecar), else the cpu profile's
    size = image_size or getattr(net.cfg, "image_size", None) or meta.get("image_size") \
        or RENDER_PROFILES["cpu"].canvas_size
    return NetEncoder(name, net, size, weights_id=f"sha256:{digest}")


# ---------------------------------------------------------------- hub encoders (Hugging Face transformers)
@dataclass(frozen=True)
class HubSpec:
    hub_id: str
    model_class: str  # a transformers class name
    config_class: str
    mean: tuple
    std: tuple
    image_size: int
    gated: bool = False  # needs the licence accepted on the model page and `hf auth login`


HUB_SPECS = {
    # Paper encoders. ResNet: the stage-3 map (stride 16) gives the paper's ~196 tokens; stage=4 gives 7x7x2048.
    "resnet152": HubSpec("microsoft/resnet-152", "ResNetModel", "ResNetConfig", IMAGENET_MEAN, IMAGENET_STD, 224),
    # google/vit-base-patch16-224 was trained with inputs scaled to -1..1, not ImageNet statistics.
    "vit_b16": HubSpec("google/vit-base-patch16-224", "ViTModel", "ViTConfig", HALF, HALF, 224),
    "dinov3": HubSpec("facebook/dinov3-vitb16-pretrain-lvd1689m", "DINOv3ViTModel", "DINOv3ViTConfig",
                      IMAGENET_MEAN, IMAGENET_STD, 224, gated=True),
    # Fallback for DINOv3: patch 14, so 196 px gives the same 14x14 = 196 tokens as the others.
    "dinov2": HubSpec("facebook/dinov2-base", "Dinov2Model", "Dinov2Config", IMAGENET_MEAN, IMAGENET_STD, 196),
}
PAPER_ENCODERS = ("resnet152", "vit_b16", "dinov3")


def _transformers_class(class_name: str):
    import transformers  # imported lazily: it takes seconds, and the controls do not need it

    return getattr(transformers, class_name, None)


def dinov3_available() -> bool:
    return _transformers_class("DINOv3ViTModel") is not None


def paper_encoders() -> tuple[str, ...]:
    """The paper's three encoders, with dinov2 standing in for dinov3 on transformers without DINOv3."""
    return tuple("dinov2" if n == "dinov3" and not dinov3_available() else n for n in PAPER_ENCODERS)


class HubEncoder(FrozenEncoder):
    """A transformers vision model; ``tokens`` picks the patch tokens out of its outputs."""

    def __init__(self, name: str, model, image_size: int | None = None, weights_id: str = "random", stage: int = 3):
        spec = HUB_SPECS[name]
        super().__init__(name, image_size or spec.image_size, spec.mean, spec.std, weights_id)
        self.model = model
        cfg = model.config
        if cfg.model_type == "resnet":
            if stage not in (1, 2, 3, 4):
                raise ValueError(f"resnet152: stage={stage} must be 1..4.")
            self.stage = stage
            self.dim = cfg.hidden_sizes[stage - 1]
            # stem /4, then every stage halves except the first (unless downsample_in_first_stage)
            self.patch = 4 * 2 ** (stage - 1) * (2 if cfg.downsample_in_first_stage else 1)
        else:
            self.dim, self.patch = cfg.hidden_size, cfg.patch_size
            self.n_prefix = 1 + getattr(cfg, "num_register_tokens", 0)  # CLS (+ DINOv3 registers) come first
        self.n_tokens()
        self.freeze()

    def tokens(self, x):
        cfg = self.model.config
        if cfg.model_type == "resnet":
            fmap = self.model(x, output_hidden_states=True).hidden_states[self.stage]  # [B, C, h, w]
            return fmap.flatten(2).transpose(1, 2)
        kwargs = {}
        if cfg.model_type == "vit" and self.image_size != cfg.image_size:
            kwargs["interpolate_pos_encoding"] = True  # ViT's learned positions are for cfg.image_size
        return self.model(x, **kwargs).last_hidden_state[:, self.n_prefix:]


def _model_class(name: str):
    spec = HUB_SPECS[name]
    cls = _transformers_class(spec.model_class)
    if cls is None:
        import transformers

        raise EncoderUnavailable(
            f"encoder {name!r} needs transformers.{spec.model_class}, which transformers {transformers.__version__} "
            f"lacks; upgrade transformers, or use 'dinov2' (paper_encoders() substitutes it automatically)."
        )
    return cls


def _load_kwargs(name: str) -> dict:
    return {"add_pooling_layer": False} if name == "vit_b16" else {}  # the pooler is unused


def _hf_cache_dir() -> str | None:
    """The Hugging Face cache, read from the environment now rather than at import time."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None  # the library default, ~/.cache/huggingface/hub


def _download_help(name: str, spec: HubSpec, looked_in: list[str]) -> str:
    gated = (f" The repository is gated: accept its licence on https://huggingface.co/{spec.hub_id} and run "
             f"`hf auth login` first." if spec.gated else "")
    alternative = " Without it, 'dinov2' (facebook/dinov2-base, not gated) is the paper-faithful fallback." \
        if name == "dinov3" else ""
    return (
        f"encoder {name!r} needs the pretrained weights of {spec.hub_id}, which are not on this machine "
        f"(looked in: {'; '.join(looked_in)}), and downloading is off. To get them, on a machine with internet run "
        f"`hf download {spec.hub_id} --local-dir {name}` (older huggingface_hub: `huggingface-cli download "
        f"{spec.hub_id} --local-dir {name}`), copy the folder here, then pass weights='path/to/{name}' or set "
        f"{WEIGHTS_ENV} to the folder that contains {name}/. Where a network exists, "
        f"get_encoder({name!r}, allow_download=True) downloads into the Hugging Face cache.{gated}{alternative}"
    )


@contextmanager
def _hub_offline():
    """Hugging Face offline mode for the duration of a local load.

    local_files_only alone is not enough: huggingface_hub (2.4) still sends a telemetry request
    when it first builds its HTTP headers, which on a firewalled machine can wait for a timeout.
    The module-level flag is what the library reads at call time; setting os.environ now would be
    too late, because huggingface_hub reads HF_HUB_OFFLINE once, at import.
    """
    from huggingface_hub import constants

    old = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = old


def _load_local(cls, source, **kwargs):
    with _hub_offline():
        return cls.from_pretrained(source, local_files_only=True, **kwargs)


def load_hub_model(name: str, weights: str | Path | None = None, allow_download: bool = False,
                   cache_dir: str | Path | None = None):
    """Load a hub model: ``weights`` folder, else $BINDLIB_WEIGHTS_DIR/<name>, else the HF cache,
    else (only with allow_download) the hub. Returns (model, where it came from)."""
    spec, cls, kwargs = HUB_SPECS[name], _model_class(name), _load_kwargs(name)
    kwargs["dtype"] = torch.float32
    if weights is not None:
        folder = Path(weights)
        if not (folder / "config.json").exists():
            raise EncoderUnavailable(_download_help(name, spec, [f"weights={folder} (no config.json there)"]))
        return _load_local(cls, folder, **kwargs), str(folder)
    looked_in = []
    if os.environ.get(WEIGHTS_ENV):
        folder = Path(os.environ[WEIGHTS_ENV]) / name
        if (folder / "config.json").exists():
            return _load_local(cls, folder, **kwargs), str(folder)
        looked_in.append(f"${WEIGHTS_ENV}/{name} = {folder}")
    cache_dir = cache_dir or _hf_cache_dir()
    looked_in.append(f"Hugging Face cache {cache_dir or '~/.cache/huggingface/hub'}")
    try:  # offline first, so a machine without network fails at once instead of waiting for timeouts
        return _load_local(cls, spec.hub_id, cache_dir=cache_dir, **kwargs), spec.hub_id
    except OSError:
        if not allow_download:
            raise EncoderUnavailable(_download_help(name, spec, looked_in)) from None
    try:
        return cls.from_pretrained(spec.hub_id, cache_dir=cache_dir, **kwargs), spec.hub_id
    except OSError as e:
        help_text = _download_help(name, spec, looked_in)
        raise EncoderUnavailable(f"downloading {spec.hub_id} failed ({e}). {help_text}") from e


def hub_encoder(name: str, weights=None, allow_download: bool = False, cache_dir=None,
                image_size: int | None = None, stage: int = 3) -> HubEncoder:
    model, source = load_hub_model(name, weights, allow_download, cache_dir)
    return HubEncoder(name, model, image_size, weights_id=source, stage=stage)


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
    model = _seeded(seed, lambda: cls(config, **_load_kwargs(name)))
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
ENCODERS = tuple(_BUILDERS)


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


# ---------------------------------------------------------------- feature caching
@torch.no_grad()
def encode_in_chunks(encoder: FrozenEncoder, images: torch.Tensor, chunk_size: int = 64,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Encode many images a chunk at a time on the encoder's device; features come back on the CPU."""
    out = [encoder.encode(images[i:i + chunk_size]).to("cpu", dtype) for i in range(0, len(images), chunk_size)]
    return torch.cat(out) if out else torch.empty(0, encoder.n_tokens(), encoder.dim, dtype=dtype)


class FeatureCache:
    """Encoder features keyed by (encoder name, image-set id), in memory and optionally on disk.

    Image training then pays for the frozen encoder once per image set, not once per step.
    Each file stores the encoder's ``signature``; a file written by different weights or a
    different image size is recomputed rather than trusted. ``images`` may be a callable,
    so a cache hit skips rendering too.
    """

    def __init__(self, directory: str | Path | None = None, chunk_size: int = 64, dtype: torch.dtype = torch.float32):
        self.directory = Path(directory) if directory is not None else None
        self.chunk_size, self.dtype = chunk_size, dtype
        self.memory: dict[tuple[str, str], tuple[str, torch.Tensor]] = {}  # key -> (signature, features)

    def path(self, encoder: FrozenEncoder, set_id) -> Path:
        slug = re.sub(r"[^A-Za-z0-9_.=-]+", "_", str(set_id))
        return self.directory / f"{encoder.name}__{slug}.safetensors"

    def features(self, encoder: FrozenEncoder, set_id, images) -> torch.Tensor:
        key = (encoder.name, str(set_id))
        signature, feats = self.memory.get(key, (None, None))
        if signature == encoder.signature:
            return feats
        feats = self._read(encoder, set_id)
        if feats is None:
            feats = encode_in_chunks(encoder, images() if callable(images) else images, self.chunk_size, self.dtype)
            self._write(encoder, set_id, feats)
        self.memory[key] = (encoder.signature, feats)
        return feats

    def _read(self, encoder, set_id) -> torch.Tensor | None:
        if self.directory is None or not self.path(encoder, set_id).exists():
            return None
        from safetensors import safe_open

        path = self.path(encoder, set_id)
        with safe_open(str(path), framework="pt") as f:
            stored = (f.metadata() or {}).get("signature")
            if stored != encoder.signature:
                warnings.warn(f"{path} was computed by {stored!r}, not {encoder.signature!r}; recomputing it.")
                return None
            return f.get_tensor("features").to(self.dtype)

    def _write(self, encoder, set_id, feats) -> None:
        if self.directory is None:
            return
        from safetensors.torch import save as st_save

        meta = {"signature": encoder.signature, "encoder": encoder.name, "set_id": str(set_id),
                "n_images": str(len(feats))}
        atomic_write(self.path(encoder, set_id), st_save({"features": feats.contiguous()}, metadata=meta))
