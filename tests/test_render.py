"""The context renderer (bindlib.render): shapes are distinct, layouts never overlap,
pixels carry their object's colour, and batches are deterministic row by row."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from bindlib.vision.render import RenderConfig, batch_objects, patch_grid, place_objects, render_batch, render_scene, shape_mask
from bindlib.core.task import TaskConfig, cube_colors, sample_batch, shape_family

CFG = RenderConfig()  # 224 px canvas, 32 px objects
SMALL = RenderConfig(canvas_size=96, object_size=12)  # a CPU-sized canvas with its own object size
FAMILY = shape_family()
MIN_SHAPE_DISTANCE = 0.03  # fraction of a 32 x 32 box's pixels; measured minimum is 0.037


def assert_apart(boxes: np.ndarray, cfg: RenderConfig) -> None:
    """Every box lies inside the margins and any two are separated by min_gap along x or y."""
    x0, y0, x1, y1 = boxes.T
    assert (x0 >= cfg.margin).all() and (y0 >= cfg.margin).all()
    assert (x1 <= cfg.canvas_size - cfg.margin).all() and (y1 <= cfg.canvas_size - cfg.margin).all()
    assert ((x1 - x0) == cfg.object_size).all() and ((y1 - y0) == cfg.object_size).all()
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            gap_x = max(x0[j] - x1[i], x0[i] - x1[j])
            gap_y = max(y0[j] - y1[i], y0[i] - y1[j])
            assert max(gap_x, gap_y) >= cfg.min_gap, (boxes[i], boxes[j])


def scene_objects(n: int, start: int = 0):
    colors = [cube_colors()[(start + k) % 216] for k in range(n)]
    shapes = [FAMILY[(start + 5 * k) % 216] for k in range(n)]
    return colors, shapes


# ---------------------------------------------------------------- shapes
def test_masks_are_coverage_in_unit_range():
    for spec in FAMILY[::7]:
        mask = shape_mask(spec, 32)
        assert mask.shape == (32, 32) and mask.dtype == np.float32
        assert 0.0 <= mask.min() and mask.max() <= 1.0
        assert (mask >= 0.5).sum() > 20, spec["name"]  # something visible is drawn
        assert ((mask > 0) & (mask < 1)).any(), spec["name"]  # anti-aliased edges
        rows, cols = np.nonzero(mask >= 0.5)
        assert np.ptp(rows) >= 14 and np.ptp(cols) >= 14, spec["name"]  # it spans about half its box or more


def test_all_216_shapes_are_pairwise_distinct():
    masks = np.stack([shape_mask(spec, 32) for spec in FAMILY]).reshape(len(FAMILY), -1)
    on = (masks >= 0.5).astype(np.float32)
    differing = (on @ (1 - on).T + (1 - on) @ on.T) / on.shape[1]  # fraction of pixels that differ
    np.fill_diagonal(differing, 1.0)
    i, j = np.unravel_index(differing.argmin(), differing.shape)
    assert differing.min() >= MIN_SHAPE_DISTANCE, (FAMILY[i]["name"], FAMILY[j]["name"], differing.min())


def test_styles_differ_for_every_kind_and_count():
    for spec in FAMILY[:72]:
        masks = [shape_mask({**spec, "style": style}, 32) >= 0.5 for style in ("solid", "hollow", "split")]
        solid, hollow, split = masks
        assert hollow.sum() < solid.sum() and split.sum() < solid.sum(), spec["name"]
        assert (hollow & ~solid).sum() == 0 and (split & ~solid).sum() == 0, spec["name"]


def test_mask_cache_returns_read_only_arrays():
    mask = shape_mask(FAMILY[0], 32)
    assert shape_mask(FAMILY[0], 32) is mask
    with pytest.raises(ValueError):
        mask[0, 0] = 1.0


# ---------------------------------------------------------------- layout
@pytest.mark.parametrize("cfg,max_n", [(CFG, 16), (SMALL, 8)])
def test_boxes_never_overlap(cfg, max_n):
    for seed in range(40):
        n = 1 + seed % max_n
        corners = place_objects(n, cfg, np.random.default_rng(seed))
        assert corners.shape == (n, 2)
        assert_apart(np.concatenate([corners, corners + cfg.object_size], 1), cfg)


def test_grid_fallback_also_keeps_objects_apart():
    crowded = dataclasses.replace(CFG, max_attempts=1, max_restarts=0)  # rejection almost always fails
    for seed in range(20):
        corners = place_objects(crowded.capacity, crowded, np.random.default_rng(seed))
        assert len(corners) == crowded.capacity == 36
        assert_apart(np.concatenate([corners, corners + crowded.object_size], 1), crowded)


def test_layout_is_deterministic_and_seed_dependent():
    colors, shapes = scene_objects(8)
    image_a, boxes_a = render_scene(colors, shapes, CFG, seed=3)
    image_b, boxes_b = render_scene(colors, shapes, CFG, seed=3)
    _, boxes_c = render_scene(colors, shapes, CFG, seed=4)
    assert np.array_equal(image_a, image_b) and np.array_equal(boxes_a, boxes_b)
    assert not np.array_equal(boxes_a, boxes_c)


# ---------------------------------------------------------------- pixels
def test_objects_carry_their_colour_and_the_rest_is_background():
    colors, shapes = scene_objects(8, start=1)
    image, boxes = render_scene(colors, shapes, CFG, seed=0)
    assert image.shape == (3, 224, 224) and image.dtype == np.float32
    covered = np.zeros((224, 224), dtype=bool)
    for (x0, y0, x1, y1), rgb, spec in zip(boxes, colors, shapes):
        mask = shape_mask(spec, CFG.object_size)
        region = image[:, y0:y1, x0:x1]
        inside = region[:, mask == 1.0]
        assert inside.shape[1] > 0
        np.testing.assert_allclose(inside, np.broadcast_to((np.array(rgb) / 255.0)[:, None], inside.shape), atol=1e-6)
        covered[y0:y1, x0:x1] = True
    assert (image[:, ~covered] == 0.5).all()


def test_solid_shape_centre_is_its_colour():
    spec = next(s for s in FAMILY if s["kind"] == "poly" and s["k"] == 4 and s["style"] == "solid")
    rgb = (204, 51, 0)
    image, ((x0, y0, x1, y1),) = render_scene([rgb], [spec], SMALL, seed=5)
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    centre = image[:, cy - 2:cy + 2, cx - 2:cx + 2]
    np.testing.assert_allclose(centre, np.broadcast_to((np.array(rgb) / 255.0)[:, None, None], centre.shape), atol=1e-6)


# ---------------------------------------------------------------- batches
def test_render_batch_shape_and_row_independence():
    task = TaskConfig()
    batch = sample_batch(task, 4, seed=0, n=(2, 8))
    images, boxes = render_batch(batch, SMALL, seed=11)
    assert images.shape == (4, 3, 96, 96) and images.dtype == torch.float32
    assert [len(b) for b in boxes] == batch.n_objects.tolist()
    # row i is exactly the scene of row i's objects under seed (seed, i)
    colors, shapes = batch_objects(batch, 2)
    image, row_boxes = render_scene(colors, shapes, SMALL, seed=(11, 2))
    assert np.array_equal(images[2].numpy(), image) and np.array_equal(boxes[2], row_boxes)
    # changing row 1's objects changes row 1 only
    vocab = batch.vocab
    unused = next(c for c in range(vocab.color_offset, vocab.shape_offset) if c not in batch.colors[1].tolist())
    other = batch.colors.clone()
    other[1, 0] = unused
    changed, _ = render_batch(dataclasses.replace(batch, colors=other), SMALL, seed=11)
    assert not torch.equal(changed[1], images[1])
    for i in (0, 2, 3):
        assert torch.equal(changed[i], images[i])


def test_render_batch_maps_vocab_ids_to_colours_and_shapes():
    batch = sample_batch(TaskConfig(n_colors=216, n_shapes=216), 2, seed=1, n=3)
    colors, shapes = batch_objects(batch, 0)
    vocab = batch.vocab
    assert colors[0] == cube_colors()[int(batch.colors[0, 0]) - vocab.color_offset]
    assert shapes[2] == FAMILY[int(batch.shapes[0, 2]) - vocab.shape_offset]


# ---------------------------------------------------------------- patches
def test_patch_grid_marks_the_patches_under_each_box():
    boxes = np.array([[0, 0, 16, 16], [16, 0, 48, 32], [200, 200, 224, 224], [15, 17, 17, 18]])
    cells = patch_grid(boxes, 224, 16)
    assert cells[0].tolist() == [0]
    assert cells[1].tolist() == [1, 2, 15, 16]
    assert cells[2].tolist() == [12 * 14 + 12, 12 * 14 + 13, 13 * 14 + 12, 13 * 14 + 13]
    assert cells[3].tolist() == [14, 15]  # a box straddling a patch border touches both
    _, scene_boxes = render_scene(*scene_objects(6), CFG, seed=2)
    for box, idx in zip(scene_boxes, patch_grid(scene_boxes, 224, 16)):
        marked = np.zeros((224, 224), dtype=bool)
        for p in idx:
            r, c = divmod(int(p), 14)
            marked[16 * r:16 * r + 16, 16 * c:16 * c + 16] = True
        x0, y0, x1, y1 = box
        assert marked[y0:y1, x0:x1].all()  # every pixel of the box is in a marked patch
        rows, cols = np.nonzero(marked)
        assert rows.min() > y0 - 16 and rows.max() < y1 + 16 and cols.min() > x0 - 16 and cols.max() < x1 + 16


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "make,words",
    [
        (lambda: place_objects(26, RenderConfig(canvas_size=96), np.random.default_rng(0)), ["N=26", "96 px", "at most 25", "smaller object_size"]),
        (lambda: render_batch(sample_batch(TaskConfig(), 1, n=16), RenderConfig(canvas_size=64, object_size=20), 0), ["N=16", "64 px", "at most 9", "larger canvas_size"]),
        (lambda: RenderConfig(canvas_size=64, object_size=64), ["64 px", "margin", "smaller object_size"]),
        (lambda: RenderConfig(object_size=2), ["object_size=2", "at least 4"]),
        (lambda: RenderConfig(background=(0.5, 2.0, 0.5)), ["background", "0..1"]),
        (lambda: RenderConfig(max_attempts=0), ["max_attempts=0"]),
        (lambda: patch_grid(np.array([[0, 0, 8, 8]]), 224, 15), ["patch=15", "divides the canvas"]),
        (lambda: render_scene([(0, 0, 0)], [], CFG, 0), ["1 colours but 0 shapes"]),
        (lambda: shape_mask({"kind": "blob", "k": 3, "style": "solid"}, 32), ["blob", "allowed"]),
    ],
)
def test_impossible_configs_raise_with_problem_and_fix(make, words):
    with pytest.raises(ValueError) as err:
        make()
    for word in words:
        assert word in str(err.value)
