"""Every chapter is written as a MyST-markdown notebook (.md) paired by jupytext with its
executed .ipynb: the two must hold the same cells (type, source, tags), or an edit on
one side would be lost on the other.  Fix a failure with ``jupytext --sync <file>``."""
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAIRED = sorted(ROOT.glob("chapters/*.ipynb")) + sorted(ROOT.glob("intro.ipynb"))


def cells(path: Path) -> list[tuple[str, str, tuple[str, ...]]]:
    nb = jupytext.read(path)
    return [(c.cell_type, c.source.strip(), tuple(c.metadata.get("tags", ()))) for c in nb.cells]


def test_every_notebook_is_paired():
    assert PAIRED, "no chapters found"
    unpaired = [p.name for p in PAIRED if not p.with_suffix(".md").exists()]
    assert not unpaired, f"notebooks without a .md source: {unpaired} (run `jupytext --set-formats ipynb,md:myst <file>`)"


@pytest.mark.parametrize("notebook", PAIRED, ids=lambda p: p.name)
def test_pair_in_sync(notebook):
    text, executed = cells(notebook.with_suffix(".md")), cells(notebook)
    assert len(text) == len(executed), f"{notebook.name}: {len(text)} cells in the .md, {len(executed)} in the .ipynb; run `jupytext --sync {notebook.relative_to(ROOT)}`"
    for k, (a, b) in enumerate(zip(text, executed)):
        assert a == b, f"{notebook.name}: cell {k} differs between .md and .ipynb; run `jupytext --sync {notebook.relative_to(ROOT)}`"
    assert jupytext.read(notebook).metadata.get("jupytext", {}).get("formats") == "ipynb,md:myst"
