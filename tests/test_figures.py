"""bindlib.book.figures: pictures are images, and the attention chart shows real attention rows."""
import pytest
import torch
from PIL import Image

from bindlib.book import figures as G
from bindlib.book.checks import _tiny_model
from bindlib.core.task import sample_batch


def test_pictures_are_images():
    model, task = _tiny_model(0)
    batch = sample_batch(task, 2, seed=3, n=4)
    for img in (G.two_hop_figure(batch, 1), G.deep_supervision_figure(4, 1), G.grounding_figure()):
        assert isinstance(img, Image.Image) and img.width > 300 and img.getextrema() != ((255, 255),) * 3


def test_attention_rows_are_distributions_over_the_prompt():
    model, task = _tiny_model(0, n_layers=2)
    batch = sample_batch(task, 3, seed=1, n=5)
    rows = G.attention_rows(model, batch, 2)
    n_tokens = int(batch.query_pos[2]) + 1
    assert len(rows) == 2 * 4 * n_tokens
    for layer in range(2):
        for head in range(4):
            total = sum(r["weight"] for r in rows if r["layer"] == layer and r["head"] == head)
            assert total == pytest.approx(1.0, abs=1e-4)
    assert G.attention_chart(model, batch, 0).to_dict()["mark"]["type"] == "rect"
