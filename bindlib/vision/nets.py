"""The frozen-encoder interface and the small encoders built here: raw pixel patches, a stride-2 CNN
and a small ViT (random_cnn and the project encoders use them; bindlib.vision.encoders has the registry)."""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.task import seeded

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)  # maps 0..1 to -1..1


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
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
            raise ValueError(f"{self.name}: expected square images [B, 3, H, H], got shape {tuple(images.shape)}.")
        if not images.is_floating_point():
            raise ValueError(f"{self.name}: expected float images in 0..1, got dtype {images.dtype}; divide uint8 "
                             f"images by 255.")
        if images.numel() and not bool(torch.isfinite(images).all()):
            bad = int((~torch.isfinite(images)).sum())
            raise ValueError(f"{self.name}: expected finite pixel values in 0..1, got {bad} NaN or infinite value(s); "
                             f"check how the images were made.")
        if images.numel() and (float(images.min()) < 0.0 or float(images.max()) > 1.0):
            raise ValueError(f"{self.name}: expected pixel values in 0..1, got {float(images.min()):.3g}.."
                             f"{float(images.max()):.3g}; undo any normalisation (the encoder normalises itself).")
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
    with seeded(seed):
        return NET_CLASSES[type(cfg)](cfg)


def random_cnn(image_size: int = 224, patch: int = 16, width: int = 32, dim: int = 256, seed: int = 0) -> NetEncoder:
    """The random-features control: project_cnn's architecture, randomly initialised with a fixed seed.

    ``profile_encoder("random_cnn")`` is the cpu-profile version (112 px, patch 16: 49 tokens, dim 128,
    project_cnn's committed architecture); a smaller patch keeps more tokens (112 px with patch=8: 196).
    """
    cfg = ConvNetConfig(patch=patch, width=width, dim=dim)
    return NetEncoder("random_cnn", build_net(cfg, seed), image_size, weights_id=f"random(seed={seed}, {cfg})")
