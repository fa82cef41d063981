"""Pictures made with Pillow: sizes, where the overlays land, and clear errors."""
import numpy as np
import pytest
import torch

from bindlib.book.pictures import MAX_WIDTH, Picture, image_grid, scene, side_by_side, text_panel, to_pil


def test_to_pil_accepts_both_layouts_and_upscales_crisply():
    chw = torch.zeros(3, 4, 5)
    chw[0, 1, 2] = 1.0                                    # one red pixel at row 1, column 2
    im = to_pil(chw, scale=3)
    assert im.size == (15, 12)
    assert im.getpixel((2 * 3, 1 * 3)) == (255, 0, 0) and im.getpixel((2 * 3 + 2, 1 * 3 + 2)) == (255, 0, 0)
    assert im.getpixel((0, 0)) == (0, 0, 0)
    assert to_pil(np.zeros((4, 5, 3), np.uint8)).size == (5, 4)
    with pytest.raises(ValueError, match="RGB image"):
        to_pil(np.zeros((4, 5)))


def test_picture_is_a_png_for_jupyter_and_never_wider_than_the_column(tmp_path):
    wide = Picture(to_pil(np.zeros((10, 2000, 3), np.uint8)))
    assert wide.size[0] == MAX_WIDTH
    png = wide._repr_png_()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert wide.save(tmp_path / "p.png").read_bytes() == png
    with pytest.raises(ValueError, match=".png"):
        wide.save(tmp_path / "p.jpg")


def test_image_grid_places_each_image_in_its_cell():
    colours = [(1.0, 0, 0), (0, 1.0, 0), (0, 0, 1.0)]
    images = [np.ones((8, 8, 3)) * np.array(c) for c in colours]
    pic = image_grid(images, labels=["r", "g", "b"], columns=2, scale=2)
    arr = np.asarray(pic.image)
    for colour in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]:
        assert (arr.reshape(-1, 3) == colour).all(1).sum() >= 16 * 16, colour
    assert pic.size[0] < pic.size[1] * 3                 # two columns, two rows
    with pytest.raises(ValueError, match="labels"):
        image_grid(images, labels=["only one"])


def test_scene_shades_the_named_patch_and_draws_boxes():
    image = np.full((32, 32, 3), 0.5)
    plain = np.asarray(scene(image, scale=2).image).astype(int)
    shaded = np.asarray(scene(image, patch=16, shade={3: "object 1"}, scale=2).image).astype(int)
    centre_3, centre_0 = (48, 48), (16, 16)             # patch 3 is bottom-right of a 2 x 2 grid
    assert shaded[centre_3][0] > plain[centre_3][0] and shaded[centre_3][2] < plain[centre_3][2]  # tinted yellow
    assert (shaded[centre_0] == plain[centre_0]).all()
    boxed = np.asarray(scene(image, boxes=[[0, 16, 16, 32]], labels=["1"], scale=2, box_color="#ff0000").image)
    assert tuple(boxed[40, 0]) == (255, 0, 0)            # left edge of the box
    with pytest.raises(ValueError, match="patches 0..3"):
        scene(image, patch=16, shade={4: "x"})
    with pytest.raises(ValueError, match="whole number"):
        scene(image, patch=10)


def test_text_panel_and_side_by_side():
    panel = text_panel(["#ff0000 star4", "#00ff00 ring5"], colors=["#ff0000", "#00ff00"], title="context")
    assert (np.asarray(panel.image).reshape(-1, 3) == (255, 0, 0)).all(1).any()
    pic = scene(np.zeros((16, 16, 3)), scale=4)
    row = side_by_side(panel, pic, gap=10)
    assert row.size == (panel.size[0] + 10 + pic.size[0], max(panel.size[1], pic.size[1]))
    with pytest.raises(ValueError, match="colours"):
        text_panel(["a", "b"], colors=["#000000"])
