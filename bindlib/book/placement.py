"""Chapter 3: where the k-th declared object ends up, in a text prompt (token positions) and in a picture
(the patch under its centre), and how much of the declaration slot the place alone gives away."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch


def text_places(batch) -> tuple[np.ndarray, np.ndarray]:
    """(slot, token position) of the colour and the shape token of every declared object of a text batch."""
    valid = batch.color_pos >= 0
    slots = torch.arange(batch.color_pos.shape[1]).expand_as(batch.color_pos)[valid].numpy()
    return np.concatenate([slots, slots]), np.concatenate([batch.color_pos[valid].numpy(), batch.shape_pos[valid].numpy()])


def image_places(batch, render_cfg, patch: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(slot, index of the patch under the object's centre) of every object, with the layouts ``render_batch``
    draws for ``batch`` rendered with ``seed``."""
    from ..vision.render import place_objects

    side, half = render_cfg.canvas_size // patch, render_cfg.object_size / 2
    slots, patches = [], []
    for i in range(len(batch)):
        corners = place_objects(int(batch.n_objects[i]), render_cfg, np.random.default_rng((seed, i)))
        for k, (x, y) in enumerate(corners):
            slots.append(k)
            patches.append(int((y + half) // patch * side + (x + half) // patch))
    return np.array(slots), np.array(patches)


def share_rows(slots: np.ndarray, places: np.ndarray, n_places: int, n_slots: int, place: str) -> list[dict]:
    """For each slot, the share of its objects at each place (rows for a heatmap)."""
    rows = []
    for k in range(n_slots):
        counts = np.bincount(places[slots == k], minlength=n_places) / max(1, int((slots == k).sum()))
        rows += [{"slot": k + 1, place: p, "share": float(counts[p])} for p in range(n_places)]
    return rows


def spread_table(slots: np.ndarray, places: np.ndarray, n_places: int, n_slots: int) -> pd.DataFrame:
    """Per slot: in how many places its objects occur, and the most and least frequent place's share."""
    rows = []
    for k in range(n_slots):
        counts = np.bincount(places[slots == k], minlength=n_places) / max(1, int((slots == k).sum()))
        seen = counts[counts > 0]
        rows.append({"slot": k + 1, "places used": int(np.count_nonzero(counts)),
                     "most frequent": f"{counts.max():.1%}", "least frequent (used)": f"{seen.min():.1%}"})
    return pd.DataFrame(rows).set_index("slot")


def position_guess_accuracy(slots: np.ndarray, places: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """Learn on a random half the most frequent slot at each place; return (accuracy of that guess on the other
    half, accuracy of always guessing slot 1)."""
    order = np.random.default_rng(seed).permutation(len(slots))
    slots, places = slots[order], places[order]
    half = len(slots) // 2
    best = {p: np.bincount(slots[:half][places[:half] == p]).argmax() for p in np.unique(places[:half])}
    guesses = np.array([best.get(p, 0) for p in places[half:]])
    return float((guesses == slots[half:]).mean()), float((slots[half:] == 0).mean())
