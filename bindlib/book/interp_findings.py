"""Tables and numbers of the mechanism chapters (5: interchange, 6: knockouts, 7: probes), read from the results
files of ``python -m bindlib interp``. Every function returns a table or numbers; the chapters say what they mean.
"""
from __future__ import annotations

import pandas as pd

from ..core import io
from ..core.evaluate import mean_sd
from ..interp.results import regimes_present
from . import axes as A, control_data as D
from .control_data import mean, mechanism
from . import findings as F
from .findings import MISSING, table, text_only_runs
from .interp_plots import iia_rows, knockout_order, routing_rows


def pct(x, digits: int = 1) -> str:
    return F.pct(x, digits, MISSING)


def signed(x, digits: int = 2) -> str:
    return F.signed(x, digits, MISSING)


def formatted(df: pd.DataFrame, formats: dict | str) -> pd.DataFrame:
    """``df`` with its columns formatted (one format such as "{:.1%}", or one per column; columns without one
    stay as they are), "\u2014" where a value is missing, and no index name (which would take a header row)."""
    out = pd.DataFrame(index=df.index.rename(None))
    for c in df.columns:
        f = formats if isinstance(formats, str) else formats.get(c)
        out[c] = [MISSING if pd.isna(v) else f.format(v) for v in df[c]] if f else df[c].values
    return table(out.to_dict("records")).set_index(out.index)


def models_table(regimes=A.LABELS) -> pd.DataFrame:
    """The models box of chapters 5-7: per label, the seeds analysed (their runs met their targets), text ID
    accuracy per seed and, for an image stage, accuracy on image prompts per seed."""
    m = A.models(regimes)
    rows = []
    for label, g in m.groupby("label", sort=False):
        ok = g[g["met targets"]]
        rows.append({"label": label, "seeds": ", ".join(map(str, ok["seed"])) or MISSING,
                     "left out": ", ".join(map(str, g.loc[~g["met targets"], "seed"])) or MISSING,
                     "text ID": ", ".join(pct(x) for x in ok["text ID"]),
                     "image ID": ", ".join(pct(x) for x in ok["image ID"]) if ok["image ID"].notna().any() else MISSING})
    return table(rows)


def _run(r: dict) -> str:
    return f"{r['regime']} s{r['seed']}"


def outcome_table(records: list[dict], split: str = "id") -> pd.DataFrame:
    """Per regime and layer, the most common outcome of the patch and its share (mean over seeds)."""
    rows = iia_rows(records, split)
    out = {}
    for r in rows:
        out.setdefault((r["regime"], r["layer"]), {})[r["outcome"]] = r["share"]
    table_rows = {}
    for (regime, layer), cells in out.items():
        best = max(cells, key=cells.get)
        table_rows.setdefault(regime, {"label": regime})[f"layer {layer}"] = f"{best} {cells[best]:.0%}"
    return table(list(table_rows.values()))


def routing_runs_table(records: list[dict]) -> pd.DataFrame:
    """Per run: routing layer, routed share, P_sym, P_pos, binding score, position-swap flip and stay rates."""
    return table([{"run": f"{row['regime']} s{row['seed']}", "routing layer": row["routing_layer"],
                   "routed": f"{row['routing_share']:.2f}", "P_sym": f"{row['p_sym']:.2f}", "P_pos": f"{row['p_pos']:.2f}",
                   "BS": signed(row["binding_score"]), "swap flips": pct(row["flip_rate"]),
                   "swap stays": pct(row["stay_rate"])} for row in routing_rows(records)])


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
    return table(rows)


def _worst(change: list[float]) -> int:
    return min(range(len(change)), key=change.__getitem__)


def critical_layers(records: list[dict]) -> dict:
    """Per (regime, target set): the layer where knocking the set out hurts most (mean relative change over seeds),
    the change there, its random control's change at that layer, and the accuracy left."""
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
    return table([{"label": regime, "target set": name, "worst layer": layer, "change": f"{change:.0f}%",
                   "random control": f"{ctrl:.0f}%", "accuracy left": f"{acc:.2f}"}
                  for (regime, name), (layer, change, ctrl, acc) in critical_layers(records).items()])


def head_table(records: list[dict]) -> pd.DataFrame:
    """Per regime and set: the single head whose knockout hurts most, against knocking out its whole layer."""
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
            rows.append({"label": regime, "target set": name, "worst head": f"L{layer}H{head}",
                         "head alone": f"{grid[layer][head]:.0f}%", "whole layer": f"{whole:.0f}%",
                         "reading": "one head carries most of it" if share >= 0.5 else "shared by several heads"})
    return table(rows)


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


# The text models of chapter 5's controls, by run-name suffix (the recipe first).
CONTROL_ARMS = (("", "recipe"), ("_learnedpos", "learned pos."), ("_ordered", "ordered format"),
                ("_hopslot", "slot arm, p=0"), ("_hopslot_decl050", "dial p=0.5"), ("_hopslot_decl090", "dial p=0.9"),
                ("_hopslot_decl100", "dial p=1"), ("_hopl2", "hop layer 2"), (D.NO_DEEP_SUPERVISION, "no deep sup."))


def control_signature_rows(results_dir=None) -> list[dict]:
    """Per control model probed: its arm, seed, chapter 5's reading (BS at the routing layer), the signature's
    onset and the bound-colour probe's accuracy per layer with its random-init baseline."""
    probes = io.load_results(f"probe_text_only_{D.PROFILE}_s*.json", results_dir, kind="probe")
    rows = []
    for suffix, label in CONTROL_ARMS:
        bs = {r["seed"]: r["binding_score"] for r in D.arm_rows(suffix, results_dir)}
        for r in sorted((r for r in probes if (r.get("variant") or "") == suffix), key=lambda r: r["seed"]):
            layers = _probe(r, "shape", "bound_color")["layers"]
            rows.append({"arm": label, "seed": r["seed"], "binding_score": bs.get(r["seed"]),
                         "onset": signature_onset(layers), "layers": layers})
    return rows


def control_signature_table(results_dir=None) -> pd.DataFrame:
    """``control_signature_rows`` as a table: reading, signature, bound colour at shape tokens per layer
    (trained / random init)."""
    rows = [{"model": f"{r['arm']} s{r['seed']}", "reads (ch. 5)": mechanism(r["binding_score"]),
             "BS": signed(r["binding_score"]), "signature": "absent" if r["onset"] is None else f"from layer {r['onset']}",
             **{f"layer {x['layer']}": f"{x['accuracy']:.2f} / {x['random_init_accuracy']:.2f}"
                for x in r["layers"] if x["layer"] > 0}}
            for r in control_signature_rows(results_dir)]
    return table(rows)


