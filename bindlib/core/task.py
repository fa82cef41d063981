"""The two-hop "indirect retrieval" binding task.

One prompt with N objects reads

    BOS c1 s1 c2 s2 ... cN sN CTX_END  s_p1 i_p1 ... s_pN i_pN  QUE c_q   ->  i_q

The context binds a colour to a shape; the association lines bind an item to
each shape (in a shuffled order, so "k-th colour -> k-th item" is no shortcut);
the query names a colour and the answer is the item bound to that colour's
shape.  Every prompt is generated on the tensor's device, vectorised over the
batch, and is fully determined by a seed.
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field, asdict

import torch

# the colour cube and the shape family are tables (bindlib.core.profiles), re-exported here
from .profiles import SHAPE_KINDS, SHAPE_STYLES, cube_colors, shape_family  # noqa: F401

SPECIALS = ("PAD", "BOS", "CTX_END", "QUE", "QSHAPE", "NOISE", "IMG", "FILL")
PAD, BOS, CTX_END, QUE, QSHAPE, NOISE, IMG, FILL = range(len(SPECIALS))

# Query kinds.  Only "two_hop" is the paper's task; the two one-hop kinds are
# its sub-skills, used for logging the plateau and as curriculum aids.
QUERY_KINDS = ("two_hop", "color_to_shape", "shape_to_item")
ASSOCIATION_ORDERS = ("shuffled", "declared", "reversed")
# "standard" is the paper's task.  "ordered", the positional positive control, lists the items alone in
# declaration order (BOS c1 s1 ... cN sN CTX_END i1 ... iN QUE c_q -> i_q): the only route from the query
# colour to its item goes through the object's slot.
FORMATS = ("standard", "ordered")

SPLITS = {"id": (2, 8), "ood": (9, 16)}

_ITEM_WORDS = (
    "apple key lamp boat drum kite ring sock fork bell coin leaf hat cup book shoe "
    "vase nail flag rope comb fan jar map pen saw box egg owl bus axe dice"
).split()


# ---------------------------------------------------------------- vocabulary
@dataclass(frozen=True)
class Vocab:
    n_colors: int = 16
    n_shapes: int = 16
    n_items: int = 32

    def __post_init__(self):
        for name, val, hi in (("n_colors", self.n_colors, 216), ("n_shapes", self.n_shapes, 216)):
            if not 1 <= val <= hi:
                raise ValueError(f"{name}={val} is outside the allowed range 1..{hi} (the RGB cube and shape family have {hi}).")
        if self.n_items < 1:
            raise ValueError(f"n_items={self.n_items} must be at least 1.")

    @property
    def color_offset(self) -> int:
        return len(SPECIALS)

    @property
    def shape_offset(self) -> int:
        return self.color_offset + self.n_colors

    @property
    def item_offset(self) -> int:
        return self.shape_offset + self.n_shapes

    @property
    def size(self) -> int:
        return self.item_offset + self.n_items

    @property
    def max_objects(self) -> int:
        return min(self.n_colors, self.n_shapes, self.n_items)

    def color_rgb(self, i: int) -> tuple[int, int, int]:
        return cube_colors()[i]

    def names(self) -> list[str]:
        return list(_names(self.n_colors, self.n_shapes, self.n_items))

    def decode(self, ids) -> str:
        names = self.names()
        return " ".join(names[int(t)] for t in ids if int(t) != PAD)


@functools.lru_cache(maxsize=64)
def _names(n_colors: int, n_shapes: int, n_items: int) -> tuple[str, ...]:
    colors = ["#%02x%02x%02x" % c for c in cube_colors()[:n_colors]]
    shapes = [s["name"] for s in shape_family()[:n_shapes]]
    items = [_ITEM_WORDS[i] if i < len(_ITEM_WORDS) else f"item{i}" for i in range(n_items)]
    return tuple(SPECIALS) + tuple(colors) + tuple(shapes) + tuple(items)


# ---------------------------------------------------------------- config
@dataclass(frozen=True)
class TaskConfig:
    """Everything that defines the distribution of prompts."""

    n_colors: int = 16
    n_shapes: int = 16
    n_items: int = 32
    id_range: tuple[int, int] = SPLITS["id"]
    ood_range: tuple[int, int] = SPLITS["ood"]
    format: str = "standard"  # one of FORMATS

    def __post_init__(self):
        line_width(self.format)  # validates
        object.__setattr__(self, "id_range", tuple(self.id_range))
        object.__setattr__(self, "ood_range", tuple(self.ood_range))
        vocab = self.vocab  # validates sizes
        for name, (lo, hi) in (("id_range", self.id_range), ("ood_range", self.ood_range)):
            check_n_range(lo, hi, vocab, what=name)
        if self.id_range[0] <= self.ood_range[1] and self.ood_range[0] <= self.id_range[1]:
            raise ValueError(f"id_range {self.id_range} and ood_range {self.ood_range} overlap, so evaluation would count "
                             f"the shared N twice; make them disjoint (e.g. id 2..8, ood 9..16).")

    @property
    def vocab(self) -> Vocab:
        return Vocab(self.n_colors, self.n_shapes, self.n_items)

    def split_of(self, n: int) -> str | None:
        """'id', 'ood', or None for an N in neither range."""
        for split in ("id", "ood"):
            lo, hi = self.split_range(split)
            if lo <= n <= hi:
                return split
        return None

    def split_range(self, split: str) -> tuple[int, int]:
        if split == "id":
            return self.id_range
        if split == "ood":
            return self.ood_range
        raise ValueError(f"unknown split {split!r}: allowed splits are 'id' and 'ood'.")

    def max_len(self, offset: int = 0) -> int:
        return prompt_length(max(self.id_range[1], self.ood_range[1]), offset, self.format)

    def to_dict(self) -> dict:  # the standard format is left out, so earlier checkpoints' configs are unchanged
        return {k: v for k, v in asdict(self).items() if not (k == "format" and v == "standard")}


def check_n_range(lo: int, hi: int, vocab: Vocab, what: str = "N") -> None:
    if lo < 1:
        raise ValueError(f"{what}: N={lo} is too small; a prompt needs at least 1 object (allowed 1..{vocab.max_objects}).")
    if hi < lo:
        raise ValueError(f"{what}: empty range {lo}..{hi}; the upper bound must be >= the lower bound.")
    if hi > vocab.max_objects:
        raise ValueError(
            f"{what}: N={hi} needs {hi} distinct colours, shapes and items, but the vocabulary allows at most "
            f"{vocab.max_objects} (n_colors={vocab.n_colors}, n_shapes={vocab.n_shapes}, n_items={vocab.n_items}). "
            f"Use N in 1..{vocab.max_objects} or enlarge the vocabulary."
        )


def line_width(fmt: str = "standard") -> int:
    """Tokens per association line: shape + item (standard), or the item alone (ordered)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown task format {fmt!r}: allowed {FORMATS}.")
    return 2 if fmt == "standard" else 1


def prompt_length(n: int, offset: int = 0, fmt: str = "standard") -> int:
    """BOS + offset fillers + 2N context + CTX_END + N association lines + QUE + query."""
    return 4 + offset + (2 + line_width(fmt)) * n


# ---------------------------------------------------------------- batches
@dataclass
class Batch:
    """A right-padded batch of prompts plus everything an experiment needs to know about them.

    Object-indexed fields (colors, shapes, items, *_pos) are in declaration order
    and padded with -1 beyond each row's N.
    """

    tokens: torch.Tensor  # [B, L] token ids
    position_ids: torch.Tensor  # [B, L]
    key_mask: torch.Tensor  # [B, L] True where a token may be attended to
    query_pos: torch.Tensor  # [B] index of the last prompt token; the answer is read out there
    target: torch.Tensor  # [B] answer token id
    n_objects: torch.Tensor  # [B]
    query_slot: torch.Tensor  # [B] declaration index of the queried object
    query_kind: list[str]
    colors: torch.Tensor  # [B, Nmax] vocab ids
    shapes: torch.Tensor
    items: torch.Tensor  # item bound to object k's shape
    color_pos: torch.Tensor  # [B, Nmax] positions in the sequence
    shape_pos: torch.Tensor
    assoc_shape_pos: torch.Tensor
    assoc_item_pos: torch.Tensor
    vocab: Vocab = field(repr=False)
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def to(self, device) -> "Batch":
        moved = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in self.__dict__.items()}
        return Batch(**moved)

    def model_inputs(self) -> dict:
        return {"tokens": self.tokens, "position_ids": self.position_ids, "key_mask": self.key_mask}

    def decode(self, i: int = 0) -> str:
        n = int(self.query_pos[i]) + 1
        return self.vocab.decode(self.tokens[i, :n]) + "  ->  " + self.vocab.names()[int(self.target[i])]

    def select(self, idx) -> "Batch":
        idx = torch.as_tensor(idx, device=self.tokens.device)
        out = {}
        for k, v in self.__dict__.items():
            if torch.is_tensor(v):
                out[k] = v[idx]
            elif k == "query_kind":
                out[k] = [v[int(j)] for j in idx.reshape(-1)]
            else:
                out[k] = v
        return Batch(**out)


def make_generator(seed: int, device="cpu") -> torch.Generator:
    """The one way bindlib turns a seed into a random stream (every sample is a function of its seed)."""
    return torch.Generator(device=device).manual_seed(int(seed))


@contextlib.contextmanager
def seeded(seed: int):
    """Run a block (e.g. building a module) under torch.manual_seed(seed), leaving the caller's stream as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def _rand_perm_prefix(b: int, n_total: int, k: int, g, device) -> torch.Tensor:
    """Per row, k distinct values from range(n_total)."""
    return torch.rand(b, n_total, generator=g, device=device).argsort(-1)[:, :k]


def build_prompts(vocab: Vocab, colors, shapes, items, line_of, query_slot, n_objects, offset: int = 0,
                  query_kind: str = "two_hop", meta: dict | None = None) -> Batch:
    """The prompt layout (the one place it is written): lay out prompts from their object fields.

    colors/shapes/items: [B, Nmax] token ids in declaration order (anything beyond a row's N is ignored);
    line_of[b, k]: the association line of object k (the identity in the 'ordered' format, ``meta["format"]``,
    which has no shape on its lines: assoc_shape_pos is -1 there); query_slot: the queried object.
    """
    fmt = (meta or {}).get("format", "standard")
    w = line_width(fmt)
    B, nmax = colors.shape
    dev = colors.device
    slot = torch.arange(nmax, device=dev).expand(B, nmax)
    valid = slot < n_objects[:, None]
    if w == 1 and bool(((line_of != slot) & valid).any()):
        raise ValueError("the 'ordered' format lists items in declaration order: line_of must be the identity.")
    ctx0 = 1 + offset
    color_pos = ctx0 + 2 * slot
    shape_pos = color_pos + 1
    assoc_item_pos = ctx0 + 2 * n_objects[:, None] + 1 + w * line_of + (w - 1)
    assoc_shape_pos = assoc_item_pos - 1 if w == 2 else torch.full_like(assoc_item_pos, -1)
    query_pos = ctx0 + (2 + w) * n_objects + 2
    L = prompt_length(nmax, offset, fmt)

    tokens = torch.full((B, L), PAD, dtype=torch.long, device=dev)
    tokens[:, 0] = BOS
    tokens[:, 1:ctx0] = FILL
    rows = torch.arange(B, device=dev)[:, None].expand(B, nmax)
    for pos, val in ((color_pos, colors), (shape_pos, shapes), (assoc_item_pos, items), (assoc_shape_pos, shapes))[:2 + w]:
        tokens[rows[valid], pos[valid]] = val[valid]
    r = torch.arange(B, device=dev)
    tokens[r, ctx0 + 2 * n_objects] = CTX_END
    tokens[r, query_pos - 1] = QSHAPE if query_kind == "color_to_shape" else QUE
    asked = shapes if query_kind == "shape_to_item" else colors
    tokens[r, query_pos] = asked[r, query_slot]
    answer = shapes if query_kind == "color_to_shape" else items

    def pad(x):
        return x.masked_fill(~valid, -1)

    return Batch(
        tokens=tokens, position_ids=torch.arange(L, device=dev).expand(B, L).clone(),
        key_mask=torch.arange(L, device=dev)[None, :] <= query_pos[:, None], query_pos=query_pos,
        target=answer[r, query_slot], n_objects=n_objects.clone(), query_slot=query_slot.clone(),
        query_kind=[query_kind] * B, colors=pad(colors), shapes=pad(shapes), items=pad(items),
        color_pos=pad(color_pos), shape_pos=pad(shape_pos),
        assoc_shape_pos=pad(assoc_shape_pos), assoc_item_pos=pad(assoc_item_pos),
        vocab=vocab, meta=dict(meta or {}, offset=offset, format=fmt),
    )


def sample_batch(
    cfg: TaskConfig,
    batch_size: int,
    seed: int = 0,
    *,
    split: str = "id",
    n: int | tuple[int, int] | None = None,
    association_order: str = "shuffled",
    offset: int = 0,
    query_kind: str = "two_hop",
    device="cpu",
    generator: torch.Generator | None = None,
    declared_share: float = 0.0,
) -> Batch:
    """Sample a batch of prompts.

    split picks N uniformly from its range unless ``n`` (an int or a (lo, hi) range) is given.
    association_order: 'shuffled' (default), 'declared' (same order as the context) or 'reversed'.
    offset: number of FILL tokens after BOS, shifting every absolute position.
    query_kind: 'two_hop' (the task), 'color_to_shape' or 'shape_to_item' (its one-hop parts).
    declared_share (the shortcut dial): with 'shuffled', this share of rows lists its associations in
    declaration order, so the positional shortcut is valid on them.  cfg.format 'ordered' is always in
    declaration order ('shuffled' and 'declared' are the same there).
    """
    vocab, fmt = cfg.vocab, cfg.format
    if fmt == "ordered" and association_order not in ("shuffled", "declared"):
        raise ValueError(f"the 'ordered' format lists items in declaration order; association_order="
                         f"{association_order!r} does not apply (use 'shuffled' or 'declared', the same there).")
    if not 0.0 <= declared_share <= 1.0:
        raise ValueError(f"declared_share={declared_share} is a share of prompts and must lie in 0..1.")
    split_lo_hi = cfg.split_range(split)  # validates the split name even when n is given
    if n is None:
        lo, hi = split_lo_hi
    elif isinstance(n, int):
        lo = hi = n
    else:
        lo, hi = n
    check_n_range(lo, hi, vocab)
    if association_order not in ASSOCIATION_ORDERS:
        raise ValueError(f"unknown association_order {association_order!r}: allowed {ASSOCIATION_ORDERS}.")
    if query_kind not in QUERY_KINDS:
        raise ValueError(f"unknown query_kind {query_kind!r}: allowed {QUERY_KINDS}.")
    if offset < 0:
        raise ValueError(f"offset={offset} must be >= 0 (it counts filler tokens).")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1.")
    g = generator if generator is not None else make_generator(seed, device)
    B, dev, nmax = batch_size, device, hi

    n_obj = torch.randint(lo, hi + 1, (B,), generator=g, device=dev)
    slot = torch.arange(nmax, device=dev).expand(B, nmax)
    valid = slot < n_obj[:, None]
    colors = _rand_perm_prefix(B, vocab.n_colors, nmax, g, dev) + vocab.color_offset
    shapes = _rand_perm_prefix(B, vocab.n_shapes, nmax, g, dev) + vocab.shape_offset
    items = _rand_perm_prefix(B, vocab.n_items, nmax, g, dev) + vocab.item_offset
    # order[b, m] = which object is listed m-th in the associations
    if fmt == "ordered":
        order = slot.clone()
    elif association_order == "shuffled":
        order = torch.rand(B, nmax, generator=g, device=dev).masked_fill(~valid, 2.0).argsort(-1)
        if declared_share > 0:  # extra draws only when the dial is on, so p = 0 keeps the stream
            order = torch.where((torch.rand(B, generator=g, device=dev) < declared_share)[:, None], slot, order)
    elif association_order == "declared":
        order = slot.clone()
    else:
        order = torch.where(valid, n_obj[:, None] - 1 - slot, slot)
    q_slot = (torch.rand(B, generator=g, device=dev) * n_obj).long()
    meta = {"split": split, "n_range": (lo, hi), "association_order": association_order, "format": fmt,
            **({"declared_share": declared_share} if declared_share else {})}
    return build_prompts(vocab, colors, shapes, items, order.argsort(-1), q_slot, n_obj, offset, query_kind, meta)


def concat_batches(*batches: Batch) -> Batch:
    """Rows of several batches of the same prompt length, in order."""
    out = {}
    for k, v in batches[0].__dict__.items():
        if torch.is_tensor(v):
            out[k] = torch.cat([getattr(b, k) for b in batches])
        elif k == "query_kind":
            out[k] = [x for b in batches for x in b.query_kind]
        else:
            out[k] = v
    return Batch(**out)


def answer_from_tokens(tokens: list[int], vocab: Vocab, fmt: str = "standard") -> int:
    """Reference solver: read a token list (a two-hop prompt of format ``fmt``) and return the answer token id."""
    toks = [int(t) for t in tokens if int(t) != PAD]
    end = toks.index(CTX_END)
    context = [t for t in toks[1:end] if t != FILL]
    color_to_shape = dict(zip(context[0::2], context[1::2]))
    que = len(toks) - 2
    assoc = toks[end + 1 : que]
    if fmt == "ordered":  # the k-th item belongs to the k-th declared object
        return assoc[context[0::2].index(toks[-1])]
    shape_to_item = dict(zip(assoc[0::2], assoc[1::2]))
    return shape_to_item[color_to_shape[toks[-1]]]
