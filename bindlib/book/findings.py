"""What the results files say, as tables and plain sentences for the chapters.

Every function reads committed results files (``data/results``) through ``bindlib``'s loaders and
returns a pandas table or a sentence; the chapters call one of them per cell, so the logic that turns
numbers into a finding lives here, where it is tested, and not in notebook cells.

Verdict words used throughout: "reproduced", "not reproduced", "partly", "not measured".
"""
from __future__ import annotations

import math
import statistics
import textwrap

import pandas as pd

from .. import io, paper

WIDTH = 90  # printed text wraps here, so no output line runs past a page's column


# ---------------------------------------------------------------- formatting
def wrap(text: str, width: int = WIDTH) -> str:
    """Wrap every line of ``text`` at ``width`` columns; continuation lines keep the line's indent plus two."""
    out = []
    for line in text.splitlines() or [""]:
        indent = " " * (len(line) - len(line.lstrip(" ")) + 2)
        out.append(textwrap.fill(line, width, subsequent_indent=indent, break_on_hyphens=False,
                                 drop_whitespace=True) if len(line) > width else line)
    return "\n".join(out)


def say(*paragraphs: str, width: int = WIDTH) -> None:
    """Print each paragraph wrapped at ``width`` columns (continuation lines indented)."""
    for text in paragraphs:
        print(wrap(text, width))


def pct(x, digits: int = 1) -> str:
    """0.372 -> '37.2%'; None or NaN -> '-'."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.{digits}%}"


def signed(x, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:+.{digits}f}"


def table(rows: list[dict], index: str | None = None) -> pd.DataFrame:
    """A DataFrame of already formatted rows (shown as an HTML table; its text form is what nbval compares)."""
    df = pd.DataFrame(rows)
    return df.set_index(index) if index else df


def _mean(values) -> float:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.mean(vals) if vals else float("nan")


def _mean_sd(values) -> tuple[float, float]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return float("nan"), float("nan")
    return statistics.mean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


# ---------------------------------------------------------------- chapter 2: text-only training
def text_only_runs(profile: str = "cpu", results_dir=None) -> list[dict]:
    """The committed text-only training records of a profile, by seed (ablations have their own kind)."""
    runs = io.load_results("training_text_only_*.json", results_dir, kind="training", regime="text_only")
    return sorted((r for r in runs if profile is None or r["profile"] == profile), key=lambda r: r["seed"])


def training_table(runs: list[dict]) -> pd.DataFrame:
    """One row per run: accuracy in and out of distribution, steps, wall time, device."""
    return table([{"seed": r["seed"], "profile": r["profile"], "ID": pct(r["id_accuracy"]),
                   "OOD": pct(r["ood_accuracy"]), "steps": r["steps"], "steps to 99%": r["steps_to_99"],
                   "wall (min)": f"{r['provenance']['wall_seconds'] / 60:.1f}", "device": r["provenance"]["device"]}
                  for r in runs], index="seed")


def cliff(runs: list[dict]) -> dict:
    """Our text-only means beside the paper's, and whether the OOD cliff is there.

    The cliff is reproduced when our OOD mean is within 10 points of the paper's 37.2% and not
    reproduced when it is more than 20 points above it (between the two: partly).
    """
    (id_m, id_s), (ood_m, ood_s) = (_mean_sd([r["id_accuracy"] for r in runs]),
                                    _mean_sd([r["ood_accuracy"] for r in runs]))
    theirs = paper.paper_value("text_only")
    gap = ood_m - theirs
    verdict = ("not measured" if not math.isfinite(gap) else "reproduced" if abs(gap) <= 0.10
               else "not reproduced" if gap > 0.20 else "partly")
    return {"seeds": len(runs), "id": id_m, "id_sd": id_s, "ood": ood_m, "ood_sd": ood_s,
            "paper_id": paper.TEXT_ONLY_ID_ACCURACY["value"], "paper_ood": theirs, "gap": gap, "verdict": verdict}


def cliff_table(runs: list[dict]) -> pd.DataFrame:
    c = cliff(runs)
    return table([{"accuracy": "in distribution (N 2..8)", "ours": f"{pct(c['id'])} ± {pct(c['id_sd'])}",
                   "paper": f"about {pct(c['paper_id'], 0)}"},
                  {"accuracy": "out of distribution (N 9..16)", "ours": f"{pct(c['ood'])} ± {pct(c['ood_sd'])}",
                   "paper": pct(c["paper_ood"])}], index="accuracy")


def cliff_sentence(runs: list[dict]) -> str:
    c = cliff(runs)
    if c["verdict"] == "not measured":
        return "No text-only training results in data/results yet."
    if c["verdict"] == "reproduced":
        return (f"Our text-only models fall off an OOD cliff like the paper's: {pct(c['ood'])} out of distribution "
                f"against the paper's {pct(c['paper_ood'])}.")
    return (f"The OOD cliff is {c['verdict']}: over {c['seeds']} seeds our text-only models answer "
            f"{pct(c['ood'])} of OOD prompts, {c['gap'] * 100:+.1f} points from the paper's {pct(c['paper_ood'])}, "
            f"while in distribution they answer {pct(c['id'])}.")


def axes_table(runs: list[dict]) -> pd.DataFrame:
    """Accuracy on each diagnostic axis (association order, offset), ID and OOD means, per seed."""
    rows = []
    for r in runs:
        for axis, acc in r.get("axes", {}).items():
            rows.append({"seed": r["seed"], "axis": axis, "ID": pct(acc["id_accuracy"]), "OOD": pct(acc["ood_accuracy"])})
    df = table(rows)
    return df.pivot(index="axis", columns="seed", values=["ID", "OOD"]) if rows else df


def slot_table(runs: list[dict]) -> pd.DataFrame:
    """ID accuracy by the queried object's declaration slot, one row per seed."""
    slots = sorted({int(s) for r in runs for s in r["accuracy_by_slot"]})
    return table([{"seed": r["seed"], **{f"slot {s + 1}": pct(r["accuracy_by_slot"].get(str(s)), 0) for s in slots}}
                  for r in runs], index="seed")


def stage_starts(runs: list[dict]) -> pd.DataFrame:
    """The step of each run's first evaluation in every curriculum stage."""
    rows = []
    for r in runs:
        starts = {}
        for h in r["history"]:
            starts.setdefault(h["stage"], h["step"])
        rows.append({"seed": r["seed"], **starts})
    return table(rows, index="seed")


def learned_positions_table(results_dir=None) -> pd.DataFrame:
    """The positional-encoding ablation (learned absolute positions) beside RoPE, per seed, by N out of distribution."""
    ablation = io.load_results("training_text_only_cpu_s*_learnedpos.json", results_dir, kind="training_variant")
    rope = {r["seed"]: r for r in text_only_runs("cpu", results_dir)}
    rows = []
    for a in ablation:
        for label, r in (("RoPE", rope.get(a["seed"])), ("learned positions", a)):
            if r is not None:
                rows.append({"seed": a["seed"], "positions": label, "ID": pct(r["id_accuracy"]),
                             "OOD": pct(r["ood_accuracy"]),
                             **{f"N={n}": pct(r["accuracy_by_n"][str(n)], 0) for n in range(9, 17, 2)}})
    return table(rows).set_index(['seed', 'positions'])


# ---------------------------------------------------------------- chapter 4: regimes
def regime_table(profile: str = "cpu", results_dir=None) -> pd.DataFrame:
    """The headline table: text OOD accuracy per regime (mean ± sd over seeds, main encoder) beside the paper's."""
    from ..regimes import headline_table, regime_results

    records = regime_results(profile, results_dir)
    ood, ids = headline_table(records), {r["regime"]: r for r in headline_table(records, metric="id_accuracy")}
    return table([{"regime": r["regime"], "seeds": r["seeds"], "ours: OOD": f"{pct(r['mean'])} ± {pct(r['sd'])}",
                   "paper: OOD": pct(r["paper"]), "ours: ID": pct(ids[r["regime"]]["mean"])} for r in ood],
                 index="regime")


def regime_means(profile: str = "cpu", results_dir=None) -> dict[str, float]:
    """Mean text OOD accuracy per regime (main encoder); text_only also falls back on the training files."""
    from ..regimes import headline_table, regime_results

    means = {r["regime"]: r["mean"] for r in headline_table(regime_results(profile, results_dir))}
    if "text_only" not in means:
        runs = text_only_runs(profile, results_dir)
        if runs:
            means["text_only"] = _mean([r["ood_accuracy"] for r in runs])
    return means


# ---------------------------------------------------------------- chapter 5: binding direction
def binding_scores(profile: str = "cpu", results_dir=None) -> dict[str, dict]:
    """Per regime: the routing-layer binding score of the seeds with a measurable one (interchange files)."""
    from ..interp_runs import load_interp, routing_table, usable

    records, _ = usable(load_interp("interchange", profile, results_dir), results_dir=results_dir)
    return {row["regime"]: row for row in routing_table(records)}


def binding_table(profile: str = "cpu", results_dir=None) -> pd.DataFrame:
    rows = []
    for regime, row in binding_scores(profile, results_dir).items():
        rows.append({"regime": regime, "seeds measured": ", ".join(map(str, row["seeds"])) or "none",
                     "binding score": signed(row["binding_score"]),
                     "position-swap flips": pct(row["flip_rate"]), "answer stays": pct(row["stay_rate"]),
                     "mechanism": mechanism(row["binding_score"])})
    return table(rows, index="regime")


ADVERB = {"symbolic": "symbolically", "positional": "positionally", "mixed": "in a mixed way"}


def mechanism(bs) -> str:
    if bs is None or not math.isfinite(bs):
        return "not measured"
    return "symbolic" if bs > 0.5 else "positional" if bs < -0.5 else "mixed"


def direction_sentence(profile: str = "cpu", results_dir=None) -> str:
    """The paper's direction (text-only positional, image-trained symbolic) against ours, in one sentence."""
    scores = binding_scores(profile, results_dir)
    text, image = (scores.get(r, {}).get("binding_score") for r in ("text_only", "image_text"))
    if text is None:
        return "No interchange results for the text-only models yet."
    found = mechanism(text)
    if found == "positional":
        return f"Our text-only models bind positionally (binding score {signed(text)}), as the paper says."
    tail = (f"; the image-trained models that still answer text prompts are {mechanism(image)} too "
            f"({signed(image)}), so images have no shortcut to correct here" if image is not None else "")
    return (f"Our text-only models bind {ADVERB[found]} (binding score {signed(text)} at the routing layer), "
            f"not positionally as the paper says{tail}.") if found == "symbolic" else \
        f"Our text-only models' binding score is {signed(text)}: {found}{tail}."


# ---------------------------------------------------------------- front and back matter
def headline(profile: str = "cpu", results_dir=None) -> pd.DataFrame:
    """The numbers of the 'what we found' box: ours beside the paper's."""
    c = cliff(text_only_runs(profile, results_dir))
    means = regime_means(profile, results_dir)
    scores = binding_scores(profile, results_dir)
    rows = [{"measure": "text only: ID accuracy", "ours": pct(c["id"]), "paper": f"about {pct(c['paper_id'], 0)}"},
            {"measure": "text only: OOD accuracy", "ours": pct(c["ood"]), "paper": pct(c["paper_ood"])}]
    for regime in ("noise_text", "image_text", "noise_image_text"):
        rows.append({"measure": f"{regime}: OOD accuracy (text prompts)", "ours": pct(means.get(regime)),
                     "paper": pct(paper.OOD_ACCURACY[regime]["value"])
                     + (" (summary)" if paper.OOD_ACCURACY[regime]["source"] == "summary" else "")})
    for regime, theirs in (("text_only", "positional"), ("image_text", "symbolic")):
        bs = scores.get(regime, {}).get("binding_score")
        rows.append({"measure": f"{regime}: binding mechanism", "ours": f"{mechanism(bs)} (BS {signed(bs)})",
                     "paper": theirs})
    return table(rows, index="measure")


def found_box(profile: str = "cpu", results_dir=None):
    """The front page's 'what we found' box: an admonition holding the headline table (HTML)."""
    from IPython.display import HTML

    html = headline(profile, results_dir).to_html(classes="table", border=0)
    return HTML('<div class="admonition tip"><p class="admonition-title">What we found (computed from '
                f'data/results)</p>{html}<p>{cliff_sentence(text_only_runs(profile, results_dir))} '
                f'{direction_sentence(profile, results_dir)}</p></div>')


def scoreboard(profile: str = "cpu", results_dir=None) -> pd.DataFrame:
    """Claim by claim: the paper's claim, our result, the verdict (all computed from results files)."""
    c = cliff(text_only_runs(profile, results_dir))
    means = regime_means(profile, results_dir)
    scores = binding_scores(profile, results_dir)
    bs = {r: scores.get(r, {}).get("binding_score") for r in ("text_only", "image_text")}

    def above(a, b):
        if means.get(a) is None or means.get(b) is None:
            return "not measured"
        return "reproduced" if means[a] > means[b] + 0.02 else "not reproduced"

    rows = [
        ("Text-only training reaches about 100% in distribution.", f"ID {pct(c['id'])}",
         "not measured" if not math.isfinite(c["id"]) else "reproduced" if c["id"] >= 0.95 else "not reproduced"),
        ("Text-only accuracy collapses out of distribution (37.2%).", f"OOD {pct(c['ood'])}", c["verdict"]),
        ("Image training raises text OOD accuracy (to 69.5%).",
         f"image_text {pct(means.get('image_text'))} vs text only {pct(means.get('text_only'))}",
         above("image_text", "text_only")),
        ("Noise augmentation alone raises it (57.5%, summary).",
         f"noise_text {pct(means.get('noise_text'))} vs text only {pct(means.get('text_only'))}",
         above("noise_text", "text_only")),
        ("Noise plus images is best (83.6%, summary).",
         f"noise_image_text {pct(means.get('noise_image_text'))} vs image_text {pct(means.get('image_text'))}",
         above("noise_image_text", "image_text")),
        ("The text-only model binds positionally.", f"binding score {signed(bs['text_only'])} ({mechanism(bs['text_only'])})",
         "not measured" if bs["text_only"] is None else
         "reproduced" if mechanism(bs["text_only"]) == "positional" else "not reproduced"),
        ("Image training moves binding to symbolic.",
         f"image_text {signed(bs['image_text'])}, text only {signed(bs['text_only'])}",
         "not measured" if bs["image_text"] is None or bs["text_only"] is None else
         "reproduced" if bs["image_text"] > bs["text_only"] + 0.5 else
         "not reproduced (both symbolic)" if mechanism(bs["text_only"]) == "symbolic" else "not reproduced"),
    ]
    return table([{"paper claim": a, "our result": b, "verdict": v} for a, b, v in rows])


def verdict_counts(board: pd.DataFrame) -> str:
    n_rep = int((board["verdict"] == "reproduced").sum())
    n_not = int(board["verdict"].str.startswith("not reproduced").sum())
    return f"{n_rep} of {len(board)} claims reproduced, {n_not} not reproduced, {len(board) - n_rep - n_not} other."


# ---------------------------------------------------------------- chapter 3: encoder pretraining
def encoder_pretraining_table(profile: str = "cpu", n_shapes: int = 16, results_dir=None) -> pd.DataFrame:
    """Each project encoder's pretraining: steps, wall time, whether it reached its target, held-out accuracy
    on object patches and on all labelled patches (colour and shape), beside guessing a shape."""
    rows = []
    for r in io.load_results(f"encoder_*_{profile}.json", results_dir, kind="encoder_pretraining"):
        h, cfg = r["held_out"], r["pretrain_config"]
        rows.append({"encoder": r["encoder"], "steps": r["steps"],
                     "wall (min)": f"{r['provenance']['wall_seconds'] / 60:.1f}",
                     f"{pct(cfg['target'], 0)} target": "reached" if r["stopped"] == "target_reached"
                     else f"stopped by the {cfg['time_budget_s']:.0f} s budget",
                     "object patches: colour": pct(h["color_object"]), "object patches: shape": pct(h["shape_object"]),
                     "all patches: colour": pct(h["color_all"]), "all patches: shape": pct(h["shape_all"]),
                     "shape by guessing": pct(1 / n_shapes)})
    return table(rows, index="encoder").T  # one column per encoder: the table stays narrow


# ---------------------------------------------------------------- chapter 5: interchange tables
def _run(r: dict) -> str:
    return f"{r['regime']}{' ' + r['encoder'] if r.get('encoder') and r['regime'] in ('image_text', 'noise_image_text') else ''} s{r['seed']}"


def sweep_table(result: dict) -> pd.DataFrame:
    """Per patched layer: the share of pairs whose output follows each hypothesis (an ``interchange`` result)."""
    keys = ("positional", "symbolic", "reflexive", "none", "other")
    return table([{"layer": row["layer"], **{k: f"{row[k]:.2f}" for k in keys}} for row in result["per_layer"]],
                 index="layer")


def sweep_sentence(result: dict) -> str:
    s = result["summary"]
    return f"Routing layer {s['routing_layer']}: binding score {signed(s['binding_score'])}."


def interchange_runs_table(records: list[dict]) -> pd.DataFrame:
    """Per interchange results file: the pairs kept at ID and OOD lengths (and how many were drawn to find them)."""
    rows = []
    for r in records:
        ids, ood = r["splits"]["id"], r["splits"].get("ood", {})
        rows.append({"run": _run(r), "ID pairs": ids.get("n_pairs", 0), "drawn (ID)": ids.get("pairs_drawn", "-"),
                     "OOD pairs": ood.get("n_pairs", 0), "drawn (OOD)": ood.get("pairs_drawn", "-")})
    return table(rows, index="run")


def outcome_table(records: list[dict], split: str = "id") -> pd.DataFrame:
    """Per regime and layer, the most common outcome of the patch and its share (mean over seeds)."""
    from ..plots import iia_rows

    rows = iia_rows(records, split)
    out = {}
    for r in rows:
        out.setdefault((r["regime"], r["layer"]), {})[r["outcome"]] = r["share"]
    table_rows = {}
    for (regime, layer), cells in out.items():
        best = max(cells, key=cells.get)
        table_rows.setdefault(regime, {"regime": regime})[f"layer {layer}"] = f"{best} {cells[best]:.0%}"
    return table(list(table_rows.values()), index="regime")


def routing_runs_table(records: list[dict]) -> pd.DataFrame:
    """Per run: routing layer, routed share, P_sym, P_pos, binding score, position-swap flip and stay rates."""
    from ..plots import routing_rows

    return table([{"run": f"{row['regime']} s{row['seed']}", "routing layer": row["routing_layer"],
                   "routed": f"{row['routing_share']:.2f}", "P_sym": f"{row['p_sym']:.2f}", "P_pos": f"{row['p_pos']:.2f}",
                   "BS": signed(row["binding_score"]), "swap flips": pct(row["flip_rate"]),
                   "swap stays": pct(row["stay_rate"])} for row in routing_rows(records)], index="run")


def ood_and_binding_table(profile: str = "cpu", results_dir=None) -> pd.DataFrame:
    """Per regime: OOD accuracy (ours, paper's) beside the binding score of the same seeds."""
    from ..regimes import IMAGE_REGIMES, MAIN_ENCODER, regime_results

    rows = []
    for regime, row in binding_scores(profile, results_dir).items():
        if not row["seeds"]:
            continue
        by_seed = {}
        if regime == "text_only":
            by_seed.update({r["seed"]: r["ood_accuracy"] for r in text_only_runs(profile, results_dir)})
        for r in regime_results(profile, results_dir):
            if r["regime"] == regime and (regime not in IMAGE_REGIMES or r.get("encoder") == MAIN_ENCODER) \
                    and r.get("grounding") is not False:
                by_seed[r["seed"]] = r["ood_accuracy"]
        accs = [a for s, a in by_seed.items() if s in row["seeds"]]
        theirs = paper.OOD_ACCURACY.get(regime, {}).get("value")
        rows.append({"regime": regime, "seeds": ", ".join(map(str, row["seeds"])), "OOD (ours)": pct(_mean(accs)),
                     "OOD (paper)": pct(theirs), "binding score (ours)": signed(row["binding_score"]),
                     "mechanism (ours)": mechanism(row["binding_score"])})
    return table(rows, index="regime")


def learned_positions_binding_table(results_dir=None) -> pd.DataFrame:
    """RoPE against learned absolute positions, per seed: accuracy and the interchange measurement."""
    ablations = io.load_results("training_text_only_cpu_s*_learnedpos.json", results_dir, kind="training_variant")
    ab_interp = {r["seed"]: r for r in io.load_results("interchange_text_only_cpu_s*_learnedpos.json", results_dir,
                                                       kind="interchange")}
    rope_interp = {r["seed"]: r for r in io.load_results("interchange_text_only_cpu_s*.json", results_dir,
                                                         kind="interchange") if not r.get("variant")}
    rope_train = {r["seed"]: r for r in text_only_runs("cpu", results_dir)}
    rows = []
    for t in ablations:
        for label, tr, ir in (("RoPE", rope_train.get(t["seed"]), rope_interp.get(t["seed"])),
                              ("learned", t, ab_interp.get(t["seed"]))):
            if tr is None:
                continue
            summ = ir["splits"]["id"]["summary"] if ir else {}
            rows.append({"seed": t["seed"], "positions": label, "ID": pct(tr["id_accuracy"]), "OOD": pct(tr["ood_accuracy"]),
                         "routing layer": summ.get("routing_layer", "-"), "BS": signed(summ.get("binding_score")),
                         "swap flips": pct(ir["position_swap"]["flip_rate"]) if ir else "-",
                         "mechanism": mechanism(summ.get("binding_score"))})
    return table(rows).set_index(['seed', 'positions'])


def learned_positions_sentence(results_dir=None) -> str:
    ablations = io.load_results("training_text_only_cpu_s*_learnedpos.json", results_dir, kind="training_variant")
    ab_interp = {r["seed"]: r for r in io.load_results("interchange_text_only_cpu_s*_learnedpos.json", results_dir,
                                                       kind="interchange")}
    bs = [ab_interp[t["seed"]]["splits"]["id"]["summary"]["binding_score"] for t in ablations if t["seed"] in ab_interp]
    if not bs:
        return "The positional-encoding ablation has no interchange results yet."
    ood = _mean([t["ood_accuracy"] for t in ablations])
    kinds = sorted({mechanism(b) for b in bs})
    return (f"With learned absolute positions the models bind {ADVERB[kinds[0]]} (binding scores "
            f"{', '.join(signed(b) for b in bs)}) and still answer only {pct(ood)} of OOD prompts: an OOD cliff "
            "without positional binding." if kinds == ["symbolic"] and ood < 0.6 else
            f"With learned absolute positions: binding scores {', '.join(signed(b) for b in bs)}, OOD {pct(ood)}.")


def timing_table(records: list[dict]) -> pd.DataFrame:
    """Per interchange file: the packed all-layer sweep against a per-pair loop (timed on a few pairs, extrapolated)."""
    rows = []
    for r in records:
        t = r.get("timing")
        if t:
            rows.append({"run": _run(r), "pairs": t["n_pairs"], "packed (s)": f"{t['packed_seconds']:.1f}",
                         "per-pair loop (s)": f"{t['loop_seconds_extrapolated']:.0f}",
                         "speed-up": f"{t['speedup_packed_vs_loop']:.0f}x", "max |Δlogit|": f"{t['max_abs_logit_diff']:.1e}",
                         "threads": t["threads"]})
    return table(rows, index="run")


def encoder_binding_table(kind_records: list[dict]) -> pd.DataFrame:
    """Interchange summaries of the other encoders' image checkpoints (``interp_runs.encoder_runs('interchange')``)."""
    rows = []
    for r in kind_records:
        summ = r["splits"]["id"]["summary"]
        rows.append({"run": _run(r), "routing layer": summ["routing_layer"], "routed": f"{summ['routing_share']:.2f}",
                     "BS": signed(summ["binding_score"]), "swap flips": pct(r["position_swap"]["flip_rate"]),
                     "mechanism": mechanism(summ["binding_score"])})
    return table(rows, index="run")


# ---------------------------------------------------------------- chapter 6: knockouts
def _worst(change: list[float]) -> int:
    return min(range(len(change)), key=change.__getitem__)


def critical_layers(records: list[dict]) -> dict:
    """Per (regime, target set): the layer where knocking the set out hurts most (mean relative change over seeds),
    the change there, its random control's change at that layer, and the accuracy left."""
    from ..interp_runs import mean_sd, regimes_present
    from ..plots import knockout_order

    out = {}
    for regime in regimes_present(records):
        group = [r for r in records if r["regime"] == regime]
        for name in [n for n in knockout_order(records) if not n.startswith("random_")]:
            change = [mean_sd([r["window"]["sets"][name]["relative_change"][l] for r in group])[0] for l in group[0]["layers"]]
            layer = _worst(change)
            ctrl = mean_sd([r["window"]["sets"]["random_" + name]["relative_change"][layer] for r in group])[0]
            acc = mean_sd([r["window"]["sets"][name]["accuracy"][layer] for r in group])[0]
            out[regime, name] = (layer, change[layer], ctrl, acc)
    return out


def critical_table(records: list[dict]) -> pd.DataFrame:
    return table([{"regime": regime, "target set": name, "worst layer": layer, "change": f"{change:.0f}%",
                   "random control": f"{ctrl:.0f}%", "accuracy left": f"{acc:.2f}"}
                  for (regime, name), (layer, change, ctrl, acc) in critical_layers(records).items()]).set_index(["regime", "target set"])


def routes(records: list[dict], threshold: float = -50.0) -> dict[str, str]:
    """Per regime, the route the knockouts reveal, in one sentence. A set is *needed* at a layer when knocking it
    out there changes the answer probability by less than ``threshold`` percent and by half that beyond its
    random control."""
    crit = critical_layers(records)

    def needed(regime, name):
        layer, change, ctrl, _ = crit[regime, name]
        return change < threshold and change < ctrl + threshold / 2, layer

    out = {}
    for regime in sorted({r for r, _ in crit}, key=lambda r: [k[0] for k in crit].index(r)):
        decl, decl_layer = needed(regime, "query_declaration")
        item, item_layer = needed(regime, "answer_item")
        shape, _ = needed(regime, "answer_shape")
        if decl and item and decl_layer < item_layer:
            story = (f"reads the queried colour's declaration at layer {decl_layer}, then the answer item at layer "
                     f"{item_layer}: a content route (colour -> declaration -> item), not a position-only one")
        elif item:
            story = f"needs the answer item at layer {item_layer}, but no single earlier content route stands out"
        else:
            story = "shows no single critical route at the last token (the information may travel through other tokens)"
        struct, struct_layer = needed(regime, "structural")
        extra = "; the associated shape token is dispensable" if not shape else ""
        if struct:
            extra += f"; it also needs the structural tokens (BOS, CTX_END, QUE) at layer {struct_layer}"
        out[regime] = f"{regime} {story}{extra}."
    return out


def say_routes(records: list[dict]) -> None:
    say(*routes(records).values())


def head_table(records: list[dict]) -> pd.DataFrame:
    """Per regime and set: the single head whose knockout hurts most, against knocking out its whole layer."""
    from ..interp_runs import mean_sd, regimes_present

    rows = []
    for regime in regimes_present(records):
        group = [r for r in records if r["regime"] == regime and r.get("per_head")]
        if not group:
            continue
        for name in ("answer_item", "query_declaration"):
            per = [r["per_head"]["sets"][name]["relative_change"] for r in group]
            grid = [[mean_sd([p[l][h] for p in per])[0] for h in range(len(per[0][l]))] for l in range(len(per[0]))]
            layer, head = min(((l, h) for l in range(len(grid)) for h in range(len(grid[l]))), key=lambda lh: grid[lh[0]][lh[1]])
            whole = mean_sd([r["window"]["sets"][name]["relative_change"][layer] for r in group])[0]
            share = grid[layer][head] / whole if whole < 0 else float("nan")
            rows.append({"regime": regime, "target set": name, "worst head": f"L{layer}H{head}",
                         "head alone": f"{grid[layer][head]:.0f}%", "whole layer": f"{whole:.0f}%",
                         "reading": "one head carries most of it" if share >= 0.5 else "shared by several heads"})
    return table(rows).set_index(['regime', 'target set'])


def image_knockout_table(rows: list[dict], margin: float = -20.0) -> pd.DataFrame:
    """Image checkpoints (``interp_runs.image_knockouts()``): accuracy on image prompts against chance, and whether
    the model needs the queried object's patches and an answer item (worst-layer gap to the random control)."""
    out = []
    for r in rows:
        sets = r["window"]["sets"]

        def gap(name):
            return min(sets[name]["relative_change"][l] - sets["random_" + name]["relative_change"][l] for l in r["layers"])

        g_patch, g_item = gap("query_patches"), gap("answer_item")
        out.append({"image checkpoint": r["run"], "image accuracy": pct(r["base_accuracy"]), "chance": pct(r["chance"]),
                    "queried patches: gap": f"{g_patch:.0f} pts", "needs them": "yes" if g_patch < margin else "no",
                    "answer item: gap": f"{g_item:.0f} pts", "needs it": "yes" if g_item < margin else "no"})
    return table(out, index="image checkpoint")


def encoder_knockout_table(kind_records: list[dict]) -> pd.DataFrame:
    """Worst layer of the query declaration and the answer item for the other encoders' image checkpoints."""
    rows = []
    for r in kind_records:
        sets = r["window"]["sets"]
        row = {"run": _run(r), "accuracy": f"{r['base_accuracy']:.2f}"}
        for name in ("query_declaration", "answer_item"):
            layer = min(r["layers"], key=lambda l: sets[name]["relative_change"][l])
            row[f"{name}: layer"] = layer
            row[f"{name}: change"] = f"{sets[name]['relative_change'][layer]:.0f}%"
        rows.append(row)
    return table(rows, index="run")


def knockout_runs_table(records: list[dict]) -> pd.DataFrame:
    return table([{"run": _run(r), "prompts": r["n_prompts"], "accuracy without knockout": f"{r['base_accuracy']:.3f}"}
                  for r in records], index="run")


def picture_readers(rows: list[dict], margin: float = -20.0, above_chance: float = 0.05) -> list[str]:
    """Image checkpoints that answer image prompts above chance *and* need the queried object's patches."""
    out = []
    for r in rows:
        sets = r["window"]["sets"]
        gap = min(sets["query_patches"]["relative_change"][l] - sets["random_query_patches"]["relative_change"][l]
                  for l in r["layers"])
        if r["base_accuracy"] - r["chance"] > above_chance and gap < margin:
            out.append(r["run"])
    return out


def recipe_table(cfg, task) -> pd.DataFrame:
    """The stages of a training recipe (``bindlib.recipes.recipe``): steps, N range, query mix, deep supervision."""
    rows = []
    for stage in cfg.stages:
        n_lo, n_hi = stage.n_range or task.id_range
        rows.append({"stage": stage.name, "up to steps": stage.steps, "N": f"{n_lo}..{n_hi}",
                     "queries": ", ".join(stage.mix),
                     "deep supervision": f"after block {cfg.hop_layer}, weight {stage.hop_weight:g}" if stage.hop_weight else "-"})
    return table(rows, index="stage")


# ---------------------------------------------------------------- chapter 7: probes
SIGNATURE_MARGIN = 0.5  # points above the random-init baseline at which the binding signature counts as present


def signature_onset(layers: list[dict], margin: float = SIGNATURE_MARGIN):
    """The first layer whose probe accuracy beats its random-init baseline by more than ``margin`` (None: never)."""
    for row in layers:
        base = row["random_init_accuracy"]
        if base is not None and row["accuracy"] - base > margin:
            return row["layer"]
    return None


def _probe(r: dict, role: str, target: str) -> dict:
    return next(p for p in r["probes"] if (p["role"], p["target"]) == (role, target))


def signature_table(records: list[dict], margin: float = SIGNATURE_MARGIN) -> pd.DataFrame:
    """Per run: whether the binding signature (bound colour at shape tokens) is present, and from which layer."""
    rows = []
    for r in records:
        onset = signature_onset(_probe(r, "shape", "bound_color")["layers"], margin)
        rows.append({"run": _run(r), "signature": "present" if onset is not None else "absent",
                     "from layer": onset if onset is not None else "-"})
    return table(rows, index="run")


def probe_runs_table(records: list[dict]) -> pd.DataFrame:
    return table([{"run": _run(r), "prompts": r["sizes"]["probe_prompts"],
                   **{f"{p['role']}/{p['target']}": p["n_test"] for p in r["probes"]}} for r in records], index="run")


def index_table(records: list[dict]) -> pd.DataFrame:
    """Per regime, the ordinal index at colour and shape tokens at the last layer: trained against random init."""
    from ..interp_runs import mean_sd, regimes_present

    rows = []
    for regime in regimes_present(records):
        group = [r for r in records if r["regime"] == regime]
        for role in ("color", "shape"):
            last = [_probe(r, role, "index")["layers"][-1] for r in group]
            trained = mean_sd([x["accuracy"] for x in last])[0]
            rand = mean_sd([x["random_init_accuracy"] for x in last])[0]
            verdict = "more" if trained > rand + 0.05 else ("less" if trained < rand - 0.05 else "about as")
            rows.append({"regime": regime, "index at": f"{role} tokens", "trained": f"{trained:.2f}",
                         "random init": f"{rand:.2f}", "after training": f"{verdict} decodable"})
    return table(rows).set_index(['regime', 'index at'])


def selectivity_table(records: list[dict]) -> pd.DataFrame:
    """Per regime and probe, at the last layer: accuracy, random-init accuracy, control accuracy, selectivity."""
    from ..interp_runs import mean_sd, regimes_present

    keys = [(p["role"], p["target"]) for p in records[0]["probes"]] if records else []
    rows = []
    for regime in regimes_present(records):
        group = [r for r in records if r["regime"] == regime]
        for role, target in keys:
            last = [_probe(r, role, target)["layers"][-1] for r in group]
            m = {k: mean_sd([row[k] for row in last])[0]
                 for k in ("accuracy", "random_init_accuracy", "control_accuracy", "selectivity")}
            rows.append({"regime": regime, "probe": f"{role}/{target}", "trained": f"{m['accuracy']:.2f}",
                         "random init": f"{m['random_init_accuracy']:.2f}", "control": f"{m['control_accuracy']:.2f}",
                         "selectivity": f"{m['selectivity']:.2f}"})
    return table(rows).set_index(['regime', 'probe'])
