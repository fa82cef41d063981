"""Readable prompt rendering, and an ipywidgets prompt builder for exploration.

Widgets are for exploration only: no result in the book depends on them.
"""
from __future__ import annotations

import html

from .task import ASSOCIATION_ORDERS, QUERY_KINDS, Batch, TaskConfig, sample_batch
from .exercises import prompt_strings, target_string


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
    return w.VBox([w.HBox([split, n, seed]), w.HBox([order, offset, kind]), shown])
