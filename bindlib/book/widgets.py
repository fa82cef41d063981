"""Readable prompt rendering, and an ipywidgets prompt builder for exploration.

Widgets are for exploration only: no result in the book depends on them.
"""
from __future__ import annotations

import html

from ..core.task import ASSOCIATION_ORDERS, QUERY_KINDS, Batch, TaskConfig, sample_batch
from .exercises import prompt_strings, target_string


# Shown under every widget: on a built page the controls keep their saved state but do nothing.
KERNEL_NOTE = ("<small><i>These controls need a running Python kernel: open the chapter in Colab or Jupyter "
               "(on this page they only show their saved state).</i></small>")


def split_of(n: int, task_cfg: TaskConfig) -> str:
    """'ID', 'OOD' or 'neither' for a prompt with n objects."""
    split = task_cfg.split_of(n)
    return split.upper() if split else "neither"


def prompt_parts(prompt: list[str]) -> dict[str, list[str]]:
    """Cut a prompt (token strings) into its context, association and query parts."""
    end = prompt.index("CTX_END")
    return {"context": prompt[: end + 1], "associations": prompt[end + 1 : -2], "query": prompt[-2:]}


def format_prompt(batch: Batch, i: int = 0, task_cfg: TaskConfig | None = None) -> str:
    """Row i of a batch as labelled lines: a header, then context, associations, query and answer."""
    n = int(batch.n_objects[i])
    header = f"N={n}"
    if task_cfg is not None:
        header += f" ({split_of(n, task_cfg)})"
    header += f", associations {batch.meta['association_order']}, offset {batch.meta['offset']}, {batch.query_kind[i]}"
    lines = [header]
    for name, tokens in prompt_parts(prompt_strings(batch, i)).items():
        lines.append(f"  {name + ':':<14}{' '.join(tokens)}")
    lines.append(f"  {'answer:':<14}{target_string(batch, i)}")
    return "\n".join(lines)


def prompt_builder(task_cfg: TaskConfig | None = None):
    """An interactive prompt builder: choose N, seed, split, association order, offset and query kind."""
    import ipywidgets as w  # imported here so the rest of the module works without a front end

    task_cfg = task_cfg or TaskConfig()
    max_n = max(task_cfg.id_range[1], task_cfg.ood_range[1])
    split = w.Dropdown(options=[("any N", "any"), ("ID", "id"), ("OOD", "ood")], value="id", description="split")
    n = w.IntSlider(value=task_cfg.id_range[0], min=1, max=max_n, description="N")
    seed = w.IntSlider(value=0, min=0, max=999, description="seed")
    order = w.Dropdown(options=list(ASSOCIATION_ORDERS), value="shuffled", description="order")
    offset = w.IntSlider(value=0, min=0, max=16, description="offset")
    kind = w.Dropdown(options=list(QUERY_KINDS), value="two_hop", description="query")
    shown = w.HTML()

    def restrict_n_to_split(_=None):
        lo, hi = (1, max_n) if split.value == "any" else task_cfg.split_range(split.value)
        # Widen before narrowing so min never exceeds max mid-update.
        n.max = max(n.max, hi)
        n.min, n.max = lo, hi

    def redraw(_=None):
        batch = sample_batch(task_cfg, 1, seed=seed.value, n=n.value, association_order=order.value,
                             offset=offset.value, query_kind=kind.value)
        shown.value = f"<pre>{html.escape(format_prompt(batch, 0, task_cfg))}</pre>"

    split.observe(restrict_n_to_split, names="value")
    for control in (split, n, seed, order, offset, kind):
        control.observe(redraw, names="value")
    restrict_n_to_split()
    redraw()
    return w.VBox([w.HBox([split, n, seed]), w.HBox([order, offset, kind]), shown, w.HTML(KERNEL_NOTE)])


# ---------------------------------------------------------------- chapters 5-7: explorers over results files
def _html_table(header: list[str], rows: list[list]) -> str:
    def cell(x):
        if isinstance(x, float):
            return f"{x:.3f}"
        return html.escape("" if x is None else str(x))

    head = "".join(f"<th style='padding:2px 8px'>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td style='padding:2px 8px;text-align:right'>{cell(x)}</td>" for x in r) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def results_explorer(records: list[dict], choices: dict, table):
    """Dropdowns over precomputed results; ``table(record, **choice values)`` returns an HTML table.

    ``choices`` maps a dropdown's name to its options; "regime" and "seed" are added from ``records``.
    Nothing is computed live: every view reads the records already loaded.
    """
    import ipywidgets as w

    regimes = list(dict.fromkeys(r["regime"] for r in records))
    regime = w.Dropdown(options=regimes, description="regime")
    seed = w.Dropdown(options=sorted({r["seed"] for r in records}), description="seed")
    extra = {name: w.Dropdown(options=list(opts), description=name) for name, opts in choices.items()}
    shown = w.HTML()

    def redraw(_=None):
        rec = next((r for r in records if r["regime"] == regime.value and r["seed"] == seed.value), None)
        shown.value = ("<i>no results file for this regime and seed</i>" if rec is None else
                       table(rec, **{k: d.value for k, d in extra.items()}))

    for control in (regime, seed, *extra.values()):
        control.observe(redraw, names="value")
    redraw()
    return w.VBox([w.HBox([regime, seed, *extra.values()]), shown, w.HTML(KERNEL_NOTE)])


def interchange_table(rec: dict, split: str = "id") -> str:
    s = rec["splits"].get(split) or {}
    if not s.get("per_layer"):
        return f"<i>no {split} pairs: {html.escape(s.get('error', 'not measured'))}</i>"
    keys = ["positional", "symbolic", "reflexive", "none", "other", "binding_score", "logit_diff"]
    summ = s["summary"]
    note = (f"<p>{s['n_pairs']} pairs, N {s['n_range'][0]}..{s['n_range'][1]}; routing layer {summ['routing_layer']}, "
            f"BS there {summ['binding_score']}</p>")
    return note + _html_table(["layer"] + keys, [[row["layer"]] + [row[k] for k in keys] for row in s["per_layer"]])


def interchange_explorer(records: list[dict]):
    """Per-layer interchange shares of any regime, seed and split."""
    return results_explorer(records, {"split": ["id", "ood"]}, interchange_table)


def knockout_table(rec: dict, mode: str = "window", metric: str = "relative_change") -> str:
    sets = rec[mode]["sets"]
    return _html_table(["target set", "size"] + [f"layer {l}" for l in rec["layers"]],
                       [[name, v["mean_size"]] + list(v[metric]) for name, v in sets.items()])


def knockout_explorer(records: list[dict]):
    """Knockout accuracy or relative change per layer and target set, for any regime, seed and mode."""
    return results_explorer(records, {"mode": ["window", "cumulative"], "metric": ["relative_change", "accuracy"]},
                            knockout_table)


def probe_table(rec: dict, probe: str = "shape/bound_color") -> str:
    role, target = probe.split("/")
    p = next(x for x in rec["probes"] if (x["role"], x["target"]) == (role, target))
    keys = ["accuracy", "random_init_accuracy", "control_accuracy", "selectivity", "C"]
    note = f"<p>{p['n_classes']} classes, {p['n_train']} train / {p['n_test']} test examples, majority class {p['chance']}</p>"
    return note + _html_table(["layer"] + keys, [[row["layer"]] + [row.get(k) for k in keys] for row in p["layers"]])


def probe_explorer(records: list[dict]):
    """Probe accuracies (with both baselines) per layer for any regime, seed and probe."""
    probes = list(dict.fromkeys(f"{p['role']}/{p['target']}" for r in records for p in r["probes"]))
    return results_explorer(records, {"probe": probes}, probe_table)
