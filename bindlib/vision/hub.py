"""Hugging Face encoders (the paper's resnet152, vit_b16, dinov3, and dinov2), loaded offline by default:
a local folder, then $BINDLIB_WEIGHTS_DIR, then the Hugging Face cache, else EncoderUnavailable says how to get them."""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from .nets import HALF, IMAGENET_MEAN, IMAGENET_STD, EncoderUnavailable, FrozenEncoder

WEIGHTS_ENV = "BINDLIB_WEIGHTS_DIR"  # $BINDLIB_WEIGHTS_DIR/<name> holds a downloaded hub model


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
