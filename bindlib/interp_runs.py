"""Running the measurements of ``bindlib.interp`` on saved checkpoints, and reading their results files back.

``python -m bindlib interp`` calls :func:`run_checkpoint`, which writes one results file per kind:

- ``interchange_{tag}.json``: IIA per layer and hypothesis at ID and OOD lengths, the routing summary,
  the position-id swap and the timing of the batched sweep against the per-pair loop;
- ``knockout_{tag}.json``: accuracy and relative change of the answer's probability per layer and
  target set, window and cumulative;
- ``probe_{tag}.json``: linear-probe accuracy per layer, role and target, with controls.

``tag`` is :func:`bindlib.regimes.run_tag`.  The chapters read the files with :func:`load_interp`.
Sizes are chosen so that one checkpoint of the CPU profile takes about two minutes on one thread;
every file records the sizes it was made with.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from . import interp as I
from . import io
from .regimes import IMAGE_REGIMES, MAIN_ENCODER, check_regime, checkpoint_dir, run_tag

KINDS = ("interchange", "knockout", "probe")
# The four regimes of the paper's table, in the order the chapters show them.
ANALYSED_REGIMES = ("text_only", "noise_text", "image_text", "noise_image_text")
SEEDS = (0, 1, 2)
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
    """The checkpoint folder of a run, or of its variant (the folder name plus ``_<variant>``, e.g. ``ordered``,
    ``hopslot``, ``decl090``, ``learnedpos``: the suffix ``train`` gives it)."""
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
    from .task import TaskConfig

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
    make = I.make_pairs if kind == "interchange" else I.make_rebind_pairs

    def draw(size, s):
        return make(task, size, seed=s, n=n_range, device=device, association_order=association_order)

    if model is None:
        return draw(n_pairs, seed), n_pairs
    kept, total, drawn, rnd = [], 0, 0, 0
    while total < n_pairs and drawn < max_draw_factor * n_pairs:
        pool = draw(2 * n_pairs, seed + 1000 * rnd)
        drawn, rnd = drawn + len(pool), rnd + 1
        ok = I.correct_on_both(model, pool).nonzero().squeeze(1)[: n_pairs - total]
        if len(ok):
            kept.append(pool.select(ok))
            total += len(ok)
    if not kept:
        return draw(1, seed).select(torch.arange(0)), drawn
    return _concat_pairs(kept), drawn


def _concat_pairs(parts):
    if len(parts) == 1:
        return parts[0]
    if isinstance(parts[0], I.RebindPairs):
        return I.concat_rebind_pairs(parts)
    return I.Pairs(I.concat_batches(*(p.base for p in parts)), I.concat_batches(*(p.source for p in parts)),
                   *(torch.cat([getattr(p, k) for p in parts]) for k in
                     ("positional", "symbolic", "reflexive", "base_answer", "source_objects", "traded_object")))


def sweep_timing(model, pairs, packed: dict, loop_pairs: int) -> dict:
    """Wall time of the batched all-layer sweep ``packed`` (an ``interchange`` result over every pair)
    against the per-pair, per-layer loop, run on the first ``loop_pairs`` pairs and extrapolated
    linearly; also the largest logit difference between the two on those pairs (they must agree)."""
    k = min(loop_pairs, len(pairs))
    loop = I.interchange(model, pairs.select(torch.arange(k)), method="loop")
    per_pair = loop["wall_seconds"] / k
    return {"n_pairs": len(pairs), "n_layers": len(packed["layers"]), "threads": torch.get_num_threads(),
            "packed_seconds": packed["wall_seconds"], "loop_pairs": k, "loop_seconds": loop["wall_seconds"],
            "loop_seconds_extrapolated": per_pair * len(pairs),
            "speedup_packed_vs_loop": per_pair * len(pairs) / packed["wall_seconds"],
            "max_abs_logit_diff": (packed["patched_logits"][:k] - loop["patched_logits"]).abs().max().item()}


def _interchange_split(model, task, sizes: Sizes, n_pairs: int, n_range, seed: int, device, order="shuffled"):
    """One split's interchange record (or its error), and the raw result (None on error)."""
    lo, hi = max(4, n_range[0]), n_range[1]
    model_for_pairs = model if sizes.only_correct else None
    pairs, drawn = correct_pairs(model_for_pairs, task, n_pairs, seed, (lo, hi), device, association_order=order)
    if len(pairs) < min(MIN_PAIRS, n_pairs):  # a model that fails most prompts of a split: say so in the file
        return {"n_range": [lo, hi], "association_order": order, "n_pairs": 0, "pairs_drawn": drawn,
                "error": f"only {len(pairs)} of {drawn} pairs answered correctly on both prompts "
                         f"(fewer than {min(MIN_PAIRS, n_pairs)}); no interchange measurement at N {lo}..{hi}"}, None, pairs
    res = I.interchange(model, pairs)
    rec = I.interchange_record(res, regime="", seed=0, profile="", command="", device=device)
    return ({"n_range": [lo, hi], "association_order": order, "n_pairs": len(pairs), "pairs_drawn": drawn,
             "iia": rec["iia"], "per_layer": rec["per_layer"], "summary": rec["summary"],
             "sweep_seconds": _num(res["wall_seconds"], 3)}, res, pairs)


def rebind_measure(model, task, sizes: Sizes, seed: int, device="cpu", order: str = "shuffled") -> dict:
    """Rebind pairs (``interp.RebindPairs``) at ID lengths: per layer the share of patched outputs that stay
    (colour/slot carried), follow the bound shape, or follow the source's answer (REF)."""
    lo, hi = max(3, task.id_range[0]), task.id_range[1]
    model_for_pairs = model if sizes.only_correct else None
    pairs, drawn = correct_pairs(model_for_pairs, task, sizes.rebind_pairs, seed, (lo, hi), device, kind="rebind",
                                 association_order=order)
    if len(pairs) < min(MIN_PAIRS, sizes.rebind_pairs):
        return {"n_range": [lo, hi], "n_pairs": 0, "pairs_drawn": drawn,
                "error": f"only {len(pairs)} of {drawn} rebind pairs answered correctly on both prompts"}
    res = I.rebind(model, pairs)
    return {"n_range": [lo, hi], "association_order": order, "n_pairs": len(pairs), "pairs_drawn": drawn,
            "per_layer": res["per_layer"], "sweep_seconds": res["wall_seconds"]}


def _attach_rebind(split_rec: dict, reb: dict) -> None:
    """Put the rebind shares beside pos/sym/ref in each per-layer row, and read them at the routing layer."""
    split_rec["rebind"] = reb
    if not split_rec.get("per_layer") or not reb.get("per_layer"):
        return
    by_layer = {d["layer"]: d for d in reb["per_layer"]}
    for row in split_rec["per_layer"]:
        d = by_layer.get(row["layer"])
        if d:
            row.update({f"rebind_{k}": d[k] for k in ("stay", "shape", "reflexive", "other")})
    d = by_layer.get(split_rec["summary"]["routing_layer"])
    if d:
        split_rec["summary"].update({f"rebind_{k}": d[k] for k in ("stay", "shape", "reflexive")})


def _pooled_swap(model, task, sizes: Sizes, seed: int, device, order: str = "shuffled") -> dict:
    from .task import sample_batch

    batch = sample_batch(task, sizes.swap_prompts, seed, n=task.id_range, device=device, association_order=order)
    swaps = [I.position_swap(model, batch, i, j, only_correct=sizes.only_correct) for i, j in SWAPS]
    n_total = sum(s["n"] for s in swaps)
    pooled = {k: (sum(s[k] * s["n"] for s in swaps if s["n"]) / n_total if n_total else float("nan"))
              for k in ("flip_rate", "stay_rate", "other_rate")}
    return {"swaps": swaps, "n": n_total, "association_order": order, **pooled}


def interchange_measure(model, task, sizes: Sizes, device="cpu") -> dict:
    """IIA per layer at ID and OOD lengths, routing summaries, position-id swap, sweep timing; for the
    standard format also rebind pairs per layer (beside pos/sym/ref) and, with ``sizes.declared_pairs``,
    the same on declared-order prompts (split ``id_declared``, ``position_swap_declared``).

    In the 'ordered' format the pairs are adapted (``interp.pairs_from_base``): POS predicts the base's
    item at the source's slot, SYM the base's item of the source's queried colour; there are no rebind pairs."""
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
            timing = sweep_timing(model, pairs, res, sizes.loop_pairs)
        if standard and split in ("id", "id_declared") and sizes.rebind_pairs > 0 and res is not None:
            _attach_rebind(rec, rebind_measure(model, task, sizes, sizes.seed + 5 + dseed, device, order))
        splits[split] = rec
    out = {"layers": list(range(I.n_layers_of(model))), "format": task.format, "splits": splits,
           "position_swap": _pooled_swap(model, task, sizes, sizes.seed + 2, device), "timing": timing}
    if standard and sizes.declared_pairs > 0:
        out["position_swap_declared"] = _pooled_swap(model, task, sizes, sizes.seed + 6, device, "declared")
    return _clean(out)


HEAD_SETS = ("answer_item", "query_declaration", "random_answer_item")  # per-head knockouts (one layer, one head)


def knockout_measure(model, task, sizes: Sizes, device="cpu", image=None) -> dict:
    """Window (k = 1) and cumulative knockout sweeps over every target set and its random control,
    per-head knockouts of HEAD_SETS, and, for an image model (``image`` = (adapter, vision)), the same
    sweeps on image prompts over the image target sets (the queried object's patches against the others)."""
    from .task import sample_batch

    batch = sample_batch(task, sizes.knockout_prompts, sizes.seed + 3, n=task.id_range, device=device)
    sets = I.target_sets(batch, seed=sizes.seed)
    out = {}
    for mode in ("window", "cumulative"):
        res = I.knockout_sweep(model, batch, sets, mode=mode, k=1)
        out[mode] = {"k": res["k"], "sets": res["sets"]}
        out["base_accuracy"], out["layers"] = res["base_accuracy"], res["layers"]
    out["n_prompts"] = len(batch)
    out["per_head"] = I.head_knockout_sweep(model, batch, {k: sets[k] for k in HEAD_SETS})
    if image is not None:
        out["image"] = image_knockout_measure(model, task, sizes, *image, device=device)
    return _clean(out)


def image_knockout_measure(model, task, sizes: Sizes, adapter, vision, device="cpu") -> dict:
    """Knockouts on image prompts (same prompts' text as the text knockouts, rendered with a fixed seed)."""
    from .task import sample_batch

    batch = sample_batch(task, sizes.knockout_prompts, sizes.seed + 3, n=task.id_range, device=device)
    prompts = vision.prompts(batch, sizes.seed + 3)
    inputs = prompts.model_inputs(adapter)
    sets = I.image_target_sets(prompts, seed=sizes.seed)
    out = {"n_prompts": len(batch), "encoder": vision.encoder.name,
           "chance": (1.0 / batch.n_objects.float()).mean().item()}
    for mode in ("window", "cumulative"):
        res = I.knockout_sweep(model, prompts.batch, sets, mode=mode, k=1, inputs=inputs)
        out[mode] = {"k": res["k"], "sets": res["sets"]}
        out["base_accuracy"], out["layers"] = res["base_accuracy"], res["layers"]
    return out


def probe_measure(model, task, sizes: Sizes, device="cpu", probes=PROBES) -> dict:
    """Linear probes of every (role, target) in ``probes``, with the control task and random-init twin."""
    rows = []
    for role, target in probes:
        res = I.probe(model, task, "hook_resid_pre", role, target, n_prompts=sizes.probe_prompts, seed=sizes.seed,
                      Cs=sizes.probe_Cs, device=device)
        rows.append(res)
    return _clean({"hook": "hook_resid_pre", "probes": rows,
                   "identity_split": {"test_frac": 0.4, "rule": "no colour-shape or shape-item combination is "
                                      "shared by train and test (bindlib.interp.identity_split)"}})


MEASURES = {"interchange": interchange_measure, "knockout": knockout_measure, "probe": probe_measure}


def run_checkpoint(regime: str, seed: int, profile: str = "cpu", encoder: str | None = None, *, kinds=KINDS,
                   sizes: Sizes | None = None, checkpoint=None, results_dir=None, command: str | None = None,
                   commit: str | None = None, device="cpu", log=None) -> list[Path]:
    """Measure one checkpoint and write one results file per kind; returns the paths written."""
    check_regime(regime)
    encoder = (encoder or MAIN_ENCODER) if regime in IMAGE_REGIMES else None
    sizes = sizes or Sizes()
    path = Path(checkpoint) if checkpoint is not None else checkpoint_dir(regime, seed, profile, encoder)
    if not (path / "model.json").exists():
        if checkpoint is None:
            raise io.CheckpointError(missing_checkpoint_message(regime, seed, profile, encoder))
        io.read_checkpoint_meta(path)  # raises its own clear error
    for kind in kinds:
        if kind not in MEASURES:
            raise ValueError(f"unknown kind {kind!r}: allowed {KINDS}.")
    commit = commit or io.git_commit()
    model, task, meta = load_for_analysis(path, device)
    image = None
    if meta.get("adapter") and "knockout" in kinds:  # image checkpoints: knock out patches on image prompts too
        from .multimodal import load_image_model

        _, adapter, vision, _ = load_image_model(path, device)
        image = (adapter, vision)
    tag = run_tag(regime, seed, profile, encoder)
    # a checkpoint beside the table's (e.g. ..._nogrounding, ..._steps3x, ..._learnedpos) keeps its own name
    # and is marked as a variant, so that it never overwrites or joins the table's results
    # (any other folder name is measured under --regime/--seed's name, as --checkpoint documents)
    variant = path.name[len(tag):] if path.name.startswith(tag) and path.name != tag else None
    tag = path.name if variant else tag
    written = []
    for kind in kinds:
        t0 = time.perf_counter()
        body = (knockout_measure(model, task, sizes, device, image=image) if kind == "knockout"
                else MEASURES[kind](model, task, sizes, device))
        wall = time.perf_counter() - t0
        record = {"kind": kind, "regime": regime, "seed": seed, "profile": profile, "encoder": encoder, "variant": variant,
                  "checkpoint": str(path), "checkpoint_sha256": meta.get("sha256"),
                  "n_layers": I.n_layers_of(model), "task": task.to_dict(), "sizes": sizes.to_dict(), **body}
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
        import json

        if json.loads(f.read_text()).get("checkpoint_sha256") != sha:
            return False
    return True


# ---------------------------------------------------------------- reading results back
def regime_order(regime: str) -> int:
    return ANALYSED_REGIMES.index(regime) if regime in ANALYSED_REGIMES else len(ANALYSED_REGIMES)


def load_interp(kind: str, profile: str = "cpu", results_dir=None, encoder: str | None = MAIN_ENCODER) -> list[dict]:
    """Every results record of ``kind`` of the table's checkpoints (``encoder`` for image regimes; None: every
    encoder), ordered by regime then seed. Variants (no grounding, longer runs) are left out: see load_variants."""
    recs = [r for r in io.load_results(f"{kind}_*.json", results_dir, kind=kind, profile=profile)
            if (r["regime"] not in IMAGE_REGIMES or encoder is None or r.get("encoder") == encoder)
            and not r.get("variant")]
    return sorted(recs, key=lambda r: (regime_order(r["regime"]), r["seed"]))


def encoder_runs(kind: str, profile: str = "cpu", results_dir=None, min_accuracy: float | None = None) -> list[dict]:
    """Records of ``kind`` for image checkpoints of every encoder but the main one that answer at least
    ``min_accuracy`` of ID text prompts (their knockout file's clean accuracy), by regime, encoder, seed."""
    min_accuracy = MIN_ACCURACY if min_accuracy is None else min_accuracy
    acc = {(r["regime"], r["encoder"], r["seed"]): r["base_accuracy"]
           for r in load_interp("knockout", profile, results_dir, encoder=None)}
    recs = [r for r in load_interp(kind, profile, results_dir, encoder=None)
            if r["regime"] in IMAGE_REGIMES and r["encoder"] != MAIN_ENCODER
            and acc.get((r["regime"], r["encoder"], r["seed"]), 0.0) >= min_accuracy]
    return sorted(recs, key=lambda r: (regime_order(r["regime"]), r["encoder"], r["seed"]))


def image_knockouts(profile: str = "cpu", results_dir=None) -> list[dict]:
    """Every knockout record with image-prompt knockouts (any encoder, variants included), one row each:
    {run, regime, encoder, seed, variant, **record["image"]}."""
    recs = io.load_results("knockout_*.json", results_dir, kind="knockout", profile=profile)
    rows = [{"run": f"{r['regime']} {r['encoder']} s{r['seed']}{r.get('variant') or ''}", "regime": r["regime"],
             "encoder": r["encoder"], "seed": r["seed"], "variant": r.get("variant"), **r["image"]}
            for r in recs if r.get("image")]
    return sorted(rows, key=lambda x: (regime_order(x["regime"]), x["encoder"] != MAIN_ENCODER, x["encoder"],
                                       bool(x["variant"]), x["variant"] or "", x["seed"]))


def regimes_present(records: list[dict]) -> list[str]:
    return sorted({r["regime"] for r in records}, key=regime_order)


def mean_sd(values) -> tuple[float, float]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return float("nan"), float("nan")
    m = sum(vals) / len(vals)
    sd = (sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5 if len(vals) > 1 else 0.0
    return m, sd


MIN_ROUTING_SHARE = 0.5  # below this, too few patched outputs follow POS or SYM for BS to mean anything


def measurable(record: dict, split: str = "id") -> bool:
    """A run has a binding score worth reading when the routing layer routes at least MIN_ROUTING_SHARE of pairs."""
    summ = (record["splits"].get(split) or {}).get("summary")
    return bool(summ) and (summ.get("routing_share") or 0.0) >= MIN_ROUTING_SHARE


def routing_table(records: list[dict], split: str = "id") -> list[dict]:
    """Per regime: the seeds whose BS is measurable (routing share >= MIN_ROUTING_SHARE), the mean and range of
    their routing-layer BS and position-swap flip rate, and the seeds left out (``unmeasurable``)."""
    out = []
    for regime in regimes_present(records):
        every = [r for r in records if r["regime"] == regime]
        group = [r for r in every if measurable(r, split)]
        row = {"regime": regime, "seeds": [r["seed"] for r in group],
               "unmeasurable": [r["seed"] for r in every if not measurable(r, split)]}
        if group:
            summ = [r["splits"][split]["summary"] for r in group]
            bs = [x["binding_score"] for x in summ if x["binding_score"] is not None]
            row.update({"routing_layers": [x["routing_layer"] for x in summ],
                        "binding_score": mean_sd(bs)[0], "binding_score_min": min(bs, default=None),
                        "binding_score_max": max(bs, default=None),
                        "sym_pos_ratio": [x.get("sym_pos_ratio") for x in summ],
                        "flip_rate": mean_sd([r["position_swap"]["flip_rate"] for r in group])[0],
                        "stay_rate": mean_sd([r["position_swap"]["stay_rate"] for r in group])[0]})
        else:
            row.update({"binding_score": None, "flip_rate": None, "stay_rate": None})
        out.append(row)
    return out


def direction_verdict(table: list[dict]) -> dict:
    """Is text_only positional (BS < 0) and image_text symbolic (BS > 0) at the routing layer, as the paper says?

    ``found`` is None when the regime has no results, "unmeasurable" when none of its seeds routes enough pairs.
    """
    by = {row["regime"]: row for row in table}
    verdict = {}
    for regime, want in (("text_only", "positional"), ("image_text", "symbolic")):
        row = by.get(regime)
        if row is None:
            verdict[regime] = {"expected": want, "found": None, "agrees": None}
            continue
        bs = row["binding_score"]
        if bs is None or not math.isfinite(bs):
            verdict[regime] = {"expected": want, "found": "unmeasurable", "agrees": None,
                               "unmeasurable": row["unmeasurable"]}
            continue
        found = "symbolic" if bs > 0 else ("positional" if bs < 0 else "neither")
        verdict[regime] = {"expected": want, "found": found, "binding_score": bs, "agrees": found == want,
                           "seeds": row["seeds"], "unmeasurable": row["unmeasurable"]}
    return verdict


MIN_ACCURACY = 0.5  # runs answering fewer ID prompts than this are reported, not analysed


def usable(records: list[dict], min_accuracy: float = MIN_ACCURACY, results_dir=None) -> tuple[list[dict], list[dict]]:
    """Split records into runs whose model answers at least ``min_accuracy`` of ID prompts (the accuracy without
    knockout in the run's knockout file) and the others, returned as {regime, seed, accuracy} rows.

    A model near chance gives interventions and probes nothing to explain; averaging it in would blur the rest.
    """
    acc = {(r["regime"], r["seed"]): r["base_accuracy"] for r in load_interp("knockout", results_dir=results_dir)}
    kept, dropped = [], []
    for r in records:
        a = acc.get((r["regime"], r["seed"]))
        if a is not None and a < min_accuracy:
            dropped.append({"regime": r["regime"], "seed": r["seed"], "accuracy": a})
        else:
            kept.append(r)
    return kept, dropped


def print_dropped(dropped: list[dict], min_accuracy: float = MIN_ACCURACY) -> None:
    for d in dropped:
        print(f"left out: {d['regime']} seed {d['seed']}, which answers only {d['accuracy']:.0%} of ID prompts "
              f"(threshold {min_accuracy:.0%})")


# ---------------------------------------------------------------- the controls of issue 9, one row per arm and seed
def control_rows(results_dir=None, profile: str = "cpu") -> list[dict]:
    """One row per interchange results file of a text_only checkpoint (the recipe and its arms: ``_ordered``,
    ``_hopslot``, ``_hopw0``, ``_hopl<k>``, ``_decl<p>``, ``_learnedpos``): ID and OOD accuracy (from its
    training file, when present beside it or in data/results), BS and routing share at the routing layer,
    the position-id swap flip rate, the rebind shares at the routing layer, and the same on declared-order
    prompts where measured.  ``results_dir`` may be a list of folders (later ones win)."""
    import json

    dirs = results_dir if isinstance(results_dir, (list, tuple)) else [results_dir]
    dirs = [Path(d) if d else io.RESULTS_DIR for d in dirs]
    files = {}
    for d in dirs:
        for f in sorted(d.glob(f"interchange_text_only_{profile}_s*.json")):
            files[f.name] = f
    rows = []
    for name, f in sorted(files.items()):
        rec = json.loads(f.read_text())
        tag = name[len("interchange_"):-len(".json")]
        train = next((d / f"training_{tag}.json" for d in [*dirs, io.RESULTS_DIR] if (d / f"training_{tag}.json").exists()), None)
        acc = json.loads(train.read_text()) if train else {}
        summ = (rec["splits"].get("id") or {}).get("summary") or {}
        row = {"arm": rec.get("variant") or "recipe", "seed": rec["seed"], "format": rec.get("format", "standard"),
               "id_accuracy": acc.get("id_accuracy"), "ood_accuracy": acc.get("ood_accuracy"),
               "routing_layer": summ.get("routing_layer"), "routing_share": summ.get("routing_share"),
               "binding_score": summ.get("binding_score"), "flip_rate": rec["position_swap"]["flip_rate"],
               "rebind_shape": summ.get("rebind_shape"), "rebind_stay": summ.get("rebind_stay"), "file": str(f)}
        decl = (rec["splits"].get("id_declared") or {}).get("summary")
        if decl:
            row.update({"declared_binding_score": decl.get("binding_score"), "declared_routing_layer": decl.get("routing_layer"),
                        "declared_rebind_shape": decl.get("rebind_shape"), "declared_rebind_stay": decl.get("rebind_stay"),
                        "declared_flip_rate": (rec.get("position_swap_declared") or {}).get("flip_rate")})
        rows.append(row)
    return sorted(rows, key=lambda r: (r["arm"] != "recipe", r["arm"], r["seed"]))
