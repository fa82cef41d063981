"""The image-tokenized task: image prompts, the adapter that projects encoder features, and image accuracy.

An image prompt is a text prompt whose context (``c1 s1 ... cN sN``) is re-laid out as ``width`` IMG
placeholders (bindlib.core.relayout) whose embeddings are the projected patch features of a rendered
picture of the context; associations and query stay text. Feature grounding: vision.grounding.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from ..core import io
from ..core.io import CheckpointError, atomic_write, load_checkpoint, read_verified, sha256_bytes
from ..core.model import typed
from ..core.profiles import VISION
from ..core.relayout import VisionConfig, context_start, relayout_context
from ..core.task import PAD, Batch, sample_batch
from . import encoders
from .render import patch_grid, render_batch


# ---------------------------------------------------------------- image prompts
@dataclass
class ImagePrompts:
    """Image-tokenized prompts: a Batch with IMG placeholders plus what fills them."""

    batch: Batch  # tokens with IMG at [start, start + T)
    features: torch.Tensor  # [B, T, D_enc] frozen-encoder patch features
    object_patches: torch.Tensor  # [B, Nmax, T] bool: which patches each object overlaps
    start: int  # sequence index of the first patch token

    def __len__(self) -> int:
        return len(self.batch)

    def embeds(self, adapter: "ImageAdapter", length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs_embeds [B, length, d_model], embeds_mask [B, length]) for the model."""
        proj = adapter(self.features)
        B, T, D = proj.shape
        length = length or self.batch.tokens.shape[1]
        emb = proj.new_zeros(B, length, D)
        emb[:, self.start:self.start + T] = proj
        mask = torch.zeros(B, length, dtype=torch.bool, device=proj.device)
        mask[:, self.start:self.start + T] = True
        return emb, mask

    def model_inputs(self, adapter: "ImageAdapter") -> dict:
        emb, mask = self.embeds(adapter)
        return {**self.batch.model_inputs(), "inputs_embeds": emb, "embeds_mask": mask}

    def select(self, idx) -> "ImagePrompts":
        idx = torch.as_tensor(idx, device=self.features.device)
        return ImagePrompts(self.batch.select(idx), self.features[idx], self.object_patches[idx], self.start)

    def objects_only(self) -> "ImagePrompts":
        """The same prompts with only the patches some object covers as image tokens.

        Each kept patch keeps its place in raster order and its position id, and so does everything after
        the image; rows with fewer such patches than the batch's most are padded with PAD tokens that no
        query attends to. The background patches, which carry no object, are simply absent: the model's
        sequence is shorter (49 patches become at most one per object with the grid-aligned encoder).
        """
        b, T, s = self.batch, self.features.shape[1], self.start
        (B, L), dev = b.tokens.shape, b.tokens.device
        covered = self.object_patches.any(1)  # [B, T]
        width = max(int(covered.sum(1).max()), 1)
        order = (~covered).int().argsort(dim=1, stable=True)[:, :width]  # covered patches first, in raster order
        real = covered.gather(1, order)  # [B, width]
        cols = torch.cat([torch.arange(s, device=dev).expand(B, s), s + order,
                          torch.arange(s + T, L, device=dev).expand(B, L - s - T)], 1)
        tokens = b.tokens.gather(1, cols)
        key_mask = b.key_mask.gather(1, cols)
        tokens[:, s:s + width] = torch.where(real, tokens[:, s:s + width], PAD)
        key_mask[:, s:s + width] &= real
        drop = T - width  # everything after the picture moves this far forward
        after = {k: torch.where(getattr(b, k) >= s + T, getattr(b, k) - drop, getattr(b, k))
                 for k in ("assoc_shape_pos", "assoc_item_pos")}
        batch = Batch(**{**b.__dict__, **after, "tokens": tokens, "position_ids": b.position_ids.gather(1, cols),
                         "key_mask": key_mask, "query_pos": b.query_pos - drop,
                         "meta": {**b.meta, "image_tokens": "objects", "context_width": width}})
        feats = self.features.gather(1, order[..., None].expand(-1, -1, self.features.shape[-1])) * real[..., None]
        obj = self.object_patches.gather(2, order[:, None, :].expand(-1, self.object_patches.shape[1], -1)) & real[:, None]
        return ImagePrompts(batch, feats, obj, s)

    def with_tokens(self, image_tokens: str) -> "ImagePrompts":
        """These prompts with the image tokens ``image_tokens`` asks for (IMAGE_TOKENS; VisionConfig checks it)."""
        return self.objects_only() if image_tokens == "objects" else self

    def patch_positions(self, obj: torch.Tensor) -> torch.Tensor:
        """[B, L] bool: the sequence positions of object ``obj[b]``'s patches."""
        B, L = self.batch.tokens.shape
        rows = torch.arange(B, device=obj.device)
        mask = torch.zeros(B, L, dtype=torch.bool, device=obj.device)
        T = self.features.shape[1]
        mask[:, self.start:self.start + T] = self.object_patches[rows, obj.clamp(min=0)] & (obj >= 0)[:, None]
        return mask


class Vision:
    """A frozen encoder and a render config: turns text batches into ImagePrompts."""

    def __init__(self, encoder, render_cfg, patch: int | None = None, positions: str = "sequence",
                 tokens: str = "all"):
        self.encoder, self.render_cfg, self.positions, self.tokens = encoder, render_cfg, positions, tokens
        self.patch = patch or getattr(encoder, "patch", None) or VISION["cpu"]["patch"]
        self.n_tokens = (render_cfg.canvas_size // self.patch) ** 2
        self.seconds = 0.0  # time spent rendering + encoding (to show it does not dominate training)

    @classmethod
    def for_profile(cls, encoder_name: str, profile: str = "cpu", positions: str = "sequence",
                    tokens: str = "all") -> "Vision":
        p = VISION[profile]
        enc = encoders.profile_encoder(encoder_name, profile=profile)
        return cls(enc, encoders.render_config(encoder_name, profile), p["patch"], positions, tokens)

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @torch.no_grad()
    def prompts(self, batch: Batch, seed: int) -> ImagePrompts:
        t0 = time.time()
        dev = batch.tokens.device
        images, boxes = render_batch(batch.to("cpu"), self.render_cfg, seed)
        feats = self.encoder.encode(images.to(self.encoder.device)).float()
        if feats.shape[1] != self.n_tokens:
            raise ValueError(f"encoder {self.encoder.name} gave {feats.shape[1]} tokens, expected {self.n_tokens} "
                             f"for a {self.render_cfg.canvas_size} px canvas with {self.patch} px patches.")
        nmax = batch.colors.shape[1]
        obj = torch.zeros(len(batch), nmax, self.n_tokens, dtype=torch.bool)
        for i, b in enumerate(boxes):
            for k, patches in enumerate(patch_grid(b, self.render_cfg.canvas_size, self.patch)):
                obj[i, k, torch.as_tensor(patches)] = True
        img_batch = relayout_context(batch, self.n_tokens, "image", positions=self.positions)
        self.seconds += time.time() - t0
        return ImagePrompts(img_batch, feats.to(dev), obj.to(dev), context_start(batch)).with_tokens(self.tokens)


# ---------------------------------------------------------------- trainable parts
class ImageAdapter(nn.Module):
    """The projector from encoder features to d_model, and the word -> region grounding query."""

    def __init__(self, enc_dim: int, d_model: int):
        super().__init__()
        self.norm = nn.LayerNorm(enc_dim)
        self.proj = nn.Linear(enc_dim, d_model)
        self.ground_query = nn.Linear(d_model, d_model, bias=False)
        nn.init.normal_(self.proj.weight, std=0.02)
        nn.init.zeros_(self.proj.bias)
        nn.init.normal_(self.ground_query.weight, std=0.02)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(feats))


@torch.no_grad()
def image_accuracy(model, adapter: ImageAdapter, vision: Vision, task, size: int, seed: int, device="cpu",
                   kind: str = "two_hop", n_range=None) -> float:
    """Accuracy of image-tokenized prompts (ID range of N by default)."""
    was = model.training
    model.eval()
    b = sample_batch(task, size, seed, n=tuple(n_range or task.id_range), query_kind=kind, device=device)
    p = vision.prompts(b, seed)
    logits = model(**p.model_inputs(adapter))
    pred = logits[torch.arange(size, device=logits.device), p.batch.query_pos].argmax(-1)
    model.train(was)
    return (pred == b.target).float().mean().item()


# ---------------------------------------------------------------- saving the adapter beside a checkpoint
def save_adapter(adapter: ImageAdapter, path, name: str = "adapter.safetensors") -> dict:
    """Write the adapter's weights atomically; return the entry that model.json records for it."""
    from safetensors.torch import save as st_save

    blob = st_save({k: v.detach().to("cpu", torch.float32).contiguous() for k, v in adapter.state_dict().items()})
    atomic_write(Path(path) / name, blob)
    return {"file": name, "sha256": sha256_bytes(blob), "enc_dim": adapter.norm.normalized_shape[0],
            "d_model": adapter.proj.out_features}


def load_image_model(path, device="cpu"):
    """Load an image-regime checkpoint: (model, adapter, vision, meta), each part sha256-verified."""
    from safetensors.torch import load as st_load

    model, meta = load_checkpoint(path, device=device)
    entry = meta.get("adapter")
    if not entry:
        raise CheckpointError(f"{path} is a text-only checkpoint (model.json has no 'adapter'); image prompts need an "
                              f"image-regime checkpoint, e.g. one made by `python -m bindlib reproduce --regimes image_text`.")
    blob = read_verified(Path(path) / entry["file"], entry["sha256"], Path(path) / "model.json", "rerun the regime")
    adapter = ImageAdapter(entry["enc_dim"], entry["d_model"])
    adapter.load_state_dict(st_load(blob))
    saved = typed(VisionConfig, (meta.get("train_config") or {}).get("vision") or {})
    vision = Vision.for_profile(meta["encoder"], meta.get("profile", "cpu"), saved.image_positions, saved.image_tokens)
    want = (meta.get("encoder_id"), meta.get("encoder_dim"))
    if want != (vision.encoder.weights_id, vision.dim):
        raise CheckpointError(f"{io.relpath(path)} was trained with encoder {meta['encoder']!r} = {want[0]} (dim {want[1]}), "
                              f"but that encoder is now {vision.encoder.weights_id} (dim {vision.dim}); restore it "
                              f"(`git checkout -- data/encoders`) or use a checkpoint trained with it.")
    vision.encoder.to(device)
    return model, adapter.to(device).eval(), vision, meta
