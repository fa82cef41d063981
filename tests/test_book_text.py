"""The book's pages read as a book: no talk of how it was made, no work-item numbers, no file or module
that does not exist, and no NaN, traceback or over-long computed sentence in a saved output.

The checks run over every page of the table of contents (the jupytext ``.md`` sources and their saved
``.ipynb`` outputs) and, where the book has been built, over its HTML.
"""
from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

# Pages skipped by every test below (none).
NOT_YET_CHECKED: tuple = ()

# Talk of how the book was made, rather than of what it measures.
TRACES = [
    r"\bour machines?\b", r"\bdifferent machines\b", r"\bits machine\b", r"\bmachines? (this book|it) was built on\b",
    r"\bas results land\b", r"\bresumable\b", r"\bcannot download\b", r"\bbudget CI\b", r"\bCI allows\b",
    r"\bSPEC\.md\b", r"\bissue #?\d+\b", r"\bwork items?\b", r"\bworktrees?\b", r"\brun folders?\b",
    r"\bfolder (went|was lost)\b", r"\blost run\b", r"\bfirst run \(lost\)", r"\(rerun\)", r"\bstill training\b",
]
TRACE = re.compile("|".join(TRACES), re.IGNORECASE)
MODULE = re.compile(r"\bbindlib(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
# A repository path in backticks: a top-level folder of the repository, then a path without placeholders.
PATH = re.compile(r"(?<!\})`((?:data|tests|scripts|bindlib|chapters)/[^`\s]*)`")
MAX_COMPUTED = 300  # characters: a computed sentence longer than this belongs in a table


def pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    names = [toc["root"]] + [c["file"] for c in toc["chapters"]]
    return [n for n in names if n not in NOT_YET_CHECKED]


def sources() -> list[Path]:
    return [ROOT / f"{n}.md" for n in pages() if (ROOT / f"{n}.md").exists()]


def notebooks() -> list[Path]:
    return [ROOT / f"{n}.ipynb" for n in pages() if (ROOT / f"{n}.ipynb").exists()]


def _prose(text: str) -> str:
    """The page without its Colab setup cell (generated, and about the runtime, not the results)."""
    return re.sub(r"```\{code-cell\}[^\n]*\n:tags: \[colab-setup.*?```", "", text, flags=re.S)


def imports(name: str) -> bool:
    """Whether ``name`` (bindlib.a.b.c) is a module, or an attribute of the longest module prefix."""
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:k]))
        except ImportError:
            continue
        try:
            for attr in parts[k:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


def test_the_check_sees_every_page():
    assert "intro" in pages() and "glossary" in pages()
    assert len(sources()) >= 8


@pytest.mark.parametrize("path", sources(), ids=lambda p: p.stem)
def test_no_traces_of_how_the_book_was_made(path):
    text = _prose(path.read_text())
    found = sorted({m.group(0) for m in TRACE.finditer(text)})
    assert not found, f"{path.name}: {found}"


@pytest.mark.parametrize("path", sources(), ids=lambda p: p.stem)
def test_every_bindlib_name_imports(path):
    names = {m.group(0).rstrip(".") for m in MODULE.finditer(_prose(path.read_text()))}
    missing = sorted(n for n in names if not imports(n))
    assert not missing, f"{path.name} names what does not import: {missing}"


@pytest.mark.parametrize("path", sources(), ids=lambda p: p.stem)
def test_every_repository_path_exists(path):
    missing = []
    for m in PATH.finditer(_prose(path.read_text())):
        rel = m.group(1).rstrip(".,;:")
        if re.search(r"[<>{}*]|\bS\b|NAME|_s[A-Z]\b|\.\.\.", rel):  # a pattern or placeholder, not a path
            continue
        if not (ROOT / rel).exists():
            missing.append(rel)
    assert not missing, f"{path.name} names files that do not exist: {missing}"


def _outputs(nb_path: Path):
    nb = json.loads(nb_path.read_text())
    for k, cell in enumerate(nb["cells"]):
        for out in cell.get("outputs", []):
            yield k, cell, out


def _texts(out: dict) -> list[str]:
    if out.get("output_type") == "stream":
        return ["".join(out.get("text", ""))]
    data = out.get("data", {})
    return ["".join(data[m]) for m in ("text/plain", "text/markdown", "text/html") if m in data]


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.stem)
def test_no_error_traceback_or_nan_in_saved_outputs(path):
    bad = []
    for k, cell, out in _outputs(path):
        if out.get("output_type") == "error":
            bad.append(f"cell {k}: error {out.get('ename')}")
        for text in _texts(out):
            if "Traceback (most recent call last)" in text:
                bad.append(f"cell {k}: traceback")
            if re.search(r"\bNaN\b|\bnan%", text):
                bad.append(f"cell {k}: NaN")
    assert not bad, f"{path.name}: {bad}"


def _units(text: str) -> list[str]:
    """The paragraphs of printed text: a blank line or an unindented line starts a new one, and an indented
    line continues the one before (wrapped text keeps its continuation lines indented)."""
    units: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            units.append("")
        elif line[:1].isspace() and units and units[-1]:
            units[-1] += " " + line.strip()
        else:
            units.append(line.strip())
    return [u for u in units if u]


def longest_computed(nb_path: Path) -> int:
    """The length of the longest printed or displayed paragraph of a notebook's saved outputs."""
    lengths = [0]
    for _, _, out in _outputs(nb_path):
        if out.get("output_type") == "stream" or "text/markdown" in out.get("data", {}):
            text = _texts(out)[0] if out.get("output_type") == "stream" else "".join(out["data"]["text/markdown"])
            lengths += [len(u) for u in _units(text) if ". " in u or u.endswith(".")]
    return max(lengths)


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.stem)
def test_no_long_computed_sentence(path):
    """Printed or displayed prose: no paragraph over MAX_COMPUTED characters (tables and code-like lines aside)."""
    long = []
    for k, cell, out in _outputs(path):
        if out.get("output_type") == "stream" or "text/markdown" in out.get("data", {}):
            text = _texts(out)[0] if out.get("output_type") == "stream" else "".join(out["data"]["text/markdown"])
            for joined in _units(text):
                if len(joined) > MAX_COMPUTED and ". " in joined:
                    long.append(f"cell {k}: {len(joined)} characters: {joined[:80]}...")
    assert not long, f"{path.name}: {long}"


@pytest.mark.skipif(not (ROOT / "_build" / "html").exists(), reason="the book has not been built")
def test_built_pages_have_no_traces():
    found = {}
    for name in pages():
        page = ROOT / "_build" / "html" / f"{name}.html"
        sources = [ROOT / f"{name}{ext}" for ext in (".md", ".ipynb") if (ROOT / f"{name}{ext}").exists()]
        if not page.exists() or any(page.stat().st_mtime < src.stat().st_mtime for src in sources):
            continue  # not built, or built from an older source: nothing to say of today's page
        text = re.sub(r"<[^>]+>", " ", page.read_text())
        text = re.sub(r"Colab setup.*?os\.chdir\(\S+\)", " ", text, flags=re.S)
        hits = sorted({m.group(0) for m in TRACE.finditer(text)})
        if hits:
            found[name] = hits
    assert not found, found


def test_the_trace_check_catches_what_it_should():
    for text in ("its folder went with its machine", "the two ran on different machines", "so it shrinks as results land",
                 "seed 2's long run is resumable", "Our machines cannot download the weights", "see SPEC.md §1",
                 "added in issue 12", "inside the 10-minute budget CI allows it"):
        assert TRACE.search(text), text
    assert imports("bindlib.core.task.sample_batch") and not imports("bindlib.paper") and not imports("bindlib.task.nope")
