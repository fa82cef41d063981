"""A prompt's context re-laid out as a block of tokens: noise for the noise stages, image placeholders for the
image stages, and the settings that say how (VisionConfig).

Both variants rewrite the *context* of a text prompt (``c1 s1 ... cN sN``, 2N tokens after BOS)
into a block of ``width`` tokens and shift everything after it:

- **noise**: the 2N real tokens are scattered, in order, over the block, and the rest of it is
  NOISE tokens. Noise tokens take position ids (so distances between real tokens vary) but carry
  a False key mask, so no query attends to them, and they carry no loss;
- **image**: the block is ``width`` IMG placeholders, whose embeddings the vision floor fills with the
  projected patch features of a rendered picture of the context (bindlib.vision.multimodal).

Text training with noise needs only this module; nothing here renders or encodes a picture.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from .profiles import ENCODERS, VISION
from .task import IMG, NOISE, PAD, Batch, make_generator


IMAGE_POSITIONS = ("sequence", "context")  # how image tokens take position ids (relayout_context)
IMAGE_TOKENS = ("all", "objects")  # every patch is a token, or only the patches an object covers (ImagePrompts.objects_only)


@dataclass(frozen=True)
class VisionConfig:
    """What image and noise stages need, in one place: the frozen encoder (a name from
    bindlib.vision.ENCODERS), the image profile (None: the training profile) and the width
    of a noised context block (None: the profile's image-token count), and the feature pool."""

    encoder: str | None = field(default=None, metadata={
        "choices": ENCODERS, "help": "the frozen image encoder (bindlib.vision.encoders builds each)"})
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
        if self.encoder is not None and self.encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {self.encoder!r}: allowed {ENCODERS}.")
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
def context_start(batch: Batch) -> int:
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
    ctx0 = context_start(batch)
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
