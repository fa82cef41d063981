"""The image stage that learns (chapter 4, 9), read from its results files as plain numbers (no formatting).

    image_levers()       the image-stage recipes (``python -m bindlib image-stage``), one row per run
    headline_rows()      chapter 4's learning table: per start and regime, the runs of the learning budget
    correction_rows()    the correction test: each image run's text binding before and after, beside its
                         compute-matched text run
    learning_claims()    the scoreboard's two image claims, seed by seed

Like ``control_data`` (whose helpers it uses), every reader globs what exists, so a seed added later shows
up without a code change.  The tables and sentences built on these are in ``bindlib.book.correction``.
"""
from __future__ import annotations

from pathlib import Path

from .. import io
from ..model import typed
from ..vision.multimodal import VisionConfig
from .control_data import PROFILE, _dir, _n_seeds, _read, mean, mechanism, routing


# ---------------------------------------------------------------- the image stage
def _lever(stages: list[dict]) -> str:
    """What an image recipe does, from its stages: steps, image share, grounding, warm-up, lr scale."""
    parts = []
    for s in stages:
        noise = f", noise in {float(s['noise']):.0%} of text steps" if s.get("noise") else ""
        if s["name"] == "mix":
            parts.append(f"mix {s['steps']} ({s['image']:.0%} image{noise})")
            continue
        what = f"{s['name'].replace('_', ' ')} {s['steps']} ({s['image']:.0%} image"
        what += f", grounding {s.get('grounding', 0):g}" + (", LM frozen" if s.get("freeze") == "lm" else "")
        what += f", lr x{s['lr_scale']:g}" if s.get("lr_scale", 1.0) != 1.0 else ""
        what += ", + shape -> item" if (s.get("mix") or {}).get("shape_to_item") else ""
        parts.append(what + noise + ")")
    return " -> ".join(parts)


def start_suffix(record: dict) -> str:
    """Which text model an image-stage run continued, as its name's suffix ("" the recipe's, "_learnedpos", ...)."""
    name = Path(record.get("init_from") or f"text_only_{PROFILE}_s{record['seed']}").name
    return name[len(f"text_only_{PROFILE}_s{record['seed']}"):]


def vision_config(record: dict) -> VisionConfig:
    """The vision settings a run trained with (how it numbered image and noise tokens, which patches were
    tokens, ...), each at VisionConfig's default where the record predates it."""
    return typed(VisionConfig, (record.get("train_config") or {}).get("vision") or {})


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
        t, v = r.get("targets") or {"image_id_accuracy": 0.85, "id_accuracy": 0.95}, vision_config(r)
        rows.append({"recipe": r["recipe"], "seed": r["seed"], "encoder": r["encoder"],
                     "lever": _lever(r["train_config"]["stages"]),
                     "image_steps": sum(s["steps"] for s in r["train_config"]["stages"] if s["name"] != "mix"),
                     "image_id_accuracy": r["image_id_accuracy"],
                     "id_accuracy": train_id_accuracy(r), "ood_accuracy": r["ood_accuracy"], "targets": t,
                     "meets_targets": r["image_id_accuracy"] >= t["image_id_accuracy"]
                     and train_id_accuracy(r) >= t["id_accuracy"], "init_from": r.get("init_from"),
                     "image_positions": v.image_positions, "image_tokens": v.image_tokens})
    return sorted(rows, key=lambda x: (x["encoder"], x["recipe"], x["image_positions"], x["image_tokens"],
                                       x["image_steps"], x["seed"]))


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


def headline_image_positions(record: dict) -> str:
    """Where the headline numbers a run's image tokens: at the text context's positions from a learned-position
    start (chapter 4 says why), at sequence positions from a RoPE start."""
    pos = ((record.get("train_config") or {}).get("model") or {}).get("pos_encoding", "rope")
    return "sequence" if pos == "rope" else "context"


def load_image_runs(results_dir=None, tokens: str | None = "all", noise: str | None = "sequence",
                    positions: str | None = "headline", any_noise_width: bool = False) -> list[dict]:
    """Every image-stage run at the table's budget (``imagestage_*_img4000*.json``) whose image prompts had
    ``tokens``, whose noised text took ``noise`` positions and whose image tokens took ``positions``. The defaults
    are the headline's runs (every patch a token, noise at sequence positions, image tokens numbered as the
    start's encoding needs, noise as wide as the image block); "objects" the fast path's, "context" the
    learned-position noise follow-up's; None takes either. The noise-width sweep's runs come with
    ``any_noise_width``."""
    runs = io.load_results(f"imagestage_*_img{IMAGE_STEPS}*.json", _dir(results_dir), kind="image_recipe")
    vision = [vision_config(r) for r in runs]
    return [r for r, v in zip(runs, vision) if (tokens is None or v.image_tokens == tokens)
            and (noise is None or v.noise_positions == noise) and (any_noise_width or v.noise_width is None)
            and (positions is None or r.get("image_id_accuracy") is None
                 or v.image_positions == (headline_image_positions(r) if positions == "headline" else positions))]


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
        reads.setdefault(suffix, {})[r["seed"]] = mechanism(checkpoint_routing(root, start, dial).get("binding_score"))
        cells.setdefault((suffix, "text_only"), {})[r["seed"]] = {
            "id_accuracy": train_id_accuracy(before), "ood_accuracy": before.get("ood_accuracy"),
            "image_id_accuracy": None, "accuracy_by_n": before.get("accuracy_by_n") or {}, "image_positions": None}
        cells.setdefault((suffix, RECIPE_REGIME[r["recipe"]]), {})[r["seed"]] = {
            **{k: r.get(k) for k in ("ood_accuracy", "image_id_accuracy", "accuracy_by_n")},
            "id_accuracy": train_id_accuracy(r), "recipe": r["recipe"],
            "image_positions": vision_config(r).image_positions if r.get("image_id_accuracy") is not None else None}
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


def checkpoint_routing(root: Path, name: str, declared: bool = False) -> dict:
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


CONTROL_OF = {"replay": "text_matched", "replay_sub": "text_sub_matched", "noise_replay": "noise_text_matched"}


def correction_rows(results_dir=None) -> list[dict]:
    """One row per image run of the learning recipe: its start, seed, and text ID/OOD, BS, rebind and swap
    flips before and after, with the image ID accuracy it reached, and ``control``: the same numbers after
    its compute-matched text run from the same start (``CONTROL_OF``), or None where there is none."""
    root = _dir(results_dir)
    controls = {(r["recipe"], Path(r["init_from"]).name): r for r, *_ in learned_runs(results_dir, CONTROL_OF.values())}
    rows = []
    for r, start, suffix, before_train in learned_runs(results_dir, REGIME_OF_RECIPE):
        dial = bool((r.get("train_config") or {}).get("declared_share"))  # measured on the text it trains on

        def after(run):
            return {"id_accuracy": train_id_accuracy(run), "shuffled_id_accuracy": run["id_accuracy"],
                    "ood_accuracy": run["ood_accuracy"], **checkpoint_routing(root, Path(run["checkpoint"]).name, dial)}

        ctrl = controls.get((CONTROL_OF[r["recipe"]], start))
        rows.append({"start": start_label(r), "suffix": suffix, "recipe": r["recipe"],
                     "regime": REGIME_OF_RECIPE[r["recipe"]], "seed": r["seed"],
                     "before": {"id_accuracy": train_id_accuracy(before_train),
                                "shuffled_id_accuracy": before_train.get("id_accuracy"),
                                "ood_accuracy": before_train.get("ood_accuracy"), **checkpoint_routing(root, start, dial)},
                     "after": after(r), "control": after(ctrl) if ctrl else None,
                     "image_id_accuracy": r["image_id_accuracy"], "meets_targets": r["meets_targets"]})
    order = list(STARTS)
    return sorted(rows, key=lambda x: (x["recipe"] != "replay", order.index(x["suffix"]) if x["suffix"] in order
                                       else len(order), x["seed"]))


def learning_means(results_dir=None, by_seed=None) -> dict[str, dict[str, float]]:
    """Mean text OOD accuracy per start and regime of the image stage that learns (chapter 4's table), from
    ``by_seed`` where the caller already has ``ood_by_seed``."""
    by_seed = ood_by_seed(results_dir) if by_seed is None else by_seed
    return {start: {g: mean(v.values()) for g, v in m.items()} for start, m in by_seed.items()}


def ood_by_seed(results_dir=None) -> dict[str, dict[str, dict[int, float]]]:
    """Text OOD accuracy per start (as ``headline_rows`` labels it), regime and seed."""
    out: dict[str, dict[str, dict[int, float]]] = {}
    for h in headline_rows(results_dir):
        out.setdefault(h["start"], {})[h["regime"]] = {s: r["ood_accuracy"] for s, r in zip(h["seeds"], h["runs"])}
    return out


def above(m: dict[str, dict[int, float]], regime: str = "image_text",
          than: tuple[str, ...] = ("text_only", "text_only_matched")) -> list[bool]:
    """Per seed of ``regime`` in one start: is its text OOD above the same seed's run of every regime in
    ``than`` that exists, by more than 2 points (the scoreboard's margin)?"""
    ref = [g for g in than if g in m]
    return [all(ood > m[g][s] + 0.02 for g in ref if s in m[g]) for s, ood in m[regime].items()]


def _positional_outcomes(rows: list[dict]) -> dict[str, int]:
    """Of correction rows (image runs without noise): the positional starts (BS < -0.5 before, BS measured after),
    how many have a measured text control, and of those how many stay positional-or-mixed after images, turn
    symbolic with their control, or turn alone."""
    positional = [r for r in rows if r["recipe"] in IMAGE_ONLY_RECIPES and r["after"].get("binding_score") is not None
                  and (r["before"].get("binding_score") or 0) < -0.5]
    tested = [r for r in positional if (r["control"] or {}).get("binding_score") is not None]
    turned = [r for r in tested if r["after"]["binding_score"] > 0.5]
    return {"positional": len(positional), "n": len(tested), "stayed": len(tested) - len(turned),
            "with_control": sum(r["control"]["binding_score"] > 0.5 for r in turned),
            "images_alone": sum(r["control"]["binding_score"] <= 0.5 for r in turned)}


def positional_starts(results_dir=None) -> dict[str, int]:
    """The correction test's positional starts that have a measured text control (``_positional_outcomes``)."""
    return _positional_outcomes(correction_rows(results_dir))


def learning_claims(results_dir=None) -> dict[str, tuple[str, str]]:
    """(our result, verdict) of the paper's claims measured with the image stage that learns, seed by seed
    against the same seed's other rows: ``image_ood`` (image_text's text OOD above both text_only and the
    compute-matched text run, by more than 2 points), ``noise_text`` (noised text above the same two),
    ``noise_images`` (images with noise above images without), each only where that regime ran, and
    ``binding`` (a seed that reads positional before reads symbolic after images, while its compute-matched
    text run, where there is one, does not)."""
    def verdict(holds: list[bool]) -> str:
        return "reproduced" if all(holds) else "not reproduced" if not any(holds) else "mixed"

    out, by_seed = {}, ood_by_seed(results_dir)
    for key, regime, than in (("image_ood", "image_text", ("text_only", "text_only_matched")),
                              ("noise_text", "noise_text", ("text_only", "text_only_matched")),
                              ("noise_images", "noise_image_text", ("image_text",))):
        parts, holds = [], []
        for start, m in by_seed.items():
            if regime not in m:
                continue
            seed_holds = above(m, regime, than)
            holds += seed_holds
            parts.append(f"{start}: {regime} {mean(m[regime].values()):.1%} vs "
                         + ", ".join(f"{g} {mean(m[g].values()):.1%}" for g in than if g in m)
                         + f" (higher in {sum(seed_holds)} of {_n_seeds(len(seed_holds))})")
        if parts:
            out[key] = ("; ".join(parts), verdict(holds))
    by: dict[str, list[dict]] = {}
    for r in correction_rows(results_dir):  # grouped by start and by how each seed read before images
        if r["recipe"] in IMAGE_ONLY_RECIPES and None not in (r["before"].get("binding_score"),
                                                              r["after"].get("binding_score")):
            by.setdefault(f"{r['start']} ({mechanism(r['before']['binding_score'])} before)", []).append(r)
    if by:
        def ctrl(rs):
            bs = [r["control"]["binding_score"] for r in rs if (r["control"] or {}).get("binding_score") is not None]
            return f", text control {mean(bs):+.2f}" if bs else ""

        result = "; ".join(f"{s}: BS {mean(r['before']['binding_score'] for r in rs):+.2f} -> "
                           f"{mean(r['after']['binding_score'] for r in rs):+.2f}{ctrl(rs)} ({_n_seeds(len(rs))})"
                           for s, rs in by.items())
        p = _positional_outcomes([r for rs in by.values() for r in rs])
        if p["n"] < p["positional"]:  # a shift without its text control cannot be put down to the images
            result += f"; {p['positional'] - p['n']} positional seed(s) without a measured text control left out"
        moved = [True] * p["images_alone"] + [False] * (p["n"] - p["images_alone"])
        out["binding"] = (result, verdict(moved) if p["n"] else "not testable (no positional start with a text control)"
                          if p["positional"] else "not testable (every start already symbolic)")
    return out
