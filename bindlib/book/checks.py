"""Checkers for the exercises on the methods themselves: read-out accuracy (chapter 2), last-token residual
patching with nnsight and the position-id swap (chapter 5), an attention-knockout hook (chapter 6) and a probe
with a train/test split by object identity (chapter 7).

Each checker runs the student's function and the library's reference on fresh inputs (new seeds, every N,
several offsets) and raises AssertionError, naming the first input where they differ. Import them from
``bindlib.book.exercises``.
"""
from __future__ import annotations

import functools
from typing import Callable

from ..core.task import Batch, TaskConfig, sample_batch

NOT_IMPLEMENTED = "not implemented yet"


def not_implemented_message(fn) -> str:
    """What a checker says about a stub that still raises NotImplementedError."""
    name = getattr(fn, "__name__", "your function")
    return (f"{NOT_IMPLEMENTED}: {name} still raises NotImplementedError. Replace the stub's body with your code "
            f"and run the cell again.")


def stub_aware(check: Callable) -> Callable:
    """Make a checker turn a stub's NotImplementedError into an AssertionError that starts with
    "not implemented yet", whether the checker lets it escape or wraps it in its own AssertionError."""

    @functools.wraps(check)
    def wrapper(fn, *args, **kwargs):
        try:
            return check(fn, *args, **kwargs)
        except NotImplementedError:
            raise AssertionError(not_implemented_message(fn)) from None
        except AssertionError as err:
            if isinstance(err.__cause__, NotImplementedError):
                raise AssertionError(not_implemented_message(fn)) from None
            raise

    return wrapper

# Each checker runs the student's function and the library's reference on fresh inputs (new seeds,
# every N, several offsets) and raises AssertionError, naming the first input where they differ.
def _fail(message: str) -> AssertionError:
    """An AssertionError whose message is wrapped at 90 columns (it is printed in the chapters)."""
    import textwrap

    lines = [textwrap.fill(line, 90, subsequent_indent="  ", break_on_hyphens=False) if len(line) > 90 else line
             for line in message.splitlines()]
    return AssertionError("\n".join(lines))


def _tiny_model(seed: int = 0, n_layers: int = 3):
    """A small random Transformer: fast, and its outputs are as sensitive to mistakes as a trained one's."""
    import torch

    from ..core.model import ModelConfig, Transformer

    task = TaskConfig()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Transformer(ModelConfig(vocab_size=task.vocab.size, max_len=128, n_layers=n_layers, d_model=32,
                                        n_heads=4, d_ff=64))
    return model.eval(), task


def _fresh_batches(task: TaskConfig, seed: int, n_batches: int = 6, size: int = 24):
    """Batches of mixed N (ID and OOD ranges), with and without an offset of filler tokens."""
    for k in range(n_batches):
        n = task.id_range if k % 2 == 0 else task.ood_range
        yield sample_batch(task, size, seed=seed * 1000 + k, n=tuple(n), offset=(0, 3)[k % 2 == 1 and k > 2])


def reference_accuracy(model, batch: Batch) -> float:
    """Share of rows whose argmax over the whole vocabulary at the read-out token is the answer."""
    import torch

    with torch.no_grad():
        logits = model(**batch.model_inputs())
    rows = torch.arange(len(batch))
    return (logits[rows, batch.query_pos].argmax(-1) == batch.target).float().mean().item()


@stub_aware
def check_accuracy(fn: Callable, seed: int = 1) -> None:
    """Chapter 2 exercise. ``fn(model, batch) -> float``: the share of prompts whose highest logit at the
    read-out token (``batch.query_pos``) is the answer token (``batch.target``)."""
    import torch

    from ..core.io import CHECKPOINTS_DIR, load_checkpoint

    models = [("a random model", _tiny_model(seed)[0])]
    trained = CHECKPOINTS_DIR / "text_only_cpu_s0"
    if (trained / "model.json").exists():
        models.append(("the trained text-only model", load_checkpoint(trained)[0].eval()))
    task = TaskConfig()
    for label, model in models:
        for k, batch in enumerate(_fresh_batches(task, seed, n_batches=4)):
            expected = reference_accuracy(model, batch)
            try:
                with torch.no_grad():
                    got = float(fn(model, batch))
            except Exception as err:
                raise _fail(f"{label}, batch #{k}: your function raised {type(err).__name__}: {err}") from err
            if abs(got - expected) > 1e-6:
                raise _fail(f"{label}, batch #{k} (N {int(batch.n_objects.min())}..{int(batch.n_objects.max())}):"
                                     f" expected accuracy {expected:.4f}, returned {got:.4f}.\nRead the logits at "
                                     f"batch.query_pos of each row, not at the last (padded) position.")
    print(f"Correct on {len(models) * 4} fresh batches.")


@stub_aware
def check_patching(fn: Callable, seed: int = 2) -> None:
    """Chapter 5 exercise. ``fn(model, base, source, layer)`` returns the base's read-out logits [B, V] after
    the residual stream entering block ``layer`` (``blocks[layer].hook_resid_pre``) at the base's read-out
    token is overwritten with the source's at the source's read-out token. Checked against
    ``bindlib.interp.patched_logits`` on fresh pairs at every layer."""
    import torch

    from ..interp.pairs import make_pairs
    from ..interp.patching import patched_logits

    model, task = _tiny_model(seed)
    for k in range(3):
        pairs = make_pairs(task, 16, seed=seed * 100 + k, n=(4, task.ood_range[1]))
        for layer in range(len(model.blocks)):
            expected = patched_logits(model, pairs, layer)
            try:
                got = torch.as_tensor(fn(model, pairs.base, pairs.source, layer)).detach().float()
            except Exception as err:
                raise _fail(f"pairs #{k}, layer {layer}: your function raised {type(err).__name__}: {err}") from err
            if got.shape != expected.shape:
                raise _fail(f"pairs #{k}, layer {layer}: expected logits of shape {tuple(expected.shape)} "
                                     f"(one row per pair, at the base's read-out token), got {tuple(got.shape)}")
            if not torch.allclose(got, expected, atol=1e-4):
                diff = (got - expected).abs().max().item()
                raise _fail(f"pairs #{k}, layer {layer}: logits differ from the reference by up to {diff:.3g}. "
                                     f"Patch only the read-out token, with the source's read-out token, at "
                                     f"blocks[{layer}].hook_resid_pre.")
    print("Your patch matches the reference at every layer, on 48 fresh pairs.")


def reference_swapped_position_ids(batch: Batch, i: int, j: int):
    """Position ids with objects i and j's declaration tokens (colour and shape) trading positions."""
    import torch

    rows = torch.arange(len(batch))
    pid = batch.position_ids.clone()
    for a, c in ((i, j), (j, i)):
        for pos in (batch.color_pos, batch.shape_pos):
            pid[rows, pos[:, a]] = batch.position_ids[rows, pos[:, c]]
    return pid


def _compare_position_ids(label: str, call: Callable, batch, expected, hint: Callable | None = None) -> None:
    """Run a student's position-id function (``call()``) and fail, naming ``label``, the first wrong row, its N and
    ``hint(got_row, row)`` where given, unless it returns ``expected`` and leaves ``batch.position_ids`` as it was."""
    import torch

    before = batch.position_ids.clone()
    try:
        got = torch.as_tensor(call())
    except Exception as err:
        raise _fail(f"{label}: your function raised {type(err).__name__}: {err}") from err
    if not torch.equal(batch.position_ids, before):
        raise _fail("your function changed batch.position_ids in place; return a new tensor (clone it).")
    if got.shape != expected.shape or not torch.equal(got, expected):
        row = int((got != expected).any(-1).nonzero()[0]) if got.shape == expected.shape else 0
        note = hint(got[row], row) if hint is not None and got.shape == expected.shape else ""
        raise _fail(f"{label}, row {row} (N = {int(batch.n_objects[row])}):\n  expected {expected[row].tolist()}\n"
                    f"  returned {got[row].tolist() if got.dim() == 2 else got.tolist()}" + (f"\n  {note}" if note else ""))


@stub_aware
def check_position_swap(fn: Callable, seed: int = 3) -> None:
    """Chapter 5 exercise. ``fn(batch, i, j)`` returns new position ids [B, L] in which the declaration
    tokens (colour and shape) of objects i and j trade position ids; nothing else changes.
    Every row of the checker's batches has more than max(i, j) objects."""
    import torch

    task = TaskConfig()
    for k, (i, j) in enumerate(((0, 1), (1, 2), (0, 2), (3, 1))):
        batch = sample_batch(task, 20, seed=seed * 100 + k, n=(max(i, j) + 1, task.ood_range[1]), offset=k % 3)
        _compare_position_ids(f"swap ({i}, {j})", lambda: fn(batch, i, j), batch,
                              reference_swapped_position_ids(batch, i, j))
    print("All four swaps are right.")


@stub_aware
def check_gap(fn: Callable, seed: int = 6) -> None:
    """Where-models-fail exercise. ``fn(batch, gap)`` returns new position ids [B, L] with every token after
    ``CTX_END`` moved ``gap`` positions later; nothing else changes. Checked against
    ``bindlib.core.ood_axes.move_after_context`` on prompts of mixed N, with offsets, for several gaps."""
    import torch

    from ..core.ood_axes import move_after_context

    task = TaskConfig()
    for k, gap in enumerate((1, 7, 48)):
        batch = sample_batch(task, 20, seed=seed * 100 + k, n=(2, task.ood_range[1]), offset=k % 2 * 3)
        def hint(got_row, row, gap=gap):
            if torch.equal(got_row, batch.position_ids[row]):
                return "nothing moved: add the gap to every position after CTX_END."
            if torch.equal(got_row - batch.position_ids[row], torch.full_like(got_row, gap)):
                return "every position moved: only the tokens after CTX_END move (a shift of all is no distance)."
            return ""

        _compare_position_ids(f"gap {gap}", lambda: fn(batch, gap), batch,
                              move_after_context(batch, gap, "gap").position_ids, hint)
    print("All three gaps are right.")


@stub_aware
def check_knockout(fn: Callable, seed: int = 4) -> None:
    """Chapter 6 exercise. ``fn(model, batch, targets, layer)`` returns the read-out logits [B, V] when, at
    ``blocks[layer].attn.hook_scores``, the read-out token's pre-softmax scores to the key positions in
    ``targets`` ([B, L] bool) are set to the dtype's minimum, in every head. Checked against
    ``bindlib.interp.knockout`` on fresh prompts, every layer and three target sets."""
    import torch

    from ..interp.knockouts import knockout, target_sets

    model, task = _tiny_model(seed)
    for k, batch in enumerate(_fresh_batches(task, seed, n_batches=3, size=16)):
        sets = target_sets(batch, controls=False)
        for name in ("answer_item", "query_declaration", "structural"):
            for layer in range(len(model.blocks)):
                expected = knockout(model, batch, sets[name], [layer])
                try:
                    got = torch.as_tensor(fn(model, batch, sets[name], layer)).detach().float()
                except Exception as err:
                    raise _fail(f"batch #{k}, {name}, layer {layer}: your function raised "
                                         f"{type(err).__name__}: {err}") from err
                if got.shape != expected.shape or not torch.allclose(got, expected, atol=1e-4):
                    hint = (f"shape {tuple(got.shape)}, expected {tuple(expected.shape)}" if got.shape != expected.shape
                            else f"logits differ by up to {(got - expected).abs().max().item():.3g}")
                    raise _fail(f"batch #{k}, knocking out {name} at layer {layer}: {hint}. Block only the "
                                         f"read-out token's row of the scores (query = batch.query_pos), before the softmax.")
    print("Your knockout matches the reference on 3 fresh batches, 3 target sets and every layer.")


def reference_identity_probe(X, y, identity, test_frac: float = 0.4, seed: int = 0) -> float:
    """Test accuracy of a linear probe whose test set holds identities never seen in training."""
    import torch

    from ..interp.probes import fit_probe

    ids = torch.unique(identity)
    perm = ids[torch.randperm(len(ids), generator=torch.Generator().manual_seed(seed))]
    test_ids = perm[: max(1, int(round(test_frac * len(ids))))]
    test = torch.isin(identity, test_ids)
    probe = fit_probe(X[~test], y[~test], int(y.max()) + 1, Cs=(1.0,))
    return probe.accuracy(X[test], y[test])


def identity_probe_cases(seed: int = 0, n_ids: int = 60, per_id: int = 12, dim: int = 24, n_classes: int = 4):
    """Two fresh synthetic data sets (X, y, identity, name):

    'shared feature': the label is written along a direction every identity shares, so a probe generalises
    to unseen identities; 'memorised': the label is a random function of the identity and X only encodes
    the identity, so a probe that has seen every identity scores high and one tested on new identities
    scores about chance."""
    import torch

    g = torch.Generator().manual_seed(seed)
    identity = torch.arange(n_ids).repeat_interleave(per_id)
    id_embed = torch.randn(n_ids, dim, generator=g) * 2
    y = torch.randint(n_classes, (len(identity),), generator=g)
    class_dir = torch.randn(n_classes, dim, generator=g) * 2
    shared = id_embed[identity] + class_dir[y] + 0.5 * torch.randn(len(identity), dim, generator=g)
    y_mem = torch.randint(n_classes, (n_ids,), generator=g)[identity]
    memorised = id_embed[identity] + 0.3 * torch.randn(len(identity), dim, generator=g)
    return [(shared, y, identity, "shared feature"), (memorised, y_mem, identity, "memorised")]


@stub_aware
def check_identity_probe(fn: Callable, seed: int = 5) -> None:
    """Chapter 7 exercise. ``fn(X, y, identity) -> float``: fit a linear probe for labels ``y`` [M] from
    activations ``X`` [M, D] on some object identities and return its accuracy on the others (``identity``
    [M] names each example's object; no identity may sit on both sides)."""
    for X, y, identity, name in identity_probe_cases(seed):
        expected = reference_identity_probe(X, y, identity)
        chance = 1 / (int(y.max()) + 1)
        try:
            got = float(fn(X.clone(), y.clone(), identity.clone()))
        except Exception as err:
            raise _fail(f"the {name!r} data: your function raised {type(err).__name__}: {err}") from err
        if name == "memorised" and got > chance + 0.2:
            raise _fail(f"on the {name!r} data (labels are a random function of the identity) your probe "
                                 f"scores {got:.2f}, far above chance ({chance:.2f}): your test set shares identities "
                                 f"with the training set, so the probe is graded on what it memorised.")
        if name == "shared feature" and abs(got - expected) > 0.2:
            raise _fail(f"on the {name!r} data your probe scores {got:.2f}; the reference scores {expected:.2f}.")
    print("Your probe is tested on unseen identities: it generalises where the feature is shared,\n"
          "and stays at chance where labels were only memorised.")
