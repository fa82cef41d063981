"""The image-tokenized task and noise augmentation (feature grounding: vision.grounding).

Both variants rewrite the *context* of a text prompt (``c1 s1 ... cN sN``, 2N tokens after BOS)
into a block of ``width`` tokens and shift everything after it:

- **image prompts**: the block is ``width`` IMG placeholders whose embeddings are the projected
  patch features of a rendered picture of the context; associations and query stay text;
- **noise**: the 2N real tokens are scattered, in order, over the block, and the rest of it is
  NOISE tokens. Noise tokens take position ids (so distances between real tokens vary) but carry
  a False key mask, so no query attends to them, and they carry no loss.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from ..core import io
from ..core.io import CheckpointError, atomic_write, load_checkpoint, read_verified, sha256_bytes
from ..core.model import typed
from ..core.profiles import VISION, image_token_count  # noqa: F401 (image_token_count is re-exported)
from ..core.task import IMG, NOISE, PAD, Batch, make_generator, sample_batch
from . import encoders
from .render import RenderConfig, patch_grid, render_batch


IMAGE_POSITIONS = ("sequence", "context")  # how image tokens take position ids (relayout_context)
IMAGE_TOKENS = ("all", "objects")  # every patch is a token, or only the patches an object covers (ImagePrompts.objects_only)


@dataclass(frozen=True)
class VisionConfig:
    """What image and noise stages need, in one place: the frozen encoder (a name from
    bindlib.vision.encoders.ENCODERS), the image profile (None: the training profile) and the width
    of a noised context block (None: the profile's image-token count), and the feature pool."""

    encoder: str | None = field(default=None, metadata={
        "choices": encoders.ENCODERS, "help": "the frozen image encoder (bindlib.vision.encoders.ENCODERS)"})
    profile: str | None = None
    noise_width: int | None = None
    pool_size: int = 0  # > 0: image steps draw from this many precomputed scenes (vision.featurepool)
    pool_seed: int = 0
    image_positions: str = field(default="sequence", metadata={
        "choices": IMAGE_POSITIONS, "help": "position ids of image tokens: their sequence places, or the text "
                                            "context's (everything after the image keeps its text positions)"})
    image_tokens: str = field(default="all", metadata={
        "choices": IMAGE_TOKENS, "help": "which patches become tokens: all of them, or only those an object covers "
                                         "(each keeps its position id; a shorter, faster sequence)"})
    noise_positions: str = field(default="sequence", metadata={
        "choices": IMAGE_POSITIONS, "help": "position ids of a noised text context: their sequence places, or "
                                            "the text context's (everything after the block keeps its text positions)"})

    def __post_init__(self):
        if self.encoder is not None and self.encoder not in encoders.ENCODERS:
            raise ValueError(f"unknown encoder {self.encoder!r}: allowed {encoders.ENCODERS}.")
        if self.profile is not None and self.profile not in VISION:
            raise ValueError(f"unknown profile {self.profile!r}: allowed {tuple(VISION)}.")
        if self.noise_width is not None and self.noise_width < 1:
            raise ValueError(f"noise_width={self.noise_width} must be >= 1.")
        for name in ("image_positions", "noise_positions"):
            if getattr(self, name) not in IMAGE_POSITIONS:
                raise ValueError(f"{name} {getattr(self, name)!r}: allowed {IMAGE_POSITIONS}.")
        if self.image_tokens not in IMAGE_TOKENS:
            raise ValueError(f"image_tokens {self.image_tokens!r}: allowed {IMAGE_TOKENS}.")

    def to_dict(self) -> dict:
        """Only what is set (pool fields when a pool is used), so earlier runs' saved configs compare equal."""
        d = {k: v for k, v in asdict(self).items() if v is not None}
        for name in ("image_positions", "noise_positions"):
            if d[name] == "sequence":
                d.pop(name)
        if d["image_tokens"] == "all":
            d.pop("image_tokens")
        if not self.pool_size:
            d.pop("pool_size"), d.pop("pool_seed")
        return d


# ---------------------------------------------------------------- context re-layout
def _context_start(batch: Batch) -> int:
    return 1 + int(batch.meta.get("offset", 0))


def relayout_context(batch: Batch, width: int, mode: str, generator: torch.Generator | None = None,
                     positions: str = "sequence") -> Batch:
    """Replace each prompt's 2N context tokens by a block of ``width`` tokens (see module doc).

    mode='noise': real tokens keep their order at random slots of the block, NOISE elsewhere.
    mode='image': the block is IMG tokens; object token positions become -1.
    positions: 'sequence' numbers every token by its place in the sequence; 'context' spreads the
    block (image or noise) over the position ids of the 2N context tokens it replaces, so everything after
    it keeps the position ids of the text prompt (for learned absolute positions, chapter 4).
    """
    if mode not in ("noise", "image"):
        raise ValueError(f"unknown mode {mode!r}: allowed 'noise' and 'image'.")
    if positions not in IMAGE_POSITIONS:
        raise ValueError(f"positions {positions!r}: allowed {IMAGE_POSITIONS}.")
    if batch.meta.get("relayout"):
        raise ValueError(f"this batch was already re-laid out ({batch.meta['relayout']}); start from a text batch.")
    dev = batch.tokens.device
    B, L = batch.tokens.shape
    n2 = 2 * batch.n_objects
    if mode == "noise" and int(n2.max()) > width:
        raise ValueError(
            f"noise width {width} is smaller than a context of {int(n2.max())} tokens (N={int(batch.n_objects.max())}); "
            f"use a width >= 2N, or fewer objects."
        )
    ctx0 = _context_start(batch)
    shift = width - n2  # [B] how far everything after the context moves
    new_query_pos = batch.query_pos + shift
    L_new = int(new_query_pos.max()) + 1
    idx = torch.arange(L, device=dev).expand(B, L)
    in_ctx = (idx >= ctx0) & (idx < ctx0 + n2[:, None])
    after = idx >= ctx0 + n2[:, None]
    if mode == "noise":
        # choose 2N of the ``width`` slots; stable sort puts the chosen slots first, ascending
        keys = torch.rand(B, width, generator=generator, device=dev) if generator is not None else torch.rand(B, width, device=dev)
        rank = keys.argsort(-1).argsort(-1)
        chosen = rank < n2[:, None]
        slot_of = (~chosen).int().argsort(dim=-1, stable=True)  # [B, width]; first 2N entries are the chosen slots
        k = (idx - ctx0).clamp(0, width - 1)
        ctx_new = ctx0 + slot_of.gather(1, k)
    else:
        ctx_new = torch.full_like(idx, -1)
    new_pos = torch.where(in_ctx, ctx_new, torch.where(after, idx + shift[:, None], idx))  # old index -> new index
    keep = idx <= batch.query_pos[:, None]
    if mode == "image":
        keep = keep & ~in_ctx
    tokens = torch.full((B, L_new), PAD, dtype=torch.long, device=dev)
    cols = torch.arange(L_new, device=dev)
    block = (cols >= ctx0) & (cols < ctx0 + width)
    tokens[:, block] = NOISE if mode == "noise" else IMG
    rows = torch.arange(B, device=dev)[:, None].expand(B, L)
    tokens[rows[keep], new_pos[keep]] = batch.tokens[keep]
    key_mask = (cols[None, :] <= new_query_pos[:, None]) & (tokens != NOISE)

    def moved(pos):
        valid = pos >= 0
        out = new_pos.gather(1, pos.clamp(min=0))
        return out.masked_fill(~valid, -1)

    obj_pos = {}
    for name in ("color_pos", "shape_pos"):
        obj_pos[name] = moved(getattr(batch, name)) if mode == "noise" else torch.full_like(batch.color_pos, -1)
    position_ids = cols.expand(B, L_new).clone()
    if positions == "context":
        rel = cols[None, :] - ctx0[:, None] if torch.is_tensor(ctx0) else cols[None, :] - ctx0
        inside = (rel >= 0) & (rel < width)
        position_ids = torch.where(inside, position_ids - rel + rel.clamp(0, width - 1) * n2[:, None] // width,
                                   torch.where(rel >= width, position_ids - shift[:, None], position_ids))
    out = Batch(
        tokens=tokens, position_ids=position_ids, key_mask=key_mask, query_pos=new_query_pos,
        target=batch.target, n_objects=batch.n_objects, query_slot=batch.query_slot, query_kind=list(batch.query_kind),
        colors=batch.colors, shapes=batch.shapes, items=batch.items, **obj_pos,
        assoc_shape_pos=moved(batch.assoc_shape_pos), assoc_item_pos=moved(batch.assoc_item_pos),
        vocab=batch.vocab, meta={**batch.meta, "relayout": mode, "context_width": width, "context_start": ctx0},
    )
    return out


def add_noise(batch: Batch, width: int, seed: int | None = None, positions: str = "sequence") -> Batch:
    """Insert unattendable NOISE tokens so that every context block is ``width`` tokens long (``positions``:
    how the block takes position ids, as for images in relayout_context)."""
    g = make_generator(seed, batch.tokens.device) if seed is not None else None
    return relayout_context(batch, width, "noise", g, positions=positions)


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
        return ImagePrompts(img_batch, feats.to(dev), obj.to(dev), _context_start(batch)).with_tokens(self.tokens)


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
