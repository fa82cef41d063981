"""Tables of the text-model controls and of the image-stage levers.

Chapter 4 shows the image-stage levers (``lever_table``, ``ceiling_table``, ``throughput_table``), chapter 5
the positive control and the rebind measurement (``positive_control_table``, ``rebind_table``,
``learned_positions_controls_table``, ``dial_table``, ``hop_layer_table``), chapter 9 what is still missing
(``missing_table``).  The numbers come from ``bindlib.book.control_data``, which reads the files;
chapter 2's learning curves are in ``bindlib.book.curves``.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from ..core import io
from ..core.evaluate import mean_sd
from . import control_data as D, learning_data as L
from .findings import fixed, mechanism, pct, signed, table as _table

def table(rows: list[dict], index: str | None = None) -> pd.DataFrame:
    """findings.table, which also takes no rows (an empty table, where nothing is measured yet)."""
    return _table(rows, index=index if rows else None)


def _seeds(rows: list[dict]) -> str:
    """'seed 0', 'seeds 0, 1, 2' or 'no seeds'."""
    return (f"seed{'s' if len(rows) > 1 else ''} {', '.join(str(r['seed']) for r in rows)}" if rows else "no seeds")


# ---------------------------------------------------------------- chapter 5: the positive control
def positive_control_table(results_dir=None) -> pd.DataFrame:
    """The ordered-format models, one row per seed (and their mean when there are several): accuracy,
    the routing layer's P_pos, P_sym and binding score, and the position-id swap flip rate."""
    rows = D.arm_rows("_ordered", results_dir)

    def cells(r):
        return {"ID": pct(r["id_accuracy"]), "OOD": pct(r["ood_accuracy"]), "routing layer": r["routing_layer"],
                "P_pos": fixed(r["p_pos"]), "P_sym": fixed(r["p_sym"]), "BS": signed(r["binding_score"]),
                "swap flips": pct(r["flip_rate"]), "reads": mechanism(r["binding_score"])}

    out = [{"seed": str(r["seed"]), **cells(r)} for r in rows]
    if len(rows) > 1:
        m = {k: D.mean(r[k] for r in rows) for k in ("id_accuracy", "ood_accuracy", "p_pos", "p_sym",
                                                     "binding_score", "flip_rate")}
        layers = sorted({r["routing_layer"] for r in rows})
        out.append({"seed": f"mean of {len(rows)}", **cells({**m, "routing_layer": ", ".join(map(str, layers))})})
    return table(out, index="seed")


# ---------------------------------------------------------------- chapter 5: rebind pairs and declared-order prompts
def rebind_table(results_dir=None) -> pd.DataFrame:
    """The recipe's models (RoPE, and learned positions where measured) and the shortcut dial at p = 1 with
    rebind pairs and on declared-order prompts ("decl."): the routing layer, its BS, the rebind outcomes
    there (the bound shape, or the answer stays), and the swap flip rates."""
    out = []
    for suffix, label, ctl in (("", "recipe", True), ("_learnedpos", "learned pos.", True),
                               ("_hopslot_decl100", "dial p=1, slot", False)):
        for r in D.arm_rows(suffix, results_dir, controls=ctl):
            out.append({"model": f"{label} s{r['seed']}", "layer": r["routing_layer"],
                        "BS": signed(r["binding_score"]), "bound shape": pct(r["rebind_shape"]),
                        "stays": pct(r["rebind_stay"]), "swap flips": pct(r["flip_rate"]),
                        "decl. BS": signed(r.get("declared_binding_score")),
                        "decl. bound shape": pct(r.get("declared_rebind_shape")),
                        "decl. swap flips": pct(r.get("declared_flip_rate"))})
    return table(out, index="model")


def learned_positions_controls_table(results_dir=None) -> pd.DataFrame:
    """RoPE against learned absolute positions, per seed: accuracy, BS, swap flips, and ID accuracy
    with every position id moved up by k (the position-shift axis)."""
    rope = {r["seed"]: r for r in D.arm_rows("", results_dir)}
    out = []
    for a in D.arm_rows("_learnedpos", results_dir):
        for label, r in (("RoPE", rope.get(a["seed"])), ("learned", a)):
            if r is None:
                continue
            out.append({"seed": a["seed"], "positions": label, "ID": pct(r["id_accuracy"]),
                        "OOD": pct(r["ood_accuracy"]), "BS": signed(r["binding_score"]),
                        "swap flips": pct(r["flip_rate"]),
                        **{f"shift +{k}": pct(v) for k, v in sorted(r["shift"].items()) if k}})
    return table(out).set_index(["seed", "positions"]) if out else table(out)


# ---------------------------------------------------------------- chapter 4: the image-stage levers
def lever_table(results_dir=None, start: str = "") -> pd.DataFrame:
    """One row per image-stage recipe run from the ``start`` text models: what it does, image ID, text ID
    (on the text the model trains on: declared order for a shortcut-dial model) and OOD, targets met."""
    rows = L.image_levers(results_dir, start)
    return table([{"recipe": f"{r['recipe']} {r['image_steps']} s{r['seed']}"
                   + (f" ({r['image_positions']} positions)" if r["image_positions"] != "sequence" else "")
                   + (" (object tokens)" if r["image_tokens"] == "objects" else ""),
                   "what it does": r["lever"],
                   "image ID": pct(r["image_id_accuracy"]), "text ID": pct(r["id_accuracy"]),
                   "text OOD": pct(r["ood_accuracy"]), "meets both targets": "yes" if r["meets_targets"] else "no"}
                  for r in rows], index="recipe")


def ceiling_table(results_dir=None) -> pd.DataFrame:
    """Per encoder: held-out shape accuracy from pretraining, and what an oracle reading the queried
    object's frozen features gets (its shape, finding the object, the two-hop ceiling)."""
    return table([{"encoder": r["encoder"], "objects on a grid": "yes" if r["grid"] else "no",
                   "held-out shape (pretraining)": pct(r["held_out_shape"]),
                   "oracle: shape of object": pct(r["shape_object"]),
                   "oracle: finds queried object": pct(r["found_queried_object"]),
                   "two-hop ceiling": pct(r["two_hop_ceiling"])} for r in L.encoder_ceiling(results_dir)],
                 index="encoder")


def throughput_table(results_dir=None) -> pd.DataFrame:
    t = L.image_throughput(results_dir)
    if not t:
        return table([])
    cpu = "timing" in t  # earlier files timed wall-clock seconds only
    return table([{"path": r["variant"], "steps per CPU second" if cpu else "steps/s": f"{r['steps_per_second']:.2f}",
                   "speed-up": f"{r['speedup_vs_old']:.2f}x"} for r in t["rows"]], index="path")


def object_token_rows(results_dir=None) -> list[dict]:
    """Each object-token run at the table's budget beside the run that differs only in having every patch
    as a token (same recipe, start, seed and encoder): image ID, text ID and OOD, and BS at the routing layer."""
    root = D._dir(results_dir)
    runs = [(r, L.vision_config(r)) for r in L.load_image_runs(results_dir, tokens=None)]

    def twin_key(r, v):
        return r["recipe"], r.get("encoder"), Path(r["init_from"]).name, r["seed"], v.image_positions

    full = {twin_key(r, v): r for r, v in runs if v.image_tokens == "all"}
    rows = []
    short = [(r, v) for r, v in runs if v.image_tokens == "objects"]
    for r, v in sorted(short, key=lambda rv: (L.start_suffix(rv[0]), rv[0]["seed"])):
        pair = {}
        for tokens, run in (("objects", r), ("all", full.get(twin_key(r, v)))):
            if run is not None:
                pair[tokens] = {"image_id": run["image_id_accuracy"], "text_id": L.train_id_accuracy(run),
                                "ood": run["ood_accuracy"], "meets_targets": bool(run.get("meets_targets")),
                                "binding_score": L.checkpoint_routing(root, Path(run["checkpoint"]).name).get("binding_score")}
        rows.append({"start": L.start_label(r), "recipe": r["recipe"], "seed": r["seed"], **pair})
    return rows


def object_token_table(results_dir=None) -> pd.DataFrame:
    """``object_token_rows`` as chapter 4 shows them: every patch → object tokens, per seed."""
    def cell(row, key, fmt):
        return f"{fmt(row['all'][key]) if 'all' in row else '-'} → {fmt(row['objects'][key])}"

    return table([{"run": f"{r['recipe']} s{r['seed']} ({r['start']} model)",
                   "image ID": cell(r, "image_id", pct), "text ID": cell(r, "text_id", pct),
                   "text OOD": cell(r, "ood", pct), "BS at routing": cell(r, "binding_score", signed),
                   "both targets (object tokens)": "met" if r["objects"]["meets_targets"] else "missed"}
                  for r in object_token_rows(results_dir)], index="run")


# ---------------------------------------------------------------- chapter 9: what is still missing
def missing_table(results_dir=None, seeds_wanted: int = 3) -> pd.DataFrame:
    """The measurements the controls still lack, each with its status computed from the files."""
    root = D._dir(results_dir)
    standard = [r for suffix in ("", "_learnedpos") for r in D.arm_rows(suffix, results_dir)]
    others = [r for r in io.load_results("interchange_text_only_cpu_s*.json", root, kind="interchange")
              if (r.get("variant") or "") not in ("", "_ordered", "_learnedpos")]
    standard += [{"binding_score": D.routing(r)["binding_score"]} for r in others if r.get("format", "standard") == "standard"]
    positional = [r for r in standard if mechanism(r["binding_score"]) == "positional"]
    levers = L.image_levers(results_dir)
    dial = [f"p = {p:g}: {n}" for p, n in sorted(Counter(r["p"] for r in D.dial_rows(results_dir)).items())]
    neutral = D.neutral(results_dir)
    longest = max((c["steps"] for c in neutral if not c["unfinished"]), default=0)
    pc = D.positional_control(results_dir)
    ablation = D.aid_ablation(results_dir)
    rows = [
        ("a standard-format text model that reads positional",
         f"{len(positional)} of {len(standard)} standard-format models measured read positional"),
        ("an image stage that meets both targets (image ID >= 85%, text ID >= 95%)",
         f"{sum(r['meets_targets'] for r in levers)} of {len(levers)} image-stage runs"),
        (f"the shortcut dial (share p of declared-order prompts, 4 values), {seeds_wanted} seeds each",
         f"{len(dial)} of 4 values measured" + (f"; seeds per value: {', '.join(dial)}" if dial else "")),
        (f"{seeds_wanted} seeds of the longest neutral curve",
         f"{sum(c['steps'] == longest and not c['unfinished'] for c in neutral)} of {seeds_wanted} ({longest:,} steps)"
         + "".join(f"; seed {c['seed']} at {c['steps']:,} of {c['budget']:,} (not finished)"
                   for c in neutral if c["unfinished"] and c["budget"] == longest)),
        ("a deeper model (6-8 layers) without aids at the longest budget",
         "; ".join(f"{c['n_layers']} layers, {c['steps']:,}" + (f" of {c['budget']:,} steps (not finished)"
                                                                 if c["unfinished"] else " steps")
                   + f": {'latest' if c['unfinished'] else 'final'} two-hop {pct(c['final_two_hop'])}"
                   for c in D.neutral(results_dir, deeper=True)) or "none committed"),
        (f"{seeds_wanted} seeds of the ordered-format positive control", f"{len(pc['rows'])} of {seeds_wanted}"),
        (f"{seeds_wanted} seeds without deep supervision (hop_weight = 0, stages x8), each with interchange",
         f"{len(D.arm_rows(D.NO_DEEP_SUPERVISION, results_dir))} of {seeds_wanted}"),
        (f"{seeds_wanted} seeds of each aid-ablation variant ({D.ABLATION_BUDGET:,} steps)",
         ", ".join(f"{v} {sum(r['variant'] == v for r in ablation)}" for v in D.ABLATION_VARIANTS)),
    ]
    return table([{"still missing": a, "status (from data/results)": b} for a, b in rows], index="still missing")


def _dial_by_p(results_dir=None) -> dict[str, list[dict]]:
    """The dial's rows by share p ("0.50"); a share whose seeds read differently on declared-order prompts
    is split by that reading ("1.00 (positional)"), so no row averages the two kinds of model."""
    by: dict[float, list[dict]] = {}
    for r in D.dial_rows(results_dir):
        by.setdefault(r["p"], []).append(r)
    return {f"{p:.2f}" + (f" ({read})" if read else ""): group for p, rs in sorted(by.items())
            for read, group in D.split_by_reading(rs, lambda r: r.get("declared_binding_score"))}


def dial_table(results_dir=None) -> pd.DataFrame:
    """The shortcut dial, one column per declared share p (means over the seeds measured; narrow, so it fits the
    text column): ID on declared-order and on shuffled prompts, shuffled OOD, and the routing layer's BS and
    swap flips on each kind of prompt."""
    out = []
    for p, rs in _dial_by_p(results_dir).items():
        def m(key):
            return D.mean(r.get(key) for r in rs)
        out.append({"p": p, "seeds": ", ".join(str(r["seed"]) for r in rs),
                    "ID declared": pct(m("declared_id_accuracy")), "ID shuffled": pct(m("id_accuracy")),
                    "OOD shuffled": pct(m("ood_accuracy")), "BS shuffled": signed(m("binding_score")),
                    "swap flips shuffled": pct(m("flip_rate")), "BS declared": signed(m("declared_binding_score")),
                    "swap flips declared": pct(m("declared_flip_rate")),
                    "rebind stays (declared)": pct(m("declared_rebind_stay"))})
    return table(out, index="p").T if out else table(out)


# ---------------------------------------------------------------- chapter 5: where the routing layer goes
def hop_layer_table(results_dir=None) -> pd.DataFrame:
    """The recipe (deep supervision on block 1's output) beside the same recipe supervising block 2
    (``_hopl2``), one row per seed: the supervised block, the routing layer the instrument finds, its BS,
    the rebind pairs' bound-shape share there, and accuracy."""
    out = []
    for suffix, ctl, hop in (("", True, 1), ("_hopl2", False, 2)):
        for r in D.arm_rows(suffix, results_dir, controls=ctl):
            out.append({"model": f"{'recipe' if not suffix else suffix[1:]} s{r['seed']}",
                        "deep supervision reads": f"block {hop} output", "routing layer": r["routing_layer"],
                        "BS": signed(r["binding_score"]), "rebind: bound shape": pct(r["rebind_shape"]),
                        "ID": pct(r["id_accuracy"]), "OOD": pct(r["ood_accuracy"])})
    return table(out, index="model")
