"""Chapter 3's helpers: PNG encoding, image charts, shape tiles and the box -> patches checker."""
from __future__ import annotations

import io

import numpy as np
import pytest

from bindlib.book.exercises import check_box_patches, checker_boxes
from bindlib.book.scenes import heatmap_chart, image_grid_chart, png_bytes, scene_chart, text_panel_chart
from bindlib.vision.render import RenderConfig, patch_grid, shape_image, shape_mask
from bindlib.core.task import shape_family


def decode_png(data: bytes) -> np.ndarray:
    """Decode with Pillow, an independent reader: the bytes must be a valid 8-bit RGB PNG."""
    from PIL import Image

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(data))
    assert image.mode == "RGB"
    return np.asarray(image)


def test_png_round_trips_pixels_and_upscales_by_repetition():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    assert np.array_equal(decode_png(png_bytes(image)), image)
    big = decode_png(png_bytes(image.transpose(2, 0, 1).astype(np.float32) / 255.0, scale=3))  # [3, H, W] floats
    assert big.shape == (15, 21, 3) and np.array_equal(big[::3, ::3], image)
    with pytest.raises(ValueError, match="RGB image"):
        png_bytes(np.zeros((4, 4)))


def test_shape_image_is_the_mask_blended_over_the_background():
    spec = shape_family()[0]
    tile = shape_image(spec, rgb=(255, 0, 0), size=16)
    alpha = shape_mask(spec, 16)
    assert tile.shape == (3, 16, 16)
    np.testing.assert_allclose(tile[0], 0.5 + 0.5 * alpha, atol=1e-6)
    np.testing.assert_allclose(tile[1], 0.5 - 0.5 * alpha, atol=1e-6)


def test_image_charts_build_valid_specs():
    tiles = [shape_image(s) for s in shape_family()[:3]]
    image_grid_chart(tiles, ["a", "b", "c"], columns=2).to_dict()
    image_grid_chart(tiles, ["a", "b", "c"], label_size=0).to_dict()
    with pytest.raises(ValueError, match="labels"):
        image_grid_chart(tiles, ["a"])
    scene = np.full((3, 32, 32), 0.5, dtype=np.float32)
    spec = scene_chart(scene, [[0, 0, 16, 16]], labels=["1"], patch=16, patch_numbers=True, shade={0: "x"}).to_dict()
    assert len(spec["layer"]) == 6  # image, shade, grid, numbers, boxes, box labels
    (text_panel_chart(["one", "two"]) | heatmap_chart([{"a": 1, "b": 2, "v": 0.5}], "a", "b", "v")).to_dict()


def test_box_checker_accepts_the_reference_and_names_the_failing_box():
    check_box_patches(lambda box, canvas, patch: patch_grid([box], canvas, patch)[0])
    with pytest.raises(AssertionError, match=r"Box #1 \(16, 0, 32, 16\)"):
        check_box_patches(lambda box, canvas, patch: [0])
    with pytest.raises(AssertionError, match="raised ZeroDivisionError"):
        check_box_patches(lambda box, canvas, patch: [1 // 0])


def test_checker_boxes_cover_edge_cases_and_real_layouts():
    boxes = checker_boxes(120)
    cfg = RenderConfig(canvas_size=112)
    assert len(boxes) == 120 and (0, 0, 112, 112) in boxes
    assert sum(1 for b in boxes if b[2] - b[0] == cfg.object_size == b[3] - b[1]) > 60
    assert all(0 <= b[0] < b[2] <= 112 and 0 <= b[1] < b[3] <= 112 for b in boxes)
