"""Reading the interpretability results files back (``interp/runs.py`` writes them), for the chapters."""
from __future__ import annotations

from ..core import io
from ..core.evaluate import mean_sd
from ..core.profiles import IMAGE_REGIMES, MAIN_ENCODER, regime_order


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
