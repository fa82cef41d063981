"""Checkers for the second round of exercises: the deep-supervision term (chapter 2), the image tokens
an object covers (chapter 3), the binding score and routing layer and what a counterfactual pair
predicts (chapter 5), a knockout over a window of layers (chapter 6) and collecting a probe's data
(chapter 7).

Like those in ``bindlib.book.checks``, each checker runs the student's function and the library's
reference on fresh inputs and raises AssertionError at the first difference, naming the likely
mistake where it can; a stub that still raises NotImplementedError gets an AssertionError that
starts with "not implemented yet". Import them from ``bindlib.book.exercises``.
"""
from __future__ import annotations

import math
import random
from typing import Callable

import torch

from ..core.task import TaskConfig, sample_batch
from .checks import _fail, _tiny_model, stub_aware


def _call(where: str, fn: Callable, *args):
    """fn(*args); any exception becomes an AssertionError naming ``where`` (NotImplementedError is kept as
    the cause, so ``stub_aware`` reports a stub)."""
    try:
        return fn(*args)
    except Exception as err:
        raise _fail(f"{where}: your function raised {type(err).__name__}: {err}") from err


# ---------------------------------------------------------------- chapter 5: binding score and routing layer
def reference_routing(per_layer: list[dict], tol: float = 0.05) -> tuple[int, float]:
    """(routing layer, binding score there), by ``interp.patching.routing_summary``."""
    from ..interp.patching import binding_score, routing_summary

    rows = [{**row, "binding_score": binding_score(row["symbolic"], row["positional"])} for row in per_layer]
    summary = routing_summary(rows, [row["layer"] for row in rows], tol)
    return summary["routing_layer"], summary["binding_score"]


def routing_cases(seed: int = 7, n_random: int = 60) -> list[list[dict]]:
    """Per-layer shares for ``check_routing``: hand-made cases (early layers that only swap the query,
    a near tie, a purely positional model, no effect anywhere), then random ones."""

    def layers(*shares):
        return [{"layer": k, "positional": p, "symbolic": s} for k, (p, s) in enumerate(shares)]

    cases = [
        layers((0.0, 1.0), (0.0, 1.0), (0.3, 0.62), (0.02, 0.1)),  # early layers swap the query: the tie goes deep
        layers((0.1, 0.2), (0.25, 0.6), (0.05, 0.1), (0.0, 0.0)),  # one clear maximum in the middle
        layers((0.0, 0.9), (0.7, 0.17), (0.1, 0.1)),  # a near tie within 0.05: the deeper layer
        layers((0.2, 0.0), (0.9, 0.0), (0.4, 0.0)),  # purely positional: BS = -1
        layers((0.0, 0.0), (0.0, 0.0), (0.0, 0.0)),  # nothing moves: the deepest layer, BS undefined (nan)
        layers((0.5, 0.4), (0.6, 0.0), (0.2, 0.2), (0.9, 0.0)),  # the largest P_sym is not the routing layer
    ]
    rng = random.Random(seed)
    for _ in range(n_random):
        n = rng.randint(2, 8)
        rows = []
        for _ in range(n):
            p, s = rng.random(), rng.random()
            scale = rng.random() / max(p + s, 1e-9)  # P_pos + P_sym <= 1
            rows.append((round(p * scale, 3), round(s * scale, 3)))
        cases.append(layers(*rows))
    return cases


def _routing_hint(case: list[dict], layer, bs, exp_layer: int, exp_bs: float) -> str:
    total = [r["positional"] + r["symbolic"] for r in case]
    near = [k for k, t in enumerate(total) if t >= max(total) - 0.05]
    if layer != exp_layer:
        if layer == near[0] and len(near) > 1:
            return "Several layers lie within 0.05 of the largest P_sym + P_pos; the rule takes the deepest of them."
        if layer == max(range(len(case)), key=lambda k: case[k]["symbolic"]):
            return "The routing layer maximises P_sym + P_pos (patching moved the answer at all), not P_sym alone."
        return "Take the deepest layer whose P_sym + P_pos is within 0.05 of the largest."
    if math.isnan(exp_bs):
        return "P_sym + P_pos is 0 there, so the score is undefined: return float('nan')."
    if isinstance(bs, float) and not math.isnan(bs) and abs(bs + exp_bs) < 1e-9:
        return "The sign is reversed: BS = (P_sym - P_pos) / (P_sym + P_pos), +1 for symbolic."
    return "BS = (P_sym - P_pos) / (P_sym + P_pos), from the shares at the routing layer."


@stub_aware
def check_routing(fn: Callable, seed: int = 7) -> None:
    """Chapter 5 exercise. ``fn(per_layer) -> (routing_layer, binding_score)``: ``per_layer`` is a list of
    {"layer", "positional", "symbolic"} (P_pos and P_sym of each layer). Compared with
    ``routing_summary`` and ``binding_score`` on hand-made and random cases."""
    cases = routing_cases(seed)
    for k, case in enumerate(cases):
        exp_layer, exp_bs = reference_routing(case)
        shown = ", ".join(f"L{r['layer']}: pos {r['positional']:.3g} sym {r['symbolic']:.3g}" for r in case)
        got = _call(f"case #{k} ({shown})", fn, [dict(r) for r in case])
        try:
            layer, bs = int(got[0]), float(got[1])
        except Exception as err:
            raise _fail(f"case #{k}: return a pair (routing layer, binding score); got {got!r}") from err
        same_bs = (math.isnan(bs) and math.isnan(exp_bs)) or abs(bs - exp_bs) < 1e-6
        if layer != exp_layer or not same_bs:
            raise _fail(f"case #{k}: {shown}\n  expected: layer {exp_layer}, BS {exp_bs:.4g}\n"
                        f"  returned: layer {layer}, BS {bs:.4g}\n  {_routing_hint(case, layer, bs, exp_layer, exp_bs)}")
    print(f"Routing layer and binding score right on all {len(cases)} cases.")


# ---------------------------------------------------------------- chapter 5: what a pair predicts
@stub_aware
def check_pair_targets(fn: Callable, seed: int = 8) -> None:
    """Chapter 5 exercise. ``fn(base, source) -> (positional, symbolic)``, item token ids [M] of the base:
    POS = the base's item at the slot the source asks about, SYM = the base's item bound to the colour the
    source asks about. Compared with ``make_pairs``'s targets on fresh pairs, with and without an offset."""
    from ..interp.pairs import make_pairs

    task = TaskConfig()
    for k, offset in enumerate((0, 3, 0)):
        pairs = make_pairs(task, 64, seed=seed * 100 + k, n=(4, task.ood_range[1]), offset=offset)
        got = _call(f"pairs #{k}", fn, pairs.base.select(torch.arange(len(pairs))),
                    pairs.source.select(torch.arange(len(pairs))))
        try:
            pos, sym = (torch.as_tensor(x).long().flatten() for x in got)
        except Exception as err:
            raise _fail(f"pairs #{k}: return a pair (positional, symbolic) of [M] token ids; got {type(got)}") from err
        for name, mine, ref in (("positional", pos, pairs.positional), ("symbolic", sym, pairs.symbolic)):
            if mine.shape != ref.shape:
                raise _fail(f"pairs #{k}: {name} has shape {tuple(mine.shape)}, expected {tuple(ref.shape)}.")
        if torch.equal(pos, pairs.symbolic) and torch.equal(sym, pairs.positional):
            raise _fail(f"pairs #{k}: your positional and symbolic predictions are swapped.")
        for name, mine, ref in (("positional", pos, pairs.positional), ("symbolic", sym, pairs.symbolic)):
            if not torch.equal(mine, ref):
                m = int((mine != ref).nonzero()[0])
                names = task.vocab.names()
                hint = ("POS reads the base's item list at the source's query slot (source.query_slot)"
                        if name == "positional" else
                        "SYM finds the base object whose colour is the source's query colour, and takes its item")
                if torch.equal(mine, pairs.reflexive):
                    hint = "that is the source's own answer (REF); the targets are items as the base binds them. " + hint
                raise _fail(f"pairs #{k}, row {m}: {name} expected {names[int(ref[m])]}, returned "
                            f"{names[int(mine[m])] if 0 <= int(mine[m]) < len(names) else int(mine[m])}.\n  {hint}.")
    print("POS and SYM predictions right on 192 fresh pairs.")


# ---------------------------------------------------------------- chapter 6: a knockout over a window of layers
def reference_window_effect(model, batch, targets, layer: int, k: int) -> float:
    """Relative change (%) of the answer's mean probability with the read-out token's attention to
    ``targets`` knocked out at the window of ``k`` layers around ``layer`` (``knockout_layers``)."""
    from ..interp.knockouts import answer_probability, knockout, knockout_layers, relative_change
    from ..interp.pairs import readout_logits

    window = knockout_layers(layer, len(model.blocks), "window", k)
    p_new = answer_probability(knockout(model, batch, targets, window), batch.target)
    p_base = answer_probability(readout_logits(model, batch.model_inputs(), batch.query_pos), batch.target)
    return relative_change(p_new, p_base)


def _window_variants(model, batch, targets, layer, k) -> dict[str, float]:
    """What common mistakes compute, to name them."""
    from ..interp.knockouts import answer_probability, knockout
    from ..interp.pairs import readout_logits

    n = len(model.blocks)
    p_base = answer_probability(readout_logits(model, batch.model_inputs(), batch.query_pos), batch.target)

    def rel(layers, per_prompt=False):
        p = answer_probability(knockout(model, batch, targets, layers), batch.target)
        return (100 * ((p - p_base) / p_base).mean().item() if per_prompt
                else 100 * (p.mean().item() - p_base.mean().item()) / p_base.mean().item())

    start = layer - k // 2
    return {
        "the window starts at the layer instead of being centred on it (layers l - k//2 .. l - k//2 + k - 1)":
            rel([x for x in range(layer, layer + k) if x < n]),
        "only the centre layer is knocked out; use every layer of the window":
            rel([layer]),
        "a mean of per-prompt ratios; the book uses the ratio of the mean probabilities":
            rel([x for x in range(start, start + k) if 0 <= x < n], per_prompt=True),
    }


@stub_aware
def check_window_knockout(fn: Callable, seed: int = 9) -> None:
    """Chapter 6 exercise. ``fn(model, batch, targets, layer, k) -> float``: the relative change (%) of the
    answer's mean probability when the read-out token may not attend to ``targets`` in the ``k`` layers
    around ``layer`` (clipped at the model's ends). Checked against ``knockout_layers`` and ``knockout``
    on a four-layer random model, fresh prompts, two target sets and windows of 1, 2 and 3 layers (one clipped)."""
    from ..interp.knockouts import target_sets

    model, task = _tiny_model(seed, n_layers=4)
    checked = 0
    for b in range(1):
        batch = sample_batch(task, 24, seed=seed * 100 + b, n=(2, task.ood_range[1]), offset=3)
        sets = target_sets(batch, controls=False)
        for name in ("answer_item", "structural"):
            for layer, k in ((0, 1), (2, 3), (3, 3), (1, 2)):  # windows [0], [1, 2, 3], [2, 3] (clipped), [0, 1]
                with torch.no_grad():
                    expected = reference_window_effect(model, batch, sets[name], layer, k)
                    got = _call(f"batch #{b}, {name}, layer {layer}, k {k}", fn, model, batch, sets[name], layer, k)
                try:
                    got = float(got)
                except Exception as err:
                    raise _fail(f"return a float (a percentage); got {type(got).__name__}") from err
                checked += 1
                if not abs(got - expected) <= 1e-4 * max(1.0, abs(expected)):
                    with torch.no_grad():
                        variants = _window_variants(model, batch, sets[name], layer, k)
                    hint = next((h for h, v in variants.items() if abs(v - got) <= 1e-4 * max(1.0, abs(v))
                                 and abs(v - expected) > 1e-4 * max(1.0, abs(expected))),
                                "100 * (mean p_knocked - mean p_clean) / mean p_clean, p the answer's probability "
                                "(softmax over the whole vocabulary at the read-out token)")
                    raise _fail(f"batch #{b}, knocking out {name} at layer {layer} with k = {k} (a 4-layer model): "
                                f"expected {expected:+.5f}%, returned {got:+.5f}%.\n  Likely: {hint}.")
    print(f"Your window knockout matches the reference in all {checked} cases.")


# ---------------------------------------------------------------- chapter 7: a probe's data
def reference_probe_data(model, batch, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(X [M, D], y [M]): the residual entering block ``layer`` at every real object's shape declaration
    token, row by row and object by object, and that object's declaration slot."""
    from ..interp.probes import collect_activations, role_positions

    positions, obj, valid = role_positions(batch, "shape")
    acts = collect_activations(model, batch, "hook_resid_pre", positions)[layer]
    return acts[valid], obj[valid]


@stub_aware
def check_probe_data(fn: Callable, seed: int = 11) -> None:
    """Chapter 7 exercise. ``fn(model, batch, layer) -> (X, y)``: see ``reference_probe_data``. Compared on
    fresh prompts of mixed N, with offsets, at every layer of a small random model."""
    from ..interp.probes import collect_activations, role_positions

    model, task = _tiny_model(seed)
    for b in range(3):
        batch = sample_batch(task, 12, seed=seed * 100 + b, n=(2, task.ood_range[1]), offset=(0, 2, 5)[b])
        for layer in range(len(model.blocks)):
            X_ref, y_ref = reference_probe_data(model, batch, layer)
            with torch.no_grad():
                got = _call(f"batch #{b}, layer {layer}", fn, model, batch, layer)
            try:
                X, y = torch.as_tensor(got[0]).detach().float(), torch.as_tensor(got[1]).long().flatten()
            except Exception as err:
                raise _fail(f"return a pair (X [M, D], y [M]); got {type(got).__name__}") from err
            where = f"batch #{b} (N {int(batch.n_objects.min())}..{int(batch.n_objects.max())}), layer {layer}"
            if X.shape != X_ref.shape or y.shape != y_ref.shape:
                hint = (" Keep only real objects: rows with fewer objects are padded (batch.colors < 0)."
                        if len(y) == batch.colors.numel() else "")
                raise _fail(f"{where}: X has shape {tuple(X.shape)} and y {tuple(y.shape)}; expected "
                            f"{tuple(X_ref.shape)} and {tuple(y_ref.shape)}.{hint}")
            if not torch.equal(y, y_ref):
                raise _fail(f"{where}: the labels differ; y is each object's declaration slot (0, 1, ..., N - 1), "
                            f"in the order row by row, object by object.")
            if not torch.allclose(X, X_ref, atol=1e-4):
                hint = "Read blocks[layer].hook_resid_pre at batch.shape_pos."
                positions, obj, valid = role_positions(batch, "color")
                if torch.allclose(X, collect_activations(model, batch, "hook_resid_pre", positions)[layer][valid],
                                  atol=1e-4):
                    hint = "These are the colour tokens' activations; the probe reads the shape tokens (batch.shape_pos)."
                elif layer + 1 < len(model.blocks) and torch.allclose(
                        X, reference_probe_data(model, batch, layer + 1)[0], atol=1e-4):
                    hint = "These are the activations leaving block `layer`; read the residual entering it (hook_resid_pre)."
                raise _fail(f"{where}: the activations differ from the reference by up to "
                            f"{(X - X_ref).abs().max().item():.3g}. {hint}")
    print("Your probe data match the reference on 3 fresh batches at every layer.")


# ---------------------------------------------------------------- chapter 3: the image tokens of an object
def _pixel_vision():
    from ..vision.multimodal import Vision

    return Vision.for_profile("pixels")


@stub_aware
def check_object_tokens(fn: Callable, seed: int = 10) -> None:
    """Chapter 3 exercise. ``fn(prompts, slot) -> [B, L] bool``: the sequence positions of the image tokens
    that object ``slot[b]`` overlaps (none where ``slot[b]`` is -1). Compared with
    ``ImagePrompts.patch_positions`` on fresh image prompts with and without an offset."""
    vision = _pixel_vision()
    task = TaskConfig()
    for b, offset in enumerate((0, 3)):
        batch = sample_batch(task, 12, seed=seed * 100 + b, n=(2, 8), offset=offset)
        prompts = vision.prompts(batch, seed + b)
        slots = {"the queried object": batch.query_slot, "object 0": torch.zeros_like(batch.query_slot),
                 "object 1 or none (-1)": torch.where(torch.arange(len(batch)) % 3 == 0, -1, 1)}
        for label, slot in slots.items():
            expected = prompts.patch_positions(slot)
            got = _call(f"prompts #{b}, {label}", fn, prompts, slot.clone())
            try:
                got = torch.as_tensor(got).bool()
            except Exception as err:
                raise _fail(f"return a [B, L] bool tensor; got {type(got).__name__}") from err
            where = f"prompts #{b} (offset {offset}, image tokens from position {prompts.start}), {label}"
            if got.shape != expected.shape:
                hint = (" That is one entry per image token; return one per sequence position (the image tokens "
                        f"start at prompts.start = {prompts.start})." if got.shape[-1:] == prompts.features.shape[1:2]
                        else "")
                raise _fail(f"{where}: shape {tuple(got.shape)}, expected {tuple(expected.shape)}.{hint}")
            if not torch.equal(got, expected):
                row = int((got != expected).any(-1).nonzero()[0])
                hint = "The mask of object k's patches is prompts.object_patches[row, k] (row-major patch order)."
                if int(slot[row]) < 0:
                    hint = "slot -1 means no object: that row's mask is all False."
                elif got[row].sum() == expected[row].sum() and not torch.equal(got[row], expected[row]):
                    hint = (f"The right number of tokens in the wrong place: the image tokens start at "
                            f"prompts.start = {prompts.start}, not at 0.")
                raise _fail(f"{where}, row {row}:\n  expected positions {expected[row].nonzero().flatten().tolist()}"
                            f"\n  returned positions {got[row].nonzero().flatten().tolist()}\n  {hint}")
    print("The right image tokens for every object asked about, on 24 fresh pictures.")


# ---------------------------------------------------------------- chapter 2: the deep-supervision term
def reference_hop_term(model, resid, packed) -> torch.Tensor:
    """``packing.hop_loss`` with hop_target 'shape': cross-entropy of the unembedded, final-normed residual at
    each two-hop query's read-out position against the queried colour's shape."""
    from ..core.packing import hop_loss

    return hop_loss(model, resid, packed, nmax=0, hop_target="shape")


def _hop_inputs(seed: int, n_layers: int = 3):
    """(model, resid, packed): a random model's residual leaving block 1 on a packed batch of every kind."""
    from ..core.packing import pack_queries

    model, task = _tiny_model(seed, n_layers=n_layers)
    batch = sample_batch(task, 8, seed=seed, n=(2, task.ood_range[1]), offset=seed % 3)
    packed = pack_queries(batch)
    mid = {}
    handle = model.blocks[1].hook_resid_post.register_forward_hook(lambda m, i, o: mid.update(x=o))
    try:
        with torch.no_grad():
            model(**packed.model_inputs())
    finally:
        handle.remove()
    return model, mid["x"], packed


def _hop_variants(model, resid, packed) -> dict[str, torch.Tensor]:
    import torch.nn.functional as F

    at = resid.gather(1, packed.readout_pos[..., None].expand(-1, -1, resid.shape[-1]))
    tgt = packed.hop_target.flatten()
    return {
        "read the residual through the final LayerNorm (model.ln_f) before the unembedding":
            F.cross_entropy(model.unembed(at).flatten(0, 1), tgt, ignore_index=-100),
        "read the residual at the read-out positions (packed.readout_pos), one per query":
            F.cross_entropy(model.unembed(model.ln_f(resid[:, -1:])).expand(-1, at.shape[1], -1).flatten(0, 1), tgt,
                            ignore_index=-100),
        "average over the two-hop queries only: the others have hop_target -100 (ignore_index=-100)":
            F.cross_entropy(model.unembed(model.ln_f(at)).flatten(0, 1), tgt.clamp(min=0)),
    }


@stub_aware
def check_hop_term(fn: Callable, seed: int = 12) -> None:
    """Chapter 2 exercise. ``fn(model, resid, packed) -> scalar loss``: the deep-supervision term, compared
    with ``packing.hop_loss`` (hop target 'shape') on a random model's residuals, three fresh packed batches
    of every query kind; the loss must carry a gradient."""
    for k in range(3):
        model, resid, packed = _hop_inputs(seed * 10 + k)
        expected = reference_hop_term(model, resid, packed).item()
        got = _call(f"batch #{k}", fn, model, resid, packed)
        try:
            value = torch.as_tensor(got).float()
            if not value.requires_grad:
                raise _fail(f"batch #{k}: the loss carries no gradient; compute it from `resid` with torch "
                            f"operations (no .item(), no torch.no_grad()).")
            value = value.item()
        except AssertionError:
            raise
        except Exception as err:
            raise _fail(f"batch #{k}: return a scalar tensor; got {type(got).__name__} ({err})") from err
        if abs(value - expected) > 1e-4 * max(1.0, abs(expected)):
            hint = next((h for h, v in _hop_variants(model, resid, packed).items() if abs(v.item() - value) < 1e-4),
                        "cross-entropy of model.unembed(model.ln_f(x)) at packed.readout_pos against packed.hop_target")
            raise _fail(f"batch #{k}: expected loss {expected:.5f}, returned {value:.5f}.\n  Likely: {hint}.")
    print("Your term equals the reference on 3 fresh batches, and it carries a gradient.")


# ---------------------------------------------------------------- chapter 4: the seed-wise correction comparison
CORRECTION_KEYS = ("positional", "tested", "stayed", "with_control", "images_alone")


def reference_correction(frame) -> dict[str, int]:
    """The correction test, seed by seed: of the seeds that read positional before images (BS < -0.5, with a
    BS after), how many have a measured compute-matched control (``tested``); of those, how many are not
    symbolic after images (``stayed``: BS <= 0.5), and of those that turn symbolic, how many have a control
    that turns symbolic too (``with_control``) or not (``images_alone``)."""
    positional = frame[(frame["bs_before"] < -0.5) & frame["bs_after"].notna()]
    tested = positional[positional["bs_control"].notna()]
    turned = tested[tested["bs_after"] > 0.5]
    return {"positional": len(positional), "tested": len(tested), "stayed": len(tested) - len(turned),
            "with_control": int((turned["bs_control"] > 0.5).sum()),
            "images_alone": int((turned["bs_control"] <= 0.5).sum())}


def correction_cases(seed: int = 13, n_random: int = 80) -> list:
    """Tables for ``check_correction``: hand-made edge cases (a seed without a control, scores exactly at the
    thresholds, a symbolic start), then random ones."""
    import pandas as pd

    nan = float("nan")

    def frame(*rows):
        return pd.DataFrame(rows, columns=["seed", "bs_before", "bs_after", "bs_control"])

    cases = [
        frame((0, -1.0, -1.0, -1.0), (1, -1.0, 1.0, 1.0), (2, 1.0, 1.0, 1.0), (3, -1.0, -1.0, -1.0)),
        frame((0, -1.0, 1.0, -1.0), (1, -1.0, 1.0, nan)),  # images alone; a seed without a control is not tested
        frame((0, -0.5, 1.0, -1.0), (1, -1.0, 0.5, -1.0), (2, -1.0, 1.0, 0.5)),  # the thresholds are strict
        frame((0, 1.0, 1.0, 1.0), (1, 0.8, -1.0, nan)),  # symbolic starts: nothing to correct
        frame((0, -1.0, nan, 1.0), (1, -0.9, 0.9, 0.2)),  # no BS after: not a positional start of the test
    ]
    rng = random.Random(seed)
    choices = (-1.0, -0.9, -0.5, -0.33, 0.0, 0.33, 0.5, 0.7, 1.0)
    for _ in range(n_random):
        rows = [(s, rng.choice(choices), rng.choice(choices + (nan,)), rng.choice(choices + (nan, nan)))
                for s in range(rng.randint(1, 8))]
        cases.append(frame(*rows))
    return cases


def _correction_hint(case, got: dict, expected: dict) -> str:
    if got.get("tested") != expected["tested"] and got.get("tested") == expected["positional"]:
        return "A seed whose compute-matched control has no binding score (NaN) cannot be tested: leave it out."
    at_edge = ((case["bs_before"] == -0.5) | (case["bs_after"] == 0.5) | (case["bs_control"] == 0.5)).any()
    if at_edge:
        return "The thresholds are strict: positional is BS < -0.5 and symbolic is BS > 0.5."
    return "Count only seeds that read positional before images; a seed that turns symbolic counts once."


def committed_correction_frame(results_dir=None):
    """The chapter's table, from the committed results: one row per image run without noise, with the binding
    score of its text model, of the run, and of its compute-matched text run (NaN where not measured)."""
    import pandas as pd

    from .learning_data import IMAGE_ONLY_RECIPES, correction_rows

    rows = [{"seed": r["seed"], "bs_before": r["before"].get("binding_score"), "bs_after": r["after"].get("binding_score"),
             "bs_control": (r["control"] or {}).get("binding_score")}
            for r in correction_rows(results_dir) if r["recipe"] in IMAGE_ONLY_RECIPES]
    return pd.DataFrame(rows, columns=["seed", "bs_before", "bs_after", "bs_control"]).astype(
        {"bs_before": float, "bs_after": float, "bs_control": float})


@stub_aware
def check_correction(fn: Callable, seed: int = 13, committed=None) -> None:
    """Chapter 4 exercise. ``fn(frame) -> dict`` with the keys of ``CORRECTION_KEYS``; ``frame`` has one row
    per seed and the columns seed, bs_before, bs_after, bs_control (NaN where not measured). Compared with
    ``reference_correction`` on the committed table (``committed``, default ``committed_correction_frame()``),
    then on hand-made and random tables."""
    cases = [committed_correction_frame() if committed is None else committed] + correction_cases(seed)
    for k, case in enumerate(cases):
        expected = reference_correction(case)
        got = _call(f"table #{k}", fn, case.copy())
        try:
            got = {key: int(got[key]) for key in CORRECTION_KEYS}
        except Exception as err:
            raise _fail(f"table #{k}: return a dict with the keys {', '.join(CORRECTION_KEYS)}; got {got!r}") from err
        if got != expected:
            raise _fail(f"table #{k}:\n{case.to_string(index=False)}\n  expected: {expected}\n  returned: {got}\n  "
                        f"{_correction_hint(case, got, expected)}")
    print(f"Seed-wise correction comparison right on all {len(cases)} tables.")


# ---------------------------------------------------------------- chapter 2: break the plateau
PLATEAU_TARGET = 0.9  # two-hop ID accuracy the student's run must reach


def plateau_config(seed: int = 0):
    """A task and model small enough to train in about a minute on one CPU thread, with the recipe's
    sub-skill queries and packing but no deep supervision: three stages (sub-skills on small prompts, the
    same on small prompts again, the full ID range), each leaving early once two-hop ID reaches the target."""
    from ..experiments.recipes import SUBSKILL_MIX
    from ..training.train import Stage, TrainConfig

    mix = dict(SUBSKILL_MIX)
    return TrainConfig(
        profile="cpu", task=dict(n_colors=6, n_shapes=6, n_items=12, id_range=(2, 4), ood_range=(5, 6)),
        model=dict(n_layers=3, d_model=64, n_heads=4, d_ff=128), batch_size=64, lr=1e-3, warmup=20, min_lr_frac=1.0,
        stages=[Stage("subskills", 300, dict(mix), n_range=(2, 3)),
                Stage("compose", 300, dict(mix), n_range=(2, 3), until=PLATEAU_TARGET),
                Stage("full_n", 300, dict(mix))],
        eval_every=100, eval_size=256, packed=True, early_stop=PLATEAU_TARGET, seed=seed)


def _plateau_shape(cfg) -> tuple:
    """Everything but the deep-supervision settings: what a student's config must keep."""
    return (cfg.task, cfg.model, cfg.batch_size, cfg.lr, cfg.seed, cfg.packed,
            [(s.name, s.steps, dict(s.mix), s.n_range) for s in cfg.stages])


@stub_aware
def check_break_plateau(fn: Callable, seed: int = 0, threads: int = 1) -> dict:
    """Chapter 2 exercise. ``fn(cfg) -> TrainConfig``: the ``plateau_config`` with deep supervision added
    (``hop_layer`` and a positive ``Stage.hop_weight`` where the sub-skills exist), nothing else changed.
    Checks the settings, then trains the returned config on ``threads`` CPU threads and asserts that
    two-hop ID accuracy reaches ``PLATEAU_TARGET`` within the budget. Returns steps, wall and CPU seconds, accuracy."""
    import dataclasses
    import time

    from ..training.train import train

    base = plateau_config(seed)
    cfg = _call("break_plateau(plateau_config())", fn, dataclasses.replace(
        base, stages=[dataclasses.replace(s) for s in base.stages]))
    if not hasattr(cfg, "stages") or not hasattr(cfg, "hop_layer"):
        raise _fail(f"return a TrainConfig (the one you were given, changed); got {type(cfg).__name__}")
    if _plateau_shape(cfg) != _plateau_shape(base):
        raise _fail("Keep the task, the model, the optimiser and every stage's steps, queries and N range: only the "
                    "deep-supervision settings (TrainConfig.hop_layer, Stage.hop_weight) may change.")
    weights = [s.hop_weight for s in cfg.stages]
    if not any(w > 0 for w in weights):
        raise _fail("No stage has hop_weight > 0, so the deep-supervision loss is off: set it in the stages "
                    "where the model should compose the hops.")
    n_layers = cfg.model_config().n_layers
    if cfg.hop_layer is None or not 0 < cfg.hop_layer < n_layers - 1:
        raise _fail(f"hop_layer={cfg.hop_layer}: the intermediate shape must be asked of a middle block "
                    f"(1..{n_layers - 2} here): the first hop needs two blocks, and the second needs at least one after it.")
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        start, cpu = time.perf_counter(), time.process_time()
        _, history = train(cfg, progress=False, log=None)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    finally:
        torch.set_num_threads(old)
    last = history[-1]
    if last["acc_two_hop"] < PLATEAU_TARGET:
        raise _fail(f"After {last['step']} steps two-hop ID accuracy is {last['acc_two_hop']:.1%}, below the "
                    f"{PLATEAU_TARGET:.0%} target: the plateau held. A stage that asks the shape before the "
                    "sub-skills exist, or a weight too small to matter, can do that.")
    print(f"Plateau broken: two-hop ID {last['acc_two_hop']:.1%} after {last['step']} steps "
          f"({cpu_seconds:.0f} s of CPU time on {threads} thread{'s' * (threads != 1)}).")
    return {"steps": last["step"], "seconds": seconds, "cpu_seconds": cpu_seconds, "two_hop": last["acc_two_hop"]}
