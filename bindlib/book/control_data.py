"""The recipe's controls, read from their results files as plain numbers (no formatting).

    arm_rows("_ordered")          one row per seed of the ordered-format positive control
    arm_rows("", controls=True)   the recipe's models, measured with rebind pairs and declared-order prompts
    unfinished()                  runs still going, as ``python -m bindlib progress`` recorded them
    neutral_curves()              the learning curves of recipe variants (``python -m bindlib curve``)
    neutral()                     those of the variants without a hop-specific aid
    aid_ablation()                the recipe against its variants without an aid, at one step budget
    dial_rows()                   the shortcut dial, one row per share p and seed
    control_claims()              the scoreboard's control rows (``bindlib.book.findings.scoreboard``)

Every reader globs what exists, so a seed added later shows up without a code change.
``results_dir`` is the results folder (default data/results); the rebind measurements live in its
``controls/`` sub-folder.  The tables and charts built on these are in ``bindlib.book.controls``; the
image stage's readers are in ``bindlib.book.learning_data``.
"""
from __future__ import annotations

import math
import re
import statistics
from pathlib import Path

from .. import io
from ..evaluate import steps_to_reach
from ..task import TaskConfig

PROFILE = "cpu"
PLATEAU_MARGIN = 0.10  # a curve whose final two-hop accuracy is within this of chance has not left the plateau
NEUTRAL_VARIANTS = ("direct",)  # curve variants with no hop-specific aid: no sub-skill queries, no deep supervision
ABLATION_VARIANTS = ("recipe", "no_deep_supervision", "direct")  # the aid ablation, most aids first
ABLATION_BUDGET = 5000  # steps: the cpu recipe's whole budget, at which every variant is compared
# The hop_weight = 0 arm: the recipe without deep supervision, every stage 8x as long (book.no_deep_supervision)
NO_DEEP_SUPERVISION = "_steps8x_hopw0"


def _dir(results_dir) -> Path:
    return Path(results_dir) if results_dir else io.RESULTS_DIR


def _read(path: Path) -> dict | None:
    return io.read_results(path) if path.exists() else None


def mean(values) -> float:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.mean(vals) if vals else float("nan")


def mechanism(bs) -> str:
    """A binding score read as a mechanism: above +0.5 symbolic, below -0.5 positional, else mixed."""
    if bs is None or not math.isfinite(bs):
        return "not measured"
    return "symbolic" if bs > 0.5 else "positional" if bs < -0.5 else "mixed"


def split_by_reading(rows: list[dict], bs) -> list[tuple[str | None, list[dict]]]:
    """``rows`` as [(None, rows)] when ``bs(row)`` reads as one mechanism for all of them, else one
    (mechanism, rows) group per reading, so no mean mixes a positional model with a symbolic one."""
    reads = sorted({mechanism(bs(r)) for r in rows})
    if len(reads) < 2:
        return [(None, rows)]
    return [(m, [r for r in rows if mechanism(bs(r)) == m]) for m in reads]


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


def recipe_rows(results_dir=None) -> list[dict]:
    """The recipe's models as ``arm_rows`` reads them, from their rebind measurement (``controls/``) where it
    exists, else from the standard interchange files."""
    return arm_rows("", results_dir, controls=True) or arm_rows("", results_dir)


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


def curve_rows(history: list[dict], window: int = 1000) -> list[dict]:
    """A curve pre-aggregated for a chart: per skill, the mean accuracy over windows of ``window`` steps,
    placed at the window's last step."""
    bins: dict[tuple, list] = {}
    for h in history:
        end = math.ceil(h["step"] / window) * window
        for skill in CURVE_SKILLS:
            if h.get(f"acc_{skill}") is not None:
                bins.setdefault((skill, end), []).append(h[f"acc_{skill}"])
    return [{"skill": skill, "step": end, "accuracy": round(mean(v), 4)} for (skill, end), v in sorted(bins.items())]


def unfinished(prefix: str = "", results_dir=None) -> list[tuple[str, dict]]:
    """(name of the results file to come, record) of each run on record with ``python -m bindlib progress``
    (``progress_<name>.json``) whose own results file is not committed yet, for names starting ``prefix``."""
    root = _dir(results_dir)
    out = []
    for f in io.results_files(f"progress_{prefix}*.json", root):
        r = io.read_results(f)
        if r.get("kind") == "training_progress" and r.get("history") and not (root / f"{r['of']}.json").exists():
            out.append((r["of"], r))
    return out


def neutral_curves(results_dir=None) -> list[dict]:
    """Every committed learning curve (``curve_*.json``), and every curve run still going (its progress
    record; ``unfinished`` True): variant, seed, steps, its budget (the steps its stages add up to), its depth
    where it is not the profile's (``curve --n-layers``; None otherwise), final and best two-hop ID accuracy,
    chance, whether it left the plateau, and its history."""
    out = []
    files = [(f.stem, io.read_results(f)) for f in io.results_files("curve_*.json", _dir(results_dir))]
    for name, r in files + unfinished("curve_", results_dir):
        if r.get("kind") not in ("learning_curve", "training_progress") or not r.get("history"):
            continue
        h = r["history"]
        c = chance(TaskConfig(**(r.get("train_config", {}).get("task") or {})))
        final = h[-1]["acc_two_hop"]
        cfg = r.get("train_config", {})
        out.append({"name": name, "variant": r.get("variant"), "seed": r["seed"], "steps": h[-1]["step"],
                    "unfinished": r["kind"] == "training_progress",
                    "lost": r["kind"] == "training_progress" and r.get("run_dir") is None,  # from its log: no resume
                    "budget": sum(s.get("steps", 0) for s in cfg.get("stages", [])), "n_stages": len(cfg.get("stages", [])),
                    "n_layers": (cfg.get("model") or {}).get("n_layers"),
                    "final_two_hop": final, "best_two_hop": max(x["acc_two_hop"] for x in h),
                    "final_subskills": {k: h[-1].get(f"acc_{k}") for k in CURVE_SKILLS[1:]},
                    "chance": c, "left_plateau": final > c + PLATEAU_MARGIN,
                    "hop_weight": max((s.get("hop_weight", 0.0) for s in r["train_config"]["stages"]), default=0.0),
                    "wall_seconds": r.get("provenance", {}).get("wall_seconds"), "history": h})
    return sorted(out, key=lambda c: (-c["steps"], c["variant"] or "", c["seed"]))


def neutral(results_dir=None, deeper: bool = False) -> list[dict]:
    """The ``neutral_curves`` of the variants without any hop-specific aid (``NEUTRAL_VARIANTS``), of the
    profile's model (``deeper``: of the deeper models instead)."""
    return [c for c in neutral_curves(results_dir)
            if c["variant"] in NEUTRAL_VARIANTS and (c["n_layers"] is not None) == deeper]


def _ablation_row(name: str, variant: str, seed: int, history: list[dict], guess: float, budget: int) -> dict:
    h = [x for x in history if x["step"] <= budget]
    end = h[-1]
    return {"name": name, "variant": variant, "seed": seed, "steps": end["step"],
            "stopped_early": end.get("stopped") == "early_stop", "two_hop": end["acc_two_hop"],
            "best_two_hop": max(x["acc_two_hop"] for x in h), "steps_to_99": steps_to_reach(h),
            **{k: end.get(f"acc_{k}") for k in CURVE_SKILLS[1:]},
            **{f"best_{k}": max((x.get(f"acc_{k}") or 0.0) for x in h) for k in CURVE_SKILLS[1:]},
            "chance": guess, "history": h}


def aid_ablation(results_dir=None, budget: int = ABLATION_BUDGET) -> list[dict]:
    """The recipe against its variants at one step budget: one row per (variant, seed), read at ``budget``
    steps or where the run stopped. The recipe's rows are its own training runs
    (``training_text_only_cpu_s<seed>.json``, which stop early once two-hop ID reaches 99%); the other
    variants' are their curve files (``curve_<variant>*_s<seed>.json``, whole budget, no early stop), the
    longest per seed where several exist."""
    root, rows = _dir(results_dir), {}
    for f in io.results_files(f"training_text_only_{PROFILE}_s*.json", root):
        if re.fullmatch(rf"training_text_only_{PROFILE}_s\d+", f.stem):
            rec = io.read_results(f)
            if rec.get("history"):
                guess = chance(TaskConfig(**(rec.get("train_config", {}).get("task") or {})))
                rows[("recipe", rec["seed"])] = _ablation_row(f.stem, "recipe", rec["seed"], rec["history"], guess, budget)
    for c in neutral_curves(results_dir):  # sorted longest first, so the first file per seed wins
        if c["n_layers"] is not None or (c["n_stages"] > 1 and c["budget"] != budget):
            continue  # another model, or a curriculum stretched to another budget (one constant-lr stage reads alike)
        if c["variant"] in ABLATION_VARIANTS and c["variant"] != "recipe" and (c["variant"], c["seed"]) not in rows:
            rows[(c["variant"], c["seed"])] = _ablation_row(c["name"], c["variant"], c["seed"], c["history"],
                                                            c["chance"], budget)
    return sorted(rows.values(), key=lambda r: (ABLATION_VARIANTS.index(r["variant"]), r["seed"]))


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
    direct = neutral(results_dir)
    if direct:
        longest = max(c["steps"] for c in direct)
        top = [c for c in direct if c["steps"] == longest]
        result = (f"{top[0]['variant']}, {longest:,} steps, {_n_seeds(len(top))}: final two-hop "
                  f"{mean(c['final_two_hop'] for c in top):.1%} (chance {top[0]['chance']:.1%})")
        verdict = "does not hold" if any(c["left_plateau"] for c in top) else "holds"
    else:
        result, verdict = "no curve without deep supervision", "not measured"
    rows.append(("Without a hop-specific aid, two-hop training stays at chance (our claim).", result, verdict))
    arm = arm_rows(NO_DEEP_SUPERVISION, results_dir)
    if arm:
        reads = [mechanism(r["binding_score"]) for r in arm]
        result = (f"no deep supervision (stages x8), {_n_seeds(len(arm))}: BS "
                  + ", ".join(f"{r['binding_score']:+.2f}" for r in arm) + f", ID {mean(r['id_accuracy'] for r in arm):.1%}")
        verdict = "holds" if set(reads) == {"symbolic"} else "does not hold"
    else:
        result, verdict = "no model trained without deep supervision measured", "not measured"
    rows.append(("Our text models read symbolic because of the task, not because deep supervision writes the "
                 "shape into the routing layer (our claim).", result, verdict))
    return rows
