"""Chapter 1 exercise: answer a two-hop prompt by reading it, as a person would.

The student writes ``answer(prompt: list[str]) -> str``.  ``prompt`` is one prompt
as readable token strings, for example

    ["BOS", "#000099", "poly4", "#000000", "star5", "CTX_END",
     "star5", "kite", "poly4", "saw", "QUE", "#000099"]

and the function returns the answer item's name ("saw").  ``check_answer``
runs it on prompts of every N, every association order and several offsets.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable, Iterator

import numpy as np
import torch

from ..core.model import ModelConfig, Transformer
from ..core.task import ASSOCIATION_ORDERS, NOISE, Batch, TaskConfig, Vocab, sample_batch
from ..core.relayout import add_noise
from ..vision.render import RenderConfig, patch_grid, place_objects
from .checks import stub_aware

# Offsets (filler tokens after BOS) the checker uses: none, one, and two that
# push every position far from where it usually is.
CHECK_OFFSETS = (0, 1, 5, 12)

# Tokens that carry no content: a solver must skip them wherever they appear.
_FILLER_TOKENS = frozenset({"PAD", "FILL", "NOISE"})


@lru_cache(maxsize=None)
def token_names(vocab: Vocab) -> tuple[str, ...]:
    """``vocab.names()``, computed once per vocabulary (building the colour order is slow)."""
    return tuple(vocab.names())


def prompt_strings(batch: Batch, i: int = 0) -> list[str]:
    """Row i of a batch as a list of token strings, up to and including the query token."""
    names = token_names(batch.vocab)
    last = int(batch.query_pos[i])
    return [names[int(t)] for t in batch.tokens[i, : last + 1]]


def target_string(batch: Batch, i: int = 0) -> str:
    """The name of row i's answer token."""
    return token_names(batch.vocab)[int(batch.target[i])]


def _pairs(tokens: list[str]) -> dict[str, str]:
    """Read ``a1 b1 a2 b2 ...`` as the mapping {a1: b1, a2: b2, ...}."""
    return dict(zip(tokens[0::2], tokens[1::2]))


def reference_answer(prompt: list[str]) -> str:
    """Solve a prompt by content: look the query up in the two tables the prompt declares.

    Handles the task (``QUE colour``) and its one-hop parts (``QSHAPE colour`` and
    ``QUE shape``).  Written from the prompt format alone, independently of
    ``bindlib.core.task.answer_from_tokens``, so the two can check each other.
    """
    tokens = [t for t in prompt if t not in _FILLER_TOKENS]
    end = tokens.index("CTX_END")
    marker, query = tokens[-2], tokens[-1]
    shape_of_color = _pairs(tokens[1:end])  # skip BOS
    item_of_shape = _pairs(tokens[end + 1 : -2])
    if marker == "QSHAPE":
        return shape_of_color[query]
    shape = query if query in item_of_shape else shape_of_color[query]
    return item_of_shape[shape]


def _checker_settings(n_prompts: int, max_n: int) -> Iterator[tuple[int, str, int]]:
    """(N, association order, offset) for each prompt: N varies fastest, so even a
    short check covers every N, then every order, then every offset."""
    for k in range(n_prompts):
        n = 1 + k % max_n
        order = ASSOCIATION_ORDERS[(k // max_n) % len(ASSOCIATION_ORDERS)]
        offset = CHECK_OFFSETS[(k // (max_n * len(ASSOCIATION_ORDERS))) % len(CHECK_OFFSETS)]
        yield n, order, offset


def checker_prompts(n_prompts: int = 200, seed: int = 0, task_cfg: TaskConfig | None = None):
    """Yield (settings, prompt, expected answer) for the prompts ``check_answer`` uses."""
    task_cfg = task_cfg or TaskConfig()
    max_n = max(task_cfg.id_range[1], task_cfg.ood_range[1])
    for k, (n, order, offset) in enumerate(_checker_settings(n_prompts, max_n)):
        batch = sample_batch(task_cfg, 1, seed=seed * 1_000_003 + k, n=n, association_order=order, offset=offset)
        prompt = prompt_strings(batch, 0)
        expected = reference_answer(prompt)
        if expected != target_string(batch, 0):  # the two independent solvers must agree
            raise RuntimeError(f"reference_answer disagrees with the task generator on {' '.join(prompt)}")
        yield {"N": n, "association order": order, "offset": offset}, prompt, expected


def _failure(k: int, settings: dict, prompt: list[str], expected: str, what: str) -> str:
    described = ", ".join(f"{key} {value}" for key, value in settings.items())
    return (
        f"Prompt #{k} ({described}) {what}.\n"
        f"  prompt:   {' '.join(prompt)}\n"
        f"  expected: {expected!r}"
    )


@stub_aware
def check_answer(fn: Callable[[list[str]], str], n_prompts: int = 200, seed: int = 0,
                 task_cfg: TaskConfig | None = None) -> None:
    """Run ``fn`` on ``n_prompts`` prompts; raise AssertionError at the first wrong answer."""
    for k, (settings, prompt, expected) in enumerate(checker_prompts(n_prompts, seed, task_cfg)):
        try:
            returned = fn(list(prompt))  # a copy: a solver that edits its input cannot spoil the message
        except Exception as err:
            raise AssertionError(_failure(k, settings, prompt, expected, f"raised {type(err).__name__}: {err}")) from err
        if returned != expected:
            raise AssertionError(_failure(k, settings, prompt, expected, "was answered wrongly") + f"\n  returned: {returned!r}")
    print(f"All {n_prompts} prompts answered correctly.")


# ---------------------------------------------------------------- chapter 3: the patches under a box
# The student writes ``box_patches(box, canvas, patch) -> list[int]``: the row-major indices of the
# patches that a box (x0, y0, x1, y1), with exclusive ends, overlaps. The reference is
# ``render.patch_grid``.
def checker_boxes(n_boxes: int = 300, seed: int = 0, canvas: int = 112, patch: int = 16) -> list[tuple[int, int, int, int]]:
    """Boxes for ``check_box_patches``: hand-picked edge cases first, then object boxes from real
    layouts of the cpu profile, then boxes of random sizes."""
    p, c = patch, canvas
    boxes = [
        (0, 0, p, p),  # exactly the first patch
        (p, 0, 2 * p, p),  # exactly the second: its end is exclusive, so patch 2 is not touched
        (p - 1, 0, p + 1, 1),  # two pixels straddling a vertical border
        (0, p - 1, 1, p + 1),  # ... and a horizontal one
        (c - p, c - p, c, c),  # the last patch, touching the canvas edge
        (3, 5, 3 + p, 5 + p),  # an object-sized box off the grid: 2 x 2 patches
        (2 * p, 2 * p, 2 * p + 1, 2 * p + 1),  # a single pixel at a patch corner
        (0, 0, c, c),  # the whole canvas
    ]
    rng = np.random.default_rng(seed)
    cfg = RenderConfig(canvas_size=canvas)
    while len(boxes) < n_boxes * 2 // 3:
        corners = place_objects(int(rng.integers(1, 9)), cfg, rng)
        boxes += [(int(x), int(y), int(x) + cfg.object_size, int(y) + cfg.object_size) for x, y in corners]
    while len(boxes) < n_boxes:
        x0, y0 = (int(v) for v in rng.integers(0, c, size=2))
        x1, y1 = int(rng.integers(x0 + 1, c + 1)), int(rng.integers(y0 + 1, c + 1))
        boxes.append((x0, y0, x1, y1))
    return boxes[:n_boxes]


@stub_aware
def check_box_patches(fn: Callable, n_boxes: int = 300, seed: int = 0, canvas: int = 112, patch: int = 16) -> None:
    """Run ``fn(box, canvas, patch)`` on ``n_boxes`` boxes; raise AssertionError at the first wrong answer."""
    for k, box in enumerate(checker_boxes(n_boxes, seed, canvas, patch)):
        expected = [int(v) for v in patch_grid([box], canvas, patch)[0]]
        where = f"Box #{k} {box} (x0, y0, x1, y1; ends exclusive) on a {canvas} px canvas with {patch} px patches"
        try:
            returned = fn(box, canvas, patch)
            got = sorted(int(v) for v in returned)
        except Exception as err:
            raise AssertionError(f"{where}: your function raised {type(err).__name__}: {err}") from err
        if got != expected:
            raise AssertionError(f"{where}.\n  expected patches: {expected}\n  returned:         {got}")
    print(f"All {n_boxes} boxes mapped to the right patches.")


# ---------------------------------------------------------------- chapter 4: are noise tokens really unattendable?
@stub_aware
def check_noise_leak(fn, seed: int = 0) -> str:
    """Chapter 4 exercise. ``fn(model, batch) -> float`` must return how much the logits at real
    (attendable) tokens change when every NOISE token's content is replaced by other tokens.

    The checker runs it on a model whose key mask hides the noise (the answer must be ~0) and on
    the same batch with the key mask switched on everywhere (the answer must be clearly > 0).
    """
    task = TaskConfig()
    torch.manual_seed(seed)
    model = Transformer(ModelConfig(vocab_size=task.vocab.size, max_len=128, n_layers=2, d_model=32, n_heads=2, d_ff=64)).eval()
    batch = add_noise(sample_batch(task, 16, seed, n=(2, 6)), 16, seed=seed + 1)
    hidden = float(fn(model, batch))
    if not hidden < 1e-4:
        raise AssertionError(f"with the key mask hiding the noise your function returned {hidden:.3g}; it should be ~0. "
                             f"Compare logits only where batch.key_mask is True.")
    leaky = batch.select(torch.arange(len(batch)))
    leaky.key_mask = torch.arange(leaky.tokens.shape[1])[None, :] <= leaky.query_pos[:, None]  # noise now visible
    seen = float(fn(model, leaky))
    if not seen > 1e-3:
        raise AssertionError(f"with the noise made attendable your function returned {seen:.3g}; it should be clearly > 0. "
                             f"Did you replace the NOISE tokens (token id {NOISE}) with other ids before the second run?")
    return f"correct: {hidden:.1e} change when noise is masked, {seen:.3f} when it is not"


# ---------------------------------------------------------------- helpers of the checkers (chapter 8 uses them too)
def pick(returned, keys) -> dict:
    """Only ``keys`` of a student's returned dict (a missing key raises KeyError)."""
    return {key: returned[key] for key in keys}


def compare_case(where: str, answer: Callable[[], object], expected) -> None:
    """Run ``answer()`` (a student's function on one case, normalised) and compare it with ``expected``;
    either failure is one AssertionError that starts with ``where`` (the case, as the student sees it)."""
    try:
        got = answer()
    except Exception as err:
        raise AssertionError(f"{where}\n  your function raised {type(err).__name__}: {err}") from err
    if got != expected:
        raise AssertionError(f"{where}\n  expected: {expected}\n  returned: {got}")


# The exercises on the methods themselves (accuracy, patching, position-id swap, knockout, identity-split
# probe) live in bindlib.book.checks; they are importable from here as well.
from .checks import (check_accuracy, check_gap, check_identity_probe, check_knockout, check_patching,  # noqa: E402,F401
                     check_position_swap)
from .method_checks import (check_break_plateau, check_correction, check_hop_term, check_object_tokens,  # noqa: E402,F401
                            check_pair_targets, check_probe_data, check_routing, check_window_knockout, plateau_config)
