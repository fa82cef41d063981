"""Smoke tests for the chart and widget helpers the chapters call."""
import pytest

from bindlib.book.plots import color_swatch_chart, line_chart, prompt_length_chart, prompt_length_rows, save_static
from bindlib.core.task import TaskConfig, prompt_length, sample_batch
from bindlib.book.widgets import format_prompt, prompt_builder, prompt_parts, split_of


def test_prompt_length_rows_cover_every_n_with_its_split():
    cfg = TaskConfig()
    rows = prompt_length_rows(cfg)
    assert [r["N"] for r in rows] == list(range(1, cfg.ood_range[1] + 1))
    assert all(r["tokens"] == prompt_length(r["N"]) for r in rows)
    assert {r["split"] for r in rows} == {"neither", "ID", "OOD"}


def test_charts_serialize_without_pandas():
    cfg = TaskConfig()
    rows = [{"N": n, "accuracy": 1 / n, "run": "a"} for n in range(1, 5)]
    for chart in (prompt_length_chart(cfg), color_swatch_chart(cfg.vocab), line_chart(rows, "N", "accuracy", "run", "t")):
        assert chart.to_dict()


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".svg", b"<svg")])
def test_save_static_writes_offline(tmp_path, suffix, magic):
    path = save_static(line_chart([{"x": 1, "y": 2}, {"x": 2, "y": 3}], "x", "y"), tmp_path / f"chart{suffix}")
    assert path.read_bytes().startswith(magic)


def test_save_static_rejects_other_formats(tmp_path):
    with pytest.raises(ValueError, match=".png or .svg"):
        save_static(line_chart([{"x": 1, "y": 2}], "x", "y"), tmp_path / "chart.pdf")


def test_format_prompt_shows_parts_and_answer():
    cfg = TaskConfig()
    batch = sample_batch(cfg, 1, seed=0, n=10, offset=2)
    text = format_prompt(batch, 0, cfg)
    assert text.startswith("N=10 (OOD)")
    assert "FILL FILL" in text and "CTX_END" in text
    assert text.splitlines()[-1].split()[-1] == cfg.vocab.names()[int(batch.target[0])]


def test_prompt_parts_split_at_ctx_end_and_query():
    parts = prompt_parts(["BOS", "c", "s", "CTX_END", "s", "i", "QUE", "c"])
    assert parts == {"context": ["BOS", "c", "s", "CTX_END"], "associations": ["s", "i"], "query": ["QUE", "c"]}


def test_split_of():
    cfg = TaskConfig()
    assert [split_of(n, cfg) for n in (1, cfg.id_range[1], cfg.ood_range[0])] == ["neither", "ID", "OOD"]


def test_prompt_builder_follows_its_controls():
    cfg = TaskConfig()
    ui = prompt_builder(cfg)
    (split, n, _seed), (_order, offset, _kind), shown = ui.children[0].children, ui.children[1].children, ui.children[2]
    split.value = "ood"
    assert (n.min, n.max) == cfg.ood_range and "(OOD)" in shown.value
    offset.value = 3
    assert "FILL FILL FILL" in shown.value


def test_every_widget_says_it_needs_a_kernel():
    from bindlib.book.widgets import KERNEL_NOTE, results_explorer

    ui = prompt_builder(TaskConfig())
    assert ui.children[-1].value == KERNEL_NOTE
    records = [{"regime": "text_only", "seed": 0}]
    explorer = results_explorer(records, {}, lambda rec: "<p>table</p>")
    assert explorer.children[-1].value == KERNEL_NOTE and "kernel" in KERNEL_NOTE
