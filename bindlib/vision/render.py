"""Render a prompt's context as an image: the "image-tokenized" version of the task.

The context ``c1 s1 ... cN sN`` becomes one picture with N coloured shapes at
random, non-overlapping positions; a frozen visual encoder later turns it into
patch tokens.  Random placement is the point of the exercise: an object can be
anywhere, so its position in the picture says nothing about its declaration
order (the translation invariance that breaks the positional shortcut).

Everything is plain numpy and procedural:

* ``shape_mask`` rasterises each of the 216 shapes of ``task.shape_family()``
  from a polar radius function r(theta), supersampled for anti-aliasing;
* ``place_objects`` draws non-overlapping boxes (rejection sampling, with a
  jittered-grid fallback);
* ``render_scene`` / ``render_batch`` composite the shapes in their colours;
* ``patch_grid`` lists the encoder patches under each object's box.

Conventions: positions are (x, y) = (column, row) in pixels; a box is
(x0, y0, x1, y1) with exclusive ends; patches are numbered row-major.
Colours are 0..255 RGB triples as in ``task.cube_colors()``.

Defaults (documented in the book):
* canvas 224 px (the input size of ResNet / ViT-B/16, 14 x 14 patches of 16 px);
* object size = canvas / 7 (32 px at 224: about 2 x 2 patches), margin and gap
  canvas / 56 (4 px at 224);
* background mid grey (0.5, 0.5, 0.5): the RGB cube has levels 0, 51, ..., 255,
  so mid grey sits at the centre of a cube cell and every one of the 216 colours,
  black and white included, is at least 25.5/255 per channel away from it.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from ..core.task import SHAPE_KINDS, SHAPE_STYLES, Batch, cube_colors, shape_family

# Shape geometry, in units of the object's half size (1.0 reaches the box edge).
OUTLINE = 0.16  # hollow outline thickness: 2.5 px at the default 32 px objects
HUB = 0.3  # hollow shapes are always open within this radius
CUT = 0.25  # height of the band that cuts split shapes in two: 4 px at 32 px


# ---------------------------------------------------------------- shapes
def _polar_grid(size: int, supersample: int) -> tuple[np.ndarray, np.ndarray]:
    """Radius and angle of every subpixel centre; radius 1 is the box edge, angle 0 points up."""
    n = size * supersample
    coords = (np.arange(n, dtype=np.float64) + 0.5) / n * 2.0 - 1.0  # -1..1 across the box
    x = coords[None, :]
    y = coords[:, None]
    rho = np.hypot(x, y)
    theta = np.arctan2(x, -y)  # clockwise from "up", so a vertex at 0 points to the top
    return rho, theta


def _sector(theta: np.ndarray, k: int) -> np.ndarray:
    """Angle from the nearest of k equally spaced spokes (one spoke points up): in [-pi/k, pi/k)."""
    period = 2 * math.pi / k
    return np.mod(theta + period / 2, period) - period / 2


def _zigzag(theta: np.ndarray, k: int, inner: float) -> np.ndarray:
    """Boundary radius of a k-fold polygon: straight edges from radius 1 at each spoke
    to radius ``inner`` half-way between spokes (inner = cos(pi/k) is the regular polygon)."""
    a = np.abs(_sector(theta, k))
    half = math.pi / k
    return inner * math.sin(half) / (np.sin(a) + inner * np.sin(half - a))


def _inside(kind: str, k: int, rho: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Filled silhouette of one kind with count parameter k."""
    if kind == "poly":
        # a 12-gon and a 13-gon differ little in outline, so size tells many-sided polygons apart
        scale = max(0.4, 1.0 - 0.05 * max(0, k - 5))
        return rho <= scale * _zigzag(theta, k, math.cos(math.pi / k))
    if kind == "star":
        return rho <= _zigzag(theta, k, 0.45)
    if kind == "flower":
        a = _sector(theta, k)
        petal = np.sqrt(np.clip(np.cos(a * k / 2), 0.0, 1.0))  # rounded petals meeting in cusps
        return rho <= 0.35 + 0.65 * petal
    if kind == "gear":
        a = np.abs(_sector(theta, k))
        period = 2 * math.pi / k
        tooth = np.clip((0.32 * period - a) / (0.08 * period), 0.0, 1.0)  # trapezoid teeth
        return rho <= 0.72 + 0.28 * tooth
    if kind == "cross":
        a = _sector(theta - math.pi / 2, k)  # first arm points right: 2 arms are a bar, 4 a plus
        width = min(0.42, 1.6 / k)  # arms thin out as they multiply, so gaps stay visible
        return (rho * np.abs(np.sin(a)) <= width / 2) & (rho * np.cos(a) <= 1.0) & (np.abs(a) < math.pi / 2)
    if kind == "ring":
        a = np.abs(_sector(theta, k))
        period = 2 * math.pi / k
        tooth = np.clip((0.25 * period - a) / (0.06 * period), 0.0, 1.0)  # teeth on the inner edge
        return (rho <= 1.0) & (rho >= 0.40 + 0.22 * tooth)
    raise ValueError(f"unknown shape kind {kind!r}: allowed {SHAPE_KINDS}.")


def _erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary erosion by a disc: a pixel survives if every pixel within ``radius`` is set."""
    h, w = mask.shape
    padded = np.zeros((h + 2 * radius, w + 2 * radius), dtype=bool)
    padded[radius:radius + h, radius:radius + w] = mask
    out = mask.copy()
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dx * dx + dy * dy <= radius * radius and (dx or dy):
                out &= padded[radius + dy:radius + dy + h, radius + dx:radius + dx + w]
    return out


def _styled(filled: np.ndarray, style: str, rho: np.ndarray, size: int, supersample: int) -> np.ndarray:
    """Apply a style to a filled silhouette.

    hollow: the outline, with the centre always cut open, so that shapes too thin to
    have an inside (many-armed crosses) still differ from their solid version;
    split: the silhouette cut in two by a horizontal band through the middle.
    """
    if style == "solid":
        return filled
    if style == "hollow":
        interior = _erode(filled, max(1, round(OUTLINE * size * supersample / 2)))
        return filled & ~interior & (rho >= HUB)
    if style == "split":
        n = size * supersample
        y = (np.arange(n) + 0.5) / n * 2.0 - 1.0
        return filled & (np.abs(y) >= CUT / 2)[:, None]
    raise ValueError(f"unknown shape style {style!r}: allowed {SHAPE_STYLES}.")


@functools.lru_cache(maxsize=4096)
def _cached_mask(kind: str, k: int, style: str, size: int, supersample: int) -> np.ndarray:
    rho, theta = _polar_grid(size, supersample)
    filled = _inside(kind, k, rho, theta)
    fine = _styled(filled, style, rho, size, supersample).astype(np.float32)
    coverage = fine.reshape(size, supersample, size, supersample).mean(axis=(1, 3))
    coverage.setflags(write=False)  # shared by every caller through the cache
    return coverage


def shape_mask(spec: dict, size: int, supersample: int = 4) -> np.ndarray:
    """Coverage in 0..1 (float32 [size, size]) of one shape spec from ``task.shape_family()``.

    Cached per (kind, k, style, size, supersample); the returned array is read-only.
    """
    if size < 4:
        raise ValueError(f"size={size} is too small to draw a shape; use at least 4 px.")
    if supersample < 1:
        raise ValueError(f"supersample={supersample} must be >= 1.")
    if spec["kind"] not in SHAPE_KINDS:
        raise ValueError(f"unknown shape kind {spec['kind']!r}: allowed {SHAPE_KINDS}.")
    if spec["style"] not in SHAPE_STYLES:
        raise ValueError(f"unknown shape style {spec['style']!r}: allowed {SHAPE_STYLES}.")
    return _cached_mask(spec["kind"], int(spec["k"]), spec["style"], int(size), int(supersample))


# ---------------------------------------------------------------- config
@dataclass(frozen=True)
class RenderConfig:
    """How a context becomes a picture.  Sizes left as None scale with the canvas."""

    canvas_size: int = 224
    object_size: int | None = None  # None: canvas / 7, i.e. 32 px at 224 (about 2 x 2 ViT patches)
    margin: int | None = None  # empty border; None: canvas / 56 (4 px at 224)
    min_gap: int | None = None  # least distance between two boxes; None: canvas / 56
    background: tuple[float, float, float] = (0.5, 0.5, 0.5)  # mid grey: far from all 216 colours
    max_attempts: int = 100  # rejection-sampling draws per object before the layout restarts
    max_restarts: int = 8  # fresh layouts to try before the grid fallback (crowded canvases jam)
    supersample: int = 4  # subpixels per pixel side for anti-aliased edges
    # grid > 0: every object fills one whole cell of a grid of this pitch (set it to the encoder's patch,
    # so that each object is exactly one patch token); cells are drawn at random, so placement stays
    # random, at patch resolution. 0: free placement (the default).
    grid: int = 0

    def __post_init__(self):
        scaled = max(1, round(self.canvas_size / 56))
        if self.grid:
            if self.grid < 4 or self.canvas_size % self.grid:
                raise ValueError(f"grid={self.grid} must be >= 4 and divide canvas_size={self.canvas_size}.")
            for name, value in (("object_size", self.grid), ("margin", 0), ("min_gap", 0)):
                if getattr(self, name) is None:
                    object.__setattr__(self, name, value)
            if self.object_size != self.grid or self.margin or self.min_gap:
                raise ValueError(f"grid={self.grid} places one object per cell: leave object_size, margin and "
                                 f"min_gap unset (they become {self.grid}, 0 and 0).")
        if self.object_size is None:
            object.__setattr__(self, "object_size", round(self.canvas_size / 7))
        if self.margin is None:
            object.__setattr__(self, "margin", scaled)
        if self.min_gap is None:
            object.__setattr__(self, "min_gap", scaled)
        object.__setattr__(self, "background", tuple(float(v) for v in self.background))
        self._validate()

    def _validate(self) -> None:
        if self.canvas_size < 8:
            raise ValueError(f"canvas_size={self.canvas_size} is too small; use at least 8 px.")
        if self.object_size < 4:
            raise ValueError(f"object_size={self.object_size} is too small to draw a shape; use at least 4 px.")
        if self.margin < 0 or self.min_gap < 0:
            raise ValueError(f"margin={self.margin} and min_gap={self.min_gap} must be >= 0.")
        if self.object_size + 2 * self.margin > self.canvas_size:
            raise ValueError(
                f"an object of {self.object_size} px plus a margin of {self.margin} px on each side does not fit "
                f"on a {self.canvas_size} px canvas; use a smaller object_size or margin, or a larger canvas_size."
            )
        if len(self.background) != 3 or not all(0.0 <= v <= 1.0 for v in self.background):
            raise ValueError(f"background={self.background} must be an RGB triple with values in 0..1.")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts={self.max_attempts} must be >= 1.")
        if self.max_restarts < 0:
            raise ValueError(f"max_restarts={self.max_restarts} must be >= 0.")
        if self.supersample < 1:
            raise ValueError(f"supersample={self.supersample} must be >= 1.")

    @property
    def pitch(self) -> int:
        """Least distance between the top-left corners of two objects along x or y."""
        return self.object_size + self.min_gap

    @property
    def grid_side(self) -> int:
        """Cells per side of the fallback grid."""
        return (self.canvas_size - 2 * self.margin + self.min_gap) // self.pitch

    @property
    def capacity(self) -> int:
        """Most objects a scene can hold: the fallback grid always finds room for this many."""
        return self.grid_side ** 2


# ---------------------------------------------------------------- layout
def _check_fits(n: int, cfg: RenderConfig) -> None:
    if n < 0:
        raise ValueError(f"n={n} objects: the count must be >= 0.")
    if n > cfg.capacity:
        raise ValueError(
            f"cannot place N={n} objects of {cfg.object_size} px (gap {cfg.min_gap} px, margin {cfg.margin} px) "
            f"on a {cfg.canvas_size} px canvas: at most {cfg.capacity} fit. Use N <= {cfg.capacity}, "
            f"a smaller object_size or min_gap, or a larger canvas_size."
        )


def _rejection_layout(n: int, cfg: RenderConfig, rng: np.random.Generator) -> np.ndarray | None:
    """Uniform random corners, each redrawn until it keeps its distance from those placed; None on failure."""
    lo, hi = cfg.margin, cfg.canvas_size - cfg.margin - cfg.object_size
    placed = np.empty((0, 2), dtype=np.int64)
    for _ in range(n):
        candidates = rng.integers(lo, hi + 1, size=(cfg.max_attempts, 2))  # all draws at once: vectorised
        # two boxes are apart when they are separated along x or along y
        separation = np.abs(candidates[:, None, :] - placed[None, :, :]).max(-1)
        free = (separation >= cfg.pitch).all(-1)
        if not free.any():
            return None
        placed = np.concatenate([placed, candidates[free.argmax()][None]])
    return placed


def _grid_layout(n: int, cfg: RenderConfig, rng: np.random.Generator) -> np.ndarray:
    """n random cells of a grid spread over the canvas, each object jittered inside its cell.

    Cell c starts at margin + floor(c * cell) with cell >= pitch, and the jitter leaves
    pitch pixels before the next cell's start, so neighbours never come closer than min_gap.
    """
    side = cfg.grid_side
    cell = (cfg.canvas_size - 2 * cfg.margin + cfg.min_gap) / side
    starts = cfg.margin + np.floor(np.arange(side + 1) * cell).astype(np.int64)
    slack = starts[1:] - starts[:-1] - cfg.pitch  # free pixels per cell, >= 0
    cells = rng.permutation(side * side)[:n]
    rows, cols = cells // side, cells % side
    x = starts[cols] + rng.integers(0, slack[cols] + 1)
    y = starts[rows] + rng.integers(0, slack[rows] + 1)
    return np.stack([x, y], axis=1)


def place_objects(n: int, cfg: RenderConfig, rng: np.random.Generator) -> np.ndarray:
    """Top-left (x, y) corners [n, 2] of n non-overlapping objects, at least min_gap apart.

    Rejection sampling gives uniformly scattered layouts.  Sequential placement can jam a
    crowded canvas (about 1 layout in 4 at N=16 on 224 px), so it restarts up to
    max_restarts times before a shuffled, jittered grid takes over.
    Deterministic given the rng's state. With ``cfg.grid``, n distinct random cells of the grid.
    """
    _check_fits(n, cfg)
    if cfg.grid:
        side = cfg.canvas_size // cfg.grid
        cells = rng.permutation(side * side)[:n]
        return np.stack([cells % side, cells // side], axis=1).astype(np.int64) * cfg.grid
    for _ in range(1 + cfg.max_restarts):
        corners = _rejection_layout(n, cfg, rng)
        if corners is not None:
            return corners
    return _grid_layout(n, cfg, rng)


def boxes_from_corners(corners: np.ndarray, size: int) -> np.ndarray:
    """(x0, y0, x1, y1) boxes with exclusive ends."""
    corners = np.asarray(corners, dtype=np.int64).reshape(-1, 2)
    return np.concatenate([corners, corners + size], axis=1)


# ---------------------------------------------------------------- rendering
def _paint(image: np.ndarray, corners: np.ndarray, colors_rgb, shape_specs, cfg: RenderConfig) -> None:
    """Alpha-composite each shape into image [3, H, W] in place, its coverage acting as alpha."""
    s = cfg.object_size
    for (x, y), rgb, spec in zip(corners, colors_rgb, shape_specs):
        alpha = shape_mask(spec, s, cfg.supersample)[None]
        color = np.asarray(rgb, dtype=np.float32)[:, None, None] / 255.0
        region = image[:, y:y + s, x:x + s]
        region += alpha * (color - region)


def _render_into(image: np.ndarray, colors_rgb, shape_specs, cfg: RenderConfig, seed) -> np.ndarray:
    if len(colors_rgb) != len(shape_specs):
        raise ValueError(f"got {len(colors_rgb)} colours but {len(shape_specs)} shapes; each object needs one of each.")
    rng = np.random.default_rng(seed)
    corners = place_objects(len(shape_specs), cfg, rng)
    image[:] = np.asarray(cfg.background, dtype=np.float32)[:, None, None]
    _paint(image, corners, colors_rgb, shape_specs, cfg)
    return boxes_from_corners(corners, cfg.object_size)


def render_scene(colors_rgb, shape_specs, cfg: RenderConfig, seed) -> tuple[np.ndarray, np.ndarray]:
    """Draw one context: object k in colour colors_rgb[k] (0..255 RGB) and shape shape_specs[k].

    Returns the image (float32 [3, H, W] in 0..1) and the boxes [n, 4] as (x0, y0, x1, y1).
    The layout depends only on ``seed`` (an int or a tuple of ints), never on the objects.
    """
    image = np.empty((3, cfg.canvas_size, cfg.canvas_size), dtype=np.float32)
    boxes = _render_into(image, colors_rgb, shape_specs, cfg, seed)
    return image, boxes


def batch_objects(batch: Batch, i: int) -> tuple[list[tuple[int, int, int]], list[dict]]:
    """The colours (RGB) and shape specs of row i's objects, in declaration order."""
    vocab, n = batch.vocab, int(batch.n_objects[i])
    color_ids = batch.colors[i, :n].tolist()
    shape_ids = batch.shapes[i, :n].tolist()
    colors = [cube_colors()[c - vocab.color_offset] for c in color_ids]
    shapes = [shape_family()[s - vocab.shape_offset] for s in shape_ids]
    return colors, shapes


def render_batch(batch: Batch, cfg: RenderConfig, seed: int) -> tuple[torch.Tensor, list[np.ndarray]]:
    """Render every prompt's context: a float tensor [B, 3, H, W] in 0..1 and one boxes array per row.

    Row i gets a fresh layout from (seed, i): it equals ``render_scene(*batch_objects(batch, i),
    cfg, seed=(seed, i))`` and depends on no other row.
    """
    _check_fits(int(batch.n_objects.max()), cfg)
    images = np.empty((len(batch), 3, cfg.canvas_size, cfg.canvas_size), dtype=np.float32)
    boxes = []
    for i in range(len(batch)):
        colors, shapes = batch_objects(batch, i)
        boxes.append(_render_into(images[i], colors, shapes, cfg, (seed, i)))
    return torch.from_numpy(images), boxes


def shape_image(spec: dict, rgb=(0, 0, 0), size: int = 16, background=(0.5, 0.5, 0.5),
                supersample: int = 4) -> np.ndarray:
    """One shape alone on a ``size`` x ``size`` tile (float32 [3, size, size]), for galleries."""
    alpha = shape_mask(spec, size, supersample)[None]
    bg = np.asarray(background, dtype=np.float32)[:, None, None]
    color = np.asarray(rgb, dtype=np.float32)[:, None, None] / 255.0
    return (bg + alpha * (color - bg)).astype(np.float32)


# ---------------------------------------------------------------- patches
def patch_grid(boxes, canvas: int, patch: int) -> list[np.ndarray]:
    """For each box, the sorted indices of the patches it overlaps.

    Patches tile the canvas in canvas // patch rows and columns, numbered row-major,
    as a ViT or a CNN feature map orders its patch tokens.
    """
    if patch < 1 or canvas % patch:
        raise ValueError(
            f"patch={patch} does not tile a {canvas} px canvas; use a patch size that divides the canvas "
            f"(e.g. 16 or 14 at 224)."
        )
    side = canvas // patch
    out = []
    for x0, y0, x1, y1 in np.asarray(boxes, dtype=np.int64).reshape(-1, 4):
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"box {(x0, y0, x1, y1)} is empty; boxes are (x0, y0, x1, y1) with x1 > x0 and y1 > y0.")
        cols = np.arange(max(x0, 0) // patch, min(x1 - 1, canvas - 1) // patch + 1)
        rows = np.arange(max(y0, 0) // patch, min(y1 - 1, canvas - 1) // patch + 1)
        out.append((rows[:, None] * side + cols[None, :]).reshape(-1))
    return out
