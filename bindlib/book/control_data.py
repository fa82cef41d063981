"""The controls of issues 9 and 10, read from their results files as plain numbers (no formatting).

    arm_rows("_ordered")          one row per seed of the ordered-format positive control
    arm_rows("", controls=True)   the recipe's models, measured with rebind pairs and declared-order prompts
    neutral_curves()              the learning curves of recipe variants (``python -m bindlib curve``)
    image_levers()                the image-stage recipes (``python -m bindlib image-stage``)
    control_claims()              the scoreboard's control rows (``bindlib.book.findings.scoreboard``)

Every reader globs what exists, so a seed added later shows up without a code change.
``results_dir`` is the results folder (default data/results); the rebind measurements live in its
``controls/`` sub-folder.  The tables and charts built on these are in ``bindlib.book.controls``.
"""
from __future__ import annotations

import json
import math
import re
import statistics
from pathlib import Path

from .. import io
from ..task import TaskConfig

PROFILE = "cpu"
PLATEAU_MARGIN = 0.10  # a curve whose final two-hop accuracy is within this of chance has not left the plateau
NEUTRAL_VARIANTS = ("direct",)  # curve variants with no hop-specific aid: no sub-skill queries, no deep supervision


def _dir(results_dir) -> Path:
    return Path(results_dir) if results_dir else io.RESULTS_DIR


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def mean(values) -> float:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.mean(vals) if vals else float("nan")


def mechanism(bs) -> str:
    """A binding score read as a mechanism: above +0.5 symbolic, below -0.5 positional, else mixed."""
    if bs is None or not math.isfinite(bs):
        return "not measured"
    return "symbolic" if bs > 0.5 else "positional" if bs < -0.5 else "mixed"


def chance(task: TaskConfig | None = None) -> float:
    """Guessing one of the N items in the prompt, averaged over the ID range of N."""
    lo, hi = (task or TaskConfig()).id_range
    return sum(1 / n for n in range(lo, hi + 1)) / (hi - lo + 1)


def routing(record: dict, split: str = "id") -> dict:
    """An interchange record's routing-layer numbers: layer, routed share, BS, P_pos, P_sym, rebind shares."""
    sp = (record.get("splits") or {}).get(split) or {}
    summ = sp.get("summary") or {}
    layer = summ.get("routing_layer")
    at = next((p for p in sp.get("per_layer", []) if p["layer"] == layer), {})
    return {"routing_layer": layer, "routing_share": summ.get("routing_share"),
            "binding_score": summ.get("binding_score"), "p_pos": at.get("positional"), "p_sym": at.get("symbolic"),
            "rebind_shape": summ.get("rebind_shape"), "rebind_stay": summ.get("rebind_stay"),
            "n_pairs": sp.get("n_pairs")}


def arm_rows(suffix: str = "", results_dir=None, controls: bool = False) -> list[dict]:
    """One row per seed of the text-only arm whose run names end in ``suffix`` ("" the recipe, "_ordered",
    "_learnedpos"): its interchange measurement (from ``controls/`` when ``controls``), the ID and OOD
    accuracy of its training file, the position-shift accuracies where measured, and, for files with
    declared-order prompts, BS and swap flips on those."""
    root = _dir(results_dir)
    where = root / "controls" if controls else root
    recs = [r for r in io.load_results(f"interchange_text_only_{PROFILE}_s*.json", where, kind="interchange")
            if (r.get("variant") or "") == suffix]
    rows = []
    for rec in sorted(recs, key=lambda r: r["seed"]):
        name = f"text_only_{PROFILE}_s{rec['seed']}{suffix}"
        train = _read(root / f"training_{name}.json") or {}
        shift = _read(root / f"position_shift_{name}.json") or {}
        row = {"seed": rec["seed"], "format": rec.get("format") or rec.get("task", {}).get("format") or "standard",
               "id_accuracy": train.get("id_accuracy"), "ood_accuracy": train.get("ood_accuracy"),
               **routing(rec), "flip_rate": rec["position_swap"]["flip_rate"],
               "hop_weight": max((s.get("hop_weight", 0.0) for s in train.get("train_config", {}).get("stages", [])),
                                 default=None),
               "shift": {int(k): v["id_accuracy"] for k, v in (shift.get("shifts") or {}).items()}}
        if "id_declared" in rec["splits"]:
            decl = routing(rec, "id_declared")
            row.update({"declared_binding_score": decl["binding_score"], "declared_rebind_shape": decl["rebind_shape"],
                        "declared_rebind_stay": decl["rebind_stay"],
                        "declared_flip_rate": (rec.get("position_swap_declared") or {}).get("flip_rate")})
        rows.append(row)
    return rows


def dial_rows(results_dir=None) -> list[dict]:
    """The shortcut dial: one row per declared share p and seed measured (``_hopslot_decl<p>``; the slot arm
    ``_hopslot`` is p = 0), the ``arm_rows`` numbers plus ``p`` and the ID accuracy on declared-order prompts."""
    root, rows = _dir(results_dir), []
    for rec in io.load_results(f"interchange_text_only_{PROFILE}_s*.json", root, kind="interchange"):
        if m := re.fullmatch(r"_hopslot(?:_decl(\d{3}))?", rec.get("variant") or ""):
            row = next(r for r in arm_rows(m.group(0), results_dir) if r["seed"] == rec["seed"])
            train = _read(root / f"training_text_only_{PROFILE}_s{rec['seed']}{m.group(0)}.json") or {}
            rows.append(row | {"p": int(m.group(1) or 0) / 100,
                               "declared_id_accuracy": ((train.get("axes") or {}).get("declared") or {}).get("id_accuracy")})
    return sorted(rows, key=lambda r: (r["p"], r["seed"]))


def positional_control(results_dir=None) -> dict:
    """The ordered-format positive control over the seeds that exist: does the instrument read positional?

    ``reads_positional`` is True when every seed's routing-layer BS is below -0.5 and the mean swap flip
    rate above 0.5, None when no seed has been measured."""
    rows = arm_rows("_ordered", results_dir)
    bs = [r["binding_score"] for r in rows]
    ok = bool(rows) and all(b is not None and b < -0.5 for b in bs) and mean(r["flip_rate"] for r in rows) > 0.5
    return {"rows": rows, "seeds": [r["seed"] for r in rows], "binding_score": mean(bs),
            "flip_rate": mean(r["flip_rate"] for r in rows), "p_pos": mean(r["p_pos"] for r in rows),
            "id_accuracy": mean(r["id_accuracy"] for r in rows), "ood_accuracy": mean(r["ood_accuracy"] for r in rows),
            "reads_positional": ok if rows else None}


# ---------------------------------------------------------------- neutral control: learning curves
CURVE_SKILLS = ("two_hop", "color_to_shape", "shape_to_item")


def neutral_curves(results_dir=None) -> list[dict]:
    """Every committed learning curve (``curve_*.json``): variant, seed, steps, final and best two-hop ID
    accuracy, chance, whether it left the plateau, and its history."""
    out = []
    for f in sorted(_dir(results_dir).glob("curve_*.json")):
        r = json.loads(f.read_text())
        if r.get("kind") != "learning_curve" or not r.get("history"):
            continue
        h = r["history"]
        c = chance(TaskConfig(**(r.get("train_config", {}).get("task") or {})))
        final = h[-1]["acc_two_hop"]
        out.append({"name": f.stem, "variant": r.get("variant"), "seed": r["seed"], "steps": h[-1]["step"],
                    "final_two_hop": final, "best_two_hop": max(x["acc_two_hop"] for x in h),
                    "final_subskills": {k: h[-1].get(f"acc_{k}") for k in CURVE_SKILLS[1:]},
                    "chance": c, "left_plateau": final > c + PLATEAU_MARGIN,
                    "hop_weight": max((s.get("hop_weight", 0.0) for s in r["train_config"]["stages"]), default=0.0),
                    "wall_seconds": r.get("provenance", {}).get("wall_seconds"), "history": h})
    return sorted(out, key=lambda c: (-c["steps"], c["variant"] or "", c["seed"]))


# ---------------------------------------------------------------- issue 10: the image stage
def _lever(stages: list[dict]) -> str:
    """What an image recipe does, from its stages: steps, image share, grounding, warm-up, lr scale."""
    parts = []
    for s in stages:
        if s["name"] == "mix":
            parts.append(f"mix {s['steps']} ({s['image']:.0%} image)")
            continue
        what = f"{s['name'].replace('_', ' ')} {s['steps']} ({s['image']:.0%} image"
        what += f", grounding {s.get('grounding', 0):g}" + (", LM frozen" if s.get("freeze") == "lm" else "")
        what += f", lr x{s['lr_scale']:g}" if s.get("lr_scale", 1.0) != 1.0 else ""
        what += ", + shape -> item" if (s.get("mix") or {}).get("shape_to_item") else ""
        parts.append(what + ")")
    return " -> ".join(parts)


def start_suffix(record: dict) -> str:
    """Which text model an image-stage run continued, as its name's suffix ("" the recipe's, "_learnedpos", ...)."""
    name = Path(record.get("init_from") or f"text_only_{PROFILE}_s{record['seed']}").name
    return name[len(f"text_only_{PROFILE}_s{record['seed']}"):]


def image_positions(record: dict) -> str:
    """How an image-stage run numbered its image tokens (vision.multimodal.IMAGE_POSITIONS)."""
    return ((record.get("train_config") or {}).get("vision") or {}).get("image_positions", "sequence")


def start_label(record: dict) -> str:
    """The chapters' name for the text model an image-stage run continued."""
    suffix = start_suffix(record)
    return STARTS.get(suffix, suffix.lstrip("_"))


def image_levers(results_dir=None, start: str | None = "") -> list[dict]:
    """One row per image-stage recipe run (``imagestage_*.json``) from the text models named by ``start``
    (the suffix: "" the recipe's, "_learnedpos", ...; None: every start): recipe, seed, encoder, what it
    does, image ID, text ID and OOD, and whether it meets both targets (from the file's own targets)."""
    rows = []
    for r in io.load_results("imagestage_*.json", _dir(results_dir), kind="image_recipe"):
        if r.get("image_id_accuracy") is None:  # a compute-matched text control, not an image lever
            continue
        if start is not None and start_suffix(r) != start:
            continue
        t = r.get("targets") or {"image_id_accuracy": 0.85, "id_accuracy": 0.95}
        rows.append({"recipe": r["recipe"], "seed": r["seed"], "encoder": r["encoder"],
                     "lever": _lever(r["train_config"]["stages"]),
                     "image_steps": sum(s["steps"] for s in r["train_config"]["stages"] if s["name"] != "mix"),
                     "image_id_accuracy": r["image_id_accuracy"],
                     "id_accuracy": train_id_accuracy(r), "ood_accuracy": r["ood_accuracy"], "targets": t,
                     "meets_targets": r["image_id_accuracy"] >= t["image_id_accuracy"]
                     and train_id_accuracy(r) >= t["id_accuracy"], "init_from": r.get("init_from"),
                     "image_positions": image_positions(r)})
    return sorted(rows, key=lambda x: (x["encoder"], x["recipe"], x["image_positions"], x["image_steps"], x["seed"]))


def encoder_ceiling(results_dir=None) -> list[dict]:
    """Per encoder: the oracle's two-hop ceiling on frozen features, and its held-out shape accuracy."""
    root = _dir(results_dir)
    ceil = _read(root / f"encoder_ceiling_{PROFILE}.json") or {"encoders": {}}
    rows = []
    for name, e in ceil["encoders"].items():
        pre = _read(root / f"encoder_{name}_{PROFILE}.json") or {}
        rows.append({"encoder": name, "grid": e.get("render", {}).get("grid"),
                     "held_out_shape": (pre.get("held_out") or {}).get("shape_object"),
                     "shape_object": e["shape_object"], "found_queried_object": e["found_queried_object"],
                     "two_hop_ceiling": e["two_hop_ceiling"]})
    return rows


def image_throughput(results_dir=None) -> dict | None:
    """The image-stage throughput benchmark: its rows (variant, steps/s, speed-up), the speed-up and target."""
    return _read(_dir(results_dir) / f"throughput_image_stage_{PROFILE}.json")


# ---------------------------------------------------------------- the scoreboard's control rows
def _n_seeds(n: int) -> str:
    return f"{n} seed{'s' if n != 1 else ''}"


def control_claims(results_dir=None) -> list[tuple[str, str, str]]:
    """(claim, our result, verdict) for the positive control and the neutral plateau; verdicts are
    "holds", "does not hold" or "not measured"."""
    pc = positional_control(results_dir)
    if pc["rows"]:
        result = (f"ordered format, {_n_seeds(len(pc['rows']))}: BS {pc['binding_score']:+.2f}, "
                  f"swap flips {pc['flip_rate']:.1%}, OOD {pc['ood_accuracy']:.1%}")
        verdict = "holds" if pc["reads_positional"] else "does not hold"
    else:
        result, verdict = "no ordered-format results", "not measured"
    rows = [("The interchange measurement reads positional on a model that must bind positionally.",
             result, verdict)]
    direct = [c for c in neutral_curves(results_dir) if c["variant"] in NEUTRAL_VARIANTS]
    if direct:
        longest = max(c["steps"] for c in direct)
        top = [c for c in direct if c["steps"] == longest]
        result = (f"{top[0]['variant']}, {longest:,} steps, {_n_seeds(len(top))}: final two-hop "
                  f"{mean(c['final_two_hop'] for c in top):.1%} (chance {top[0]['chance']:.1%})")
        verdict = "does not hold" if any(c["left_plateau"] for c in top) else "holds"
    else:
        result, verdict = "no curve without deep supervision", "not measured"
    rows.append(("Without a hop-specific aid, two-hop training stays at chance (our claim).", result, verdict))
    return rows



# ---------------------------------------------------------------- the image stage that learns (chapter 4, 9)
IMAGE_STEPS = 4000  # the image-stage budget that meets both targets (chapter 4's lever table)
STARTS = {"": "recipe (RoPE)", "_hopslot_decl100": "shortcut dial p=1, slot target",
          "_learnedpos": "learned positions"}
REGIME_OF_RECIPE = {"replay": "image_text", "noise_replay": "noise_image_text", "replay_sub": "image_text"}
REGIME_ORDER = ("text_only", "text_only_matched", "noise_text", "image_text", "noise_image_text")
RECIPE_REGIME = {**REGIME_OF_RECIPE, "text_matched": "text_only_matched", "noise_text_matched": "noise_text",
                 "text_sub_matched": "text_only_matched"}
SUB_RECIPES = ("replay_sub", "text_sub_matched")  # with the shape -> item query (labelled where shown)
IMAGE_ONLY_RECIPES = ("replay", "replay_sub")  # image stages without noise


def train_id_accuracy(record: dict) -> float | None:
    """ID accuracy on the text a model trains on: for a shortcut-dial model (declared share p) the mix of
    declared-order and shuffled prompts it saw; for every other model the standard, shuffled ID accuracy."""
    if "train_id_accuracy" in record:  # an image-stage run records it
        return record["train_id_accuracy"]
    p = (record.get("train_config") or {}).get("declared_share") or 0.0
    declared = ((record.get("axes") or {}).get("declared") or {}).get("id_accuracy")
    if p and declared is not None and record.get("id_accuracy") is not None:
        return p * declared + (1 - p) * record["id_accuracy"]
    return record.get("id_accuracy")


def load_image_runs(results_dir=None) -> list[dict]:
    """Every image-stage run at the table's budget (``imagestage_*_img4000*.json``)."""
    return io.load_results(f"imagestage_*_img{IMAGE_STEPS}*.json", _dir(results_dir), kind="image_recipe")


def learned_runs(results_dir=None, recipes=None):
    """(run, start, suffix, before) for every image-stage run at the table's budget that met its targets
    (a stage that did not learn is no row) and whose recipe is in ``recipes``: the run's record, the text
    model it continued, that model's name suffix, and its training file."""
    root = _dir(results_dir)
    for r in load_image_runs(results_dir):
        if r["recipe"] not in (recipes or RECIPE_REGIME) or not r.get("meets_targets"):
            continue
        start = Path(r["init_from"]).name
        yield r, start, start_suffix(r), _read(root / f"training_{start}.json") or {}


def headline_rows(results_dir=None) -> list[dict]:
    """Per start and regime, one entry per seed: the text model itself (text_only, from its training file)
    and every run of the learning recipe's budget that continued it (image, noise, compute-matched text).
    A start whose seeds bind differently before images (e.g. the dial: some positional, some symbolic) is
    split into one start per mechanism, so no row averages a positional seed with a symbolic one."""
    root, cells, reads = _dir(results_dir), {}, {}
    for r, start, suffix, before in learned_runs(results_dir):
        dial = bool((r.get("train_config") or {}).get("declared_share"))
        reads.setdefault(suffix, {})[r["seed"]] = mechanism(_interchange(root, start, dial).get("binding_score"))
        cells.setdefault((suffix, "text_only"), {})[r["seed"]] = {
            "id_accuracy": train_id_accuracy(before), "ood_accuracy": before.get("ood_accuracy"),
            "image_id_accuracy": None, "accuracy_by_n": before.get("accuracy_by_n") or {}, "image_positions": None}
        cells.setdefault((suffix, RECIPE_REGIME[r["recipe"]]), {})[r["seed"]] = {
            **{k: r.get(k) for k in ("ood_accuracy", "image_id_accuracy", "accuracy_by_n")},
            "id_accuracy": train_id_accuracy(r), "recipe": r["recipe"],
            "image_positions": image_positions(r) if r.get("image_id_accuracy") is not None else None}
    order, out = list(STARTS), []
    for key in sorted(cells, key=lambda k: (order.index(k[0]) if k[0] in order else len(order), REGIME_ORDER.index(k[1]))):
        suffix, regime = key
        split = len(set(reads[suffix].values())) > 1
        for m in sorted(set(reads[suffix][s] for s in cells[key])) if split else [None]:
            seeds = sorted(s for s in cells[key] if m is None or reads[suffix][s] == m)
            label = STARTS.get(suffix, suffix.lstrip("_")) + (f" ({m} seeds)" if m else "")
            out.append({"start": label, "suffix": suffix, "regime": regime, "seeds": seeds,
                        "runs": [cells[key][s] for s in seeds]})
    return sorted(out, key=lambda h: (order.index(h["suffix"]) if h["suffix"] in order else len(order), h["start"],
                                      REGIME_ORDER.index(h["regime"])))


def _interchange(root: Path, name: str, declared: bool = False) -> dict:
    """The routing numbers and swap flips of checkpoint ``name`` (the controls/ file first: it has rebind pairs).
    With ``declared`` (a shortcut-dial model, whose own text lists associations in declaration order) they are
    read on declared-order prompts, as they are when too few shuffled prompts are answered correctly."""
    rec = _read(root / "controls" / f"interchange_{name}.json") or _read(root / f"interchange_{name}.json")
    if rec is None:
        return {}
    out, swap = routing(rec), rec["position_swap"]
    if (declared or out["binding_score"] is None) and "id_declared" in rec["splits"]:
        out, swap = routing(rec, "id_declared") | {"on": "declared order"}, rec.get("position_swap_declared") or swap
    decl = routing(rec, "id_declared") if "id_declared" in rec["splits"] else {}
    return out | {"flip_rate": swap["flip_rate"], "declared_binding_score": decl.get("binding_score")}


def correction_rows(results_dir=None) -> list[dict]:
    """One row per image run of the learning recipe: its start, seed, and text ID/OOD, BS, rebind and swap
    flips before and after, with the image ID accuracy it reached."""
    root = _dir(results_dir)
    rows = []
    for r, start, suffix, before_train in learned_runs(results_dir, REGIME_OF_RECIPE):
        after_name = Path(r["checkpoint"]).name
        dial = bool((r.get("train_config") or {}).get("declared_share"))  # measured on the text it trains on
        rows.append({"start": start_label(r), "suffix": suffix, "recipe": r["recipe"],
                     "regime": REGIME_OF_RECIPE[r["recipe"]], "seed": r["seed"],
                     "before": {"id_accuracy": train_id_accuracy(before_train),
                                "shuffled_id_accuracy": before_train.get("id_accuracy"),
                                "ood_accuracy": before_train.get("ood_accuracy"), **_interchange(root, start, dial)},
                     "after": {"id_accuracy": train_id_accuracy(r), "shuffled_id_accuracy": r["id_accuracy"],
                               "ood_accuracy": r["ood_accuracy"], **_interchange(root, after_name, dial)},
                     "image_id_accuracy": r["image_id_accuracy"], "meets_targets": r["meets_targets"]})
    order = list(STARTS)
    return sorted(rows, key=lambda x: (x["recipe"] != "replay", order.index(x["suffix"]) if x["suffix"] in order
                                       else len(order), x["seed"]))


def learning_means(results_dir=None) -> dict[str, dict[str, float]]:
    """Mean text OOD accuracy per start and regime of the image stage that learns (chapter 4's table)."""
    out: dict[str, dict[str, float]] = {}
    for h in headline_rows(results_dir):
        out.setdefault(h["start"], {})[h["regime"]] = mean(r["ood_accuracy"] for r in h["runs"])
    return out


def learning_claims(results_dir=None) -> dict[str, tuple[str, str]]:
    """(our result, verdict) of the paper's two image claims, measured with the image stage that learns:
    ``image_ood`` (images lift text OOD above both text rows, by more than 2 points, per start) and
    ``binding`` (a start that reads positional reads symbolic after the image stage)."""
    def verdict(holds: list[bool]) -> str:
        return "reproduced" if all(holds) else "not reproduced" if not any(holds) else "mixed"

    out = {}
    means = {s: m for s, m in learning_means(results_dir).items() if "image_text" in m}
    if means:
        parts, holds = [], []
        for start, m in means.items():
            text = [r for r in ("text_only", "text_only_matched") if r in m]
            holds.append(all(m["image_text"] > m[r] + 0.02 for r in text))
            parts.append(f"{start}: image_text {m['image_text']:.1%} vs " + ", ".join(f"{r} {m[r]:.1%}" for r in text))
        out["image_ood"] = ("; ".join(parts), verdict(holds))
    by: dict[str, list[dict]] = {}
    for r in correction_rows(results_dir):  # grouped by start and by how each seed read before images
        if r["recipe"] in IMAGE_ONLY_RECIPES and None not in (r["before"].get("binding_score"),
                                                              r["after"].get("binding_score")):
            by.setdefault(f"{r['start']} ({mechanism(r['before']['binding_score'])} before)", []).append(r)
    if by:
        result = "; ".join(f"{s}: BS {mean(r['before']['binding_score'] for r in rs):+.2f} -> "
                           f"{mean(r['after']['binding_score'] for r in rs):+.2f} ({_n_seeds(len(rs))})"
                           for s, rs in by.items())
        positional = [r for rs in by.values() for r in rs if r["before"]["binding_score"] < -0.5]
        out["binding"] = (result, verdict([r["after"]["binding_score"] > 0.5 for r in positional]) if positional
                          else "not testable (every start already symbolic)")
    return out
