"""Running the measurements of ``bindlib.interp`` on saved checkpoints, and reading their results files back.

``python -m bindlib interp`` calls :func:`run_checkpoint`, which writes one results file per kind:

- ``interchange_{tag}.json``: IIA per layer and hypothesis at ID and OOD lengths, the routing summary,
  the position-id swap and the timing of the batched sweep against the per-pair loop;
- ``knockout_{tag}.json``: accuracy and relative change of the answer's probability per layer and
  target set, window and cumulative;
- ``probe_{tag}.json``: linear-probe accuracy per layer, role and target, with controls.

``tag`` is :func:`bindlib.core.profiles.run_tag`.  The chapters read the files with
:func:`bindlib.interp.results.load_interp`.
Sizes are chosen so that one checkpoint of the CPU profile takes about two minutes on one thread;
every file records the sizes it was made with.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..core import io
from ..core.profiles import ANALYSED_REGIMES, IMAGE_REGIMES, MAIN_ENCODER, SEEDS, check_regime, checkpoint_dir, run_tag
from ..core.task import TaskConfig, sample_batch
from ..vision.multimodal import load_image_model
from . import knockouts as K
from . import patching as X
from . import probes as R
from .pairs import concat_pairs, concat_rebind_pairs, correct_on_both, make_pairs, make_rebind_pairs, n_layers_of

KINDS = ("interchange", "knockout", "probe")

# (role, target) pairs probed: ordinal index at declaration tokens, the binding signature (the colour
# bound to a shape, read at the shape's declaration token), and what the read-out token knows.
PROBES = (("color", "index"), ("shape", "index"), ("shape", "bound_color"),
          ("last", "target_shape"), ("last", "target_index"))
SWAPS = ((0, 1), (1, 2), (0, 2))


@dataclass
class Sizes:
    """How much each measurement samples (recorded in every results file)."""

    pairs: int = 600  # ID-length interchange pairs (all of them are timed with the batched sweep)
    ood_pairs: int = 240  # OOD-length interchange pairs
    loop_pairs: int = 16  # pairs also run by the per-pair reference loop (its time is extrapolated)
    swap_prompts: int = 384  # prompts of the position-id swap
    knockout_prompts: int = 128
    probe_prompts: int = 320
    probe_Cs: tuple = (0.1, 1.0, 10.0)
    rebind_pairs: int = 400  # ID-length rebind pairs (colour vs bound shape; standard format only)
    declared_pairs: int = 0  # ID-length pairs on declared-order prompts (the shortcut dial's second view)
    only_correct: bool = True  # keep only pairs / swap rows the model answers correctly
    seed: int = 0  # of every sample drawn here (not the training seed)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["probe_Cs"] = list(self.probe_Cs)
        d.pop("extra")
        return {**d, **self.extra}


def _num(x, digits: int = 4):
    x = float(x)
    return round(x, digits) if math.isfinite(x) else None


def _clean(obj, digits: int = 4):
    """Round floats (nan/inf -> None) all the way down a JSON-like structure."""
    if isinstance(obj, float):
        return _num(obj, digits)
    if isinstance(obj, dict):
        return {k: _clean(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v, digits) for v in obj]
    return obj


# ---------------------------------------------------------------- checkpoints
def missing_checkpoint_message(regime: str, seed: int, profile: str, encoder: str | None) -> str:
    path = checkpoint_dir(regime, seed, profile, encoder)
    if regime == "text_only":
        make = f"python -m bindlib train --profile {profile} --seed {seed}"
    else:
        make = f"python -m bindlib reproduce --profile {profile} --seeds {seed} --regimes {regime}"
        if regime in IMAGE_REGIMES:
            make += f" --encoders {encoder or MAIN_ENCODER}"
    return (f"no checkpoint for regime {regime!r}, seed {seed} ({profile} profile"
            + (f", encoder {encoder or MAIN_ENCODER}" if regime in IMAGE_REGIMES else "")
            + f"): {path} does not exist. Make it with `{make}`.")


def variant_dir(regime: str, seed: int, profile: str = "cpu", encoder: str | None = None,
                variant: str | None = None) -> Path:
    """The checkpoint folder of a run, or of its variant: the folder name plus ``_<variant>`` (e.g. ``ordered``,
    ``hopslot``, ``hopw0``, ``hopl2``, ``decl090``, ``learnedpos``: the suffixes ``train`` gives)."""
    path = checkpoint_dir(regime, seed, profile, encoder)
    return path.with_name(f"{path.name}_{variant.lstrip('_')}") if variant else path


def existing_checkpoints(regimes=ANALYSED_REGIMES, seeds=SEEDS, profile: str = "cpu",
                         encoder: str | None = None, variant: str | None = None) -> list[dict]:
    """Every (regime, seed) of the main encoder whose checkpoint (or ``variant`` of it) exists, as dicts with its path."""
    found = []
    for regime in regimes:
        enc = (encoder or MAIN_ENCODER) if regime in IMAGE_REGIMES else None
        for seed in seeds:
            path = variant_dir(regime, seed, profile, enc, variant)
            if (path / "model.json").exists():
                found.append({"regime": regime, "seed": seed, "encoder": enc, "path": path})
    return found


def load_for_analysis(path, device="cpu"):
    """(model, task config, meta) of a checkpoint; the task comes from its training config."""
    model, meta = io.load_checkpoint(path, device=device)
    task = TaskConfig(**(meta.get("train_config") or {}).get("task", {}))
    return model, task, meta


# ---------------------------------------------------------------- the three measurements
MIN_PAIRS = 20  # fewer pairs than this make no interchange measurement


def correct_pairs(model, task, n_pairs: int, seed: int, n_range, device="cpu", max_draw_factor: int = 5,
                  kind: str = "interchange", association_order: str = "shuffled"):
    """Up to ``n_pairs`` pairs that ``model`` answers correctly on both prompts (all pairs if model is None),
    drawn in rounds of 2 * n_pairs until enough are found or ``max_draw_factor * n_pairs`` were drawn.

    Unlike ``make_pairs(model=...)``, a weak model yields the pairs it does get right instead of an error.
    kind: "interchange" (``make_pairs``) or "rebind" (``make_rebind_pairs``).  Returns (pairs, number drawn).
    """
    if kind not in ("interchange", "rebind"):
        raise ValueError(f"unknown pair kind {kind!r}: allowed 'interchange' and 'rebind'.")
    make = make_pairs if kind == "interchange" else make_rebind_pairs

    def draw(size, s):
        return make(task, size, seed=s, n=n_range, device=device, association_order=association_order)

    if model is None:
        return draw(n_pairs, seed), n_pairs
    kept, total, drawn, rnd = [], 0, 0, 0
    while total < n_pairs and drawn < max_draw_factor * n_pairs:
        pool = draw(2 * n_pairs, seed + 1000 * rnd)
        drawn, rnd = drawn + len(pool), rnd + 1
        ok = correct_on_both(model, pool).nonzero().squeeze(1)[: n_pairs - total]
        if len(ok):
            kept.append(pool.select(ok))
            total += len(ok)
    if not kept:
        return draw(1, seed).select(torch.arange(0)), drawn
    return (concat_pairs(kept) if kind == "interchange" else concat_rebind_pairs(kept)), drawn


def _interchange_split(model, task, sizes: Sizes, n_pairs: int, n_range, seed: int, device, order="shuffled"):
    """One split's interchange record (or its error), the raw result (None on error) and the pairs."""
    lo, hi = max(4, n_range[0]), n_range[1]
    model_for_pairs = model if sizes.only_correct else None
    pairs, drawn = correct_pairs(model_for_pairs, task, n_pairs, seed, (lo, hi), device, association_order=order)
    if len(pairs) < min(MIN_PAIRS, n_pairs):  # a model that fails most prompts of a split: say so in the file
        return {"n_range": [lo, hi], "association_order": order, "n_pairs": 0, "pairs_drawn": drawn,
                "error": f"only {len(pairs)} of {drawn} pairs answered correctly on both prompts "
                         f"(fewer than {min(MIN_PAIRS, n_pairs)}); no interchange measurement at N {lo}..{hi}"}, None, pairs
    res = X.interchange(model, pairs)
    rec = X.interchange_record(res, regime="", seed=0, profile="", command="", device=device)
    return ({"n_range": [lo, hi], "association_order": order, "n_pairs": len(pairs), "pairs_drawn": drawn,
             "iia": rec["iia"], "per_layer": rec["per_layer"], "summary": rec["summary"],
             "sweep_seconds": _num(res["wall_seconds"], 3)}, res, pairs)


def rebind_measure(model, task, sizes: Sizes, seed: int, device="cpu", order: str = "shuffled") -> dict:
    """Rebind pairs (``pairs.RebindPairs``) at ID lengths: per layer the share of patched outputs that stay
    (colour/slot carried), follow the bound shape, or follow the source's answer (REF)."""
    lo, hi = max(3, task.id_range[0]), task.id_range[1]
    pairs, drawn = correct_pairs(model if sizes.only_correct else None, task, sizes.rebind_pairs, seed, (lo, hi), device,
                                 kind="rebind", association_order=order)
    if len(pairs) < min(MIN_PAIRS, sizes.rebind_pairs):
        return {"n_range": [lo, hi], "n_pairs": 0, "pairs_drawn": drawn,
                "error": f"only {len(pairs)} of {drawn} rebind pairs answered correctly on both prompts"}
    res = X.rebind(model, pairs)
    return {"n_range": [lo, hi], "association_order": order, "n_pairs": len(pairs), "pairs_drawn": drawn,
            "per_layer": res["per_layer"], "sweep_seconds": res["wall_seconds"]}


def _attach_rebind(split_rec: dict, reb: dict) -> None:
    """Put the rebind shares beside pos/sym/ref in each per-layer row, and read them at the routing layer."""
    split_rec["rebind"] = reb
    by_layer = {d["layer"]: d for d in reb.get("per_layer") or []}
    for row in split_rec.get("per_layer") or []:
        if row["layer"] in by_layer:
            row.update({f"rebind_{k}": by_layer[row["layer"]][k] for k in ("stay", "shape", "reflexive", "other")})
    d = by_layer.get((split_rec.get("summary") or {}).get("routing_layer"))
    if d:
        split_rec["summary"].update({f"rebind_{k}": d[k] for k in ("stay", "shape", "reflexive")})


def _pooled_swap(model, task, sizes: Sizes, seed: int, device, order: str = "shuffled") -> dict:
    batch = sample_batch(task, sizes.swap_prompts, seed, n=task.id_range, device=device, association_order=order)
    swaps = [X.position_swap(model, batch, i, j, only_correct=sizes.only_correct) for i, j in SWAPS]
    n_total = sum(s["n"] for s in swaps)
    pooled = {k: (sum(s[k] * s["n"] for s in swaps if s["n"]) / n_total if n_total else float("nan"))
              for k in ("flip_rate", "stay_rate", "other_rate")}
    return {"swaps": swaps, "n": n_total, "association_order": order, **pooled}


def interchange_measure(model, task, sizes: Sizes, device="cpu") -> dict:
    """IIA per layer at ID and OOD lengths, routing summaries, position-id swap, sweep timing; for the
    standard format also rebind pairs per layer (beside pos/sym/ref) and, with ``sizes.declared_pairs``,
    the same on declared-order prompts (split ``id_declared``, ``position_swap_declared``).

    In the 'ordered' format the pairs are adapted (``pairs.pairs_from_base``): POS predicts the base's item
    at the source's slot, SYM the base's item of the source's queried colour; there are no rebind pairs."""
    splits, timing = {}, None
    standard = task.format == "standard"
    plan = [("id", sizes.pairs, task.id_range, "shuffled", 0), ("ood", sizes.ood_pairs, task.ood_range, "shuffled", 1)]
    if standard and sizes.declared_pairs > 0:
        plan.append(("id_declared", sizes.declared_pairs, task.id_range, "declared", 4))
    for split, n_pairs, n_range, order, dseed in plan:
        if n_pairs <= 0:
            continue
        rec, res, pairs = _interchange_split(model, task, sizes, n_pairs, n_range, sizes.seed + dseed, device, order)
        if split == "id" and res is not None and sizes.loop_pairs > 0:
            timing = X.time_sweep(model, pairs, sizes.loop_pairs, packed=res, stacked=False)
        if standard and split in ("id", "id_declared") and sizes.rebind_pairs > 0 and res is not None:
            _attach_rebind(rec, rebind_measure(model, task, sizes, sizes.seed + 5 + dseed, device, order))
        splits[split] = rec
    out = {"layers": list(range(n_layers_of(model))), "format": task.format, "splits": splits,
           "position_swap": _pooled_swap(model, task, sizes, sizes.seed + 2, device), "timing": timing}
    if standard and sizes.declared_pairs > 0:
        out["position_swap_declared"] = _pooled_swap(model, task, sizes, sizes.seed + 6, device, "declared")
    return _clean(out)


HEAD_SETS = ("answer_item", "query_declaration", "random_answer_item")  # per-head knockouts (one layer, one head)


def knockout_measure(model, task, sizes: Sizes, device="cpu", image=None) -> dict:
    """Window (k = 1) and cumulative knockout sweeps over every target set and its random control,
    per-head knockouts of HEAD_SETS, and, for an image model (``image`` = (adapter, vision)), the same
    sweeps on image prompts over the image target sets (the queried object's patches against the others)."""
    batch = sample_batch(task, sizes.knockout_prompts, sizes.seed + 3, n=task.id_range, device=device)
    sets = K.target_sets(batch, seed=sizes.seed)
    out = {}
    for mode in ("window", "cumulative"):
        res = K.knockout_sweep(model, batch, sets, mode=mode, k=1)
        out[mode] = {"k": res["k"], "sets": res["sets"]}
        out["base_accuracy"], out["layers"] = res["base_accuracy"], res["layers"]
    out["n_prompts"] = len(batch)
    out["per_head"] = K.head_knockout_sweep(model, batch, {k: sets[k] for k in HEAD_SETS})
    if image is not None:
        out["image"] = image_knockout_measure(model, task, sizes, *image, device=device)
    return _clean(out)


def image_knockout_measure(model, task, sizes: Sizes, adapter, vision, device="cpu") -> dict:
    """Knockouts on image prompts (same prompts' text as the text knockouts, rendered with a fixed seed)."""
    batch = sample_batch(task, sizes.knockout_prompts, sizes.seed + 3, n=task.id_range, device=device)
    prompts = vision.prompts(batch, sizes.seed + 3)
    inputs = prompts.model_inputs(adapter)
    sets = K.image_target_sets(prompts, seed=sizes.seed)
    out = {"n_prompts": len(batch), "encoder": vision.encoder.name,
           "chance": (1.0 / batch.n_objects.float()).mean().item()}
    for mode in ("window", "cumulative"):
        res = K.knockout_sweep(model, prompts.batch, sets, mode=mode, k=1, inputs=inputs)
        out[mode] = {"k": res["k"], "sets": res["sets"]}
        out["base_accuracy"], out["layers"] = res["base_accuracy"], res["layers"]
    return out


def probe_measure(model, task, sizes: Sizes, device="cpu", probes=PROBES) -> dict:
    """Linear probes of every (role, target) in ``probes``, with the control task and random-init twin."""
    rows = []
    for role, target in probes:
        res = R.probe(model, task, "hook_resid_pre", role, target, n_prompts=sizes.probe_prompts, seed=sizes.seed,
                      Cs=sizes.probe_Cs, device=device)
        rows.append(res)
    return _clean({"hook": "hook_resid_pre", "probes": rows,
                   "identity_split": {"test_frac": 0.4, "rule": "no colour-shape or shape-item combination is "
                                      "shared by train and test (bindlib.interp.identity_split)"}})


MEASURES = {"interchange": interchange_measure, "knockout": knockout_measure, "probe": probe_measure}


def results_tag(path: Path, tag: str) -> tuple[str, str | None]:
    """The name a checkpoint's results files carry, and its variant (None: the table's own run).

    A checkpoint beside the table's (e.g. ..._nogrounding, ..._steps3x, ..._learnedpos) and an image-recipe
    checkpoint (imagestage_...) keep their own folder name and are marked as variants, so that they never
    overwrite or join the table's results; any other folder is measured under --regime/--seed's name."""
    if path.name.startswith("imagestage_"):
        return path.name, path.name[len("imagestage_"):]
    variant = path.name[len(tag):] if path.name.startswith(tag) and path.name != tag else None
    return (path.name if variant else tag), variant


def check_trained_as(meta: dict, path, regime: str, encoder: str | None) -> None:
    """Refuse to label a checkpoint's results with a regime (or an image regime's encoder) other than the one its
    model.json records: a text-only model measured as ``--regime image_text`` would be filed as an image run."""
    got = meta.get("regime")
    if got != regime:
        raise ValueError(f"checkpoint {io.relpath(path)} was trained as regime {got!r} (its model.json), not "
                         f"--regime {regime}; pass --regime {got} or the checkpoint of that regime.")
    if regime in IMAGE_REGIMES and meta.get("encoder") != encoder:
        raise ValueError(f"checkpoint {io.relpath(path)} was trained with encoder {meta.get('encoder')!r} (its "
                         f"model.json), not --encoder {encoder}; pass --encoder {meta.get('encoder')}.")


def run_checkpoint(regime: str, seed: int, profile: str = "cpu", encoder: str | None = None, *, kinds=KINDS,
                   sizes: Sizes | None = None, checkpoint=None, results_dir=None, command: str | None = None,
                   commit: str | None = None, device="cpu", log=None, overwrite: bool = False) -> list[Path]:
    """Measure one checkpoint and write one results file per kind; returns the paths written."""
    check_regime(regime)
    encoder = (encoder or MAIN_ENCODER) if regime in IMAGE_REGIMES else None
    sizes = sizes or Sizes()
    path = Path(checkpoint) if checkpoint is not None else checkpoint_dir(regime, seed, profile, encoder)
    if not (path / "model.json").exists() and checkpoint is None:
        raise io.CheckpointError(missing_checkpoint_message(regime, seed, profile, encoder))
    check_trained_as(io.read_checkpoint_meta(path), path, regime, encoder)  # a missing one raises its own clear error
    for kind in kinds:
        if kind not in MEASURES:
            raise ValueError(f"unknown kind {kind!r}: allowed {KINDS}.")
    commit = commit or io.git_commit()
    tag, variant = results_tag(path, run_tag(regime, seed, profile, encoder))
    out_dir = Path(results_dir or io.RESULTS_DIR)
    for kind in kinds:
        io.refuse_overwrite(out_dir / f"{kind}_{tag}.json", overwrite)
    io.check_writable(out_dir)
    model, task, meta = load_for_analysis(path, device)
    image = None
    if meta.get("adapter") and "knockout" in kinds:  # image checkpoints: knock out patches on image prompts too
        _, adapter, vision, _ = load_image_model(path, device)
        image = (adapter, vision)
    written = []
    for kind in kinds:
        t0 = time.perf_counter()
        body = (knockout_measure(model, task, sizes, device, image=image) if kind == "knockout"
                else MEASURES[kind](model, task, sizes, device))
        wall = time.perf_counter() - t0
        record = {"kind": kind, "regime": regime, "seed": seed, "profile": profile, "encoder": encoder, "variant": variant,
                  "checkpoint": io.relpath(path), "checkpoint_sha256": meta.get("sha256"),
                  "n_layers": n_layers_of(model), "task": task.to_dict(), "sizes": sizes.to_dict(), **body}
        if kind == "interchange":  # the ID split's curves at the top level, as interchange_record has them
            top = body["splits"].get("id", {})
            record.update({"iia": top.get("iia"), "per_layer": top.get("per_layer"), "summary": top.get("summary"),
                           "n_pairs": top.get("n_pairs", 0)})
        record["provenance"] = io.provenance(command, device, wall, commit=commit)
        out = io.write_results(f"{kind}_{tag}", record, results_dir)
        written.append(out)
        (log or (lambda msg: print(msg, flush=True)))(f"{tag}: {kind} in {wall:.1f} s -> {out}")
    return written


def up_to_date(regime: str, seed: int, profile: str = "cpu", encoder: str | None = None, kinds=KINDS,
               results_dir=None) -> bool:
    """True when every kind's results file exists and was made from the checkpoint as it is now (same sha256)."""
    encoder = (encoder or MAIN_ENCODER) if regime in IMAGE_REGIMES else None
    try:
        sha = io.read_checkpoint_meta(checkpoint_dir(regime, seed, profile, encoder)).get("sha256")
    except io.CheckpointError:
        return False
    tag = run_tag(regime, seed, profile, encoder)
    for kind in kinds:
        f = Path(results_dir or io.RESULTS_DIR) / f"{kind}_{tag}.json"
        if not f.exists():
            return False
        if json.loads(f.read_text()).get("checkpoint_sha256") != sha:
            return False
    return True
