"""The student edition: the same book with every exercise solution removed.

``python -m bindlib student-book`` copies the book's sources (configuration, table of contents, front
matter, chapters, bibliography, static files) into a folder outside git (default ``_student/``) and drops
every cell tagged ``solution`` from each notebook and from its paired MyST source, so the copy builds
with ``jupyter-book build _student`` and each exercise keeps its stub and its checker.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import nbformat

REPO_ROOT = Path(__file__).resolve().parents[2]
SOLUTION_TAG = "solution"
# What the book build reads, besides the pages the TOC lists (each copied when present).
BOOK_FILES = ("_config.yml", "_toc.yml", "references.bib", "bibliography.md")
BOOK_DIRS = ("_ext", "_vendor")  # the build's Sphinx extension and vendored JavaScript


def toc_pages(root: Path = REPO_ROOT) -> list[str]:
    """Every page of _toc.yml (root and chapters), as paths without suffix."""
    import yaml

    toc = yaml.safe_load((root / "_toc.yml").read_text())
    pages, todo = [toc["root"]], list(toc.get("chapters", [])) + [c for p in toc.get("parts", []) for c in p["chapters"]]
    while todo:
        entry = todo.pop(0)
        if "file" in entry:
            pages.append(entry["file"])
        todo += entry.get("sections", [])
    return pages


def strip_solutions(nb) -> int:
    """Remove solution cells in place; return how many."""
    keep = [c for c in nb.cells if SOLUTION_TAG not in c.metadata.get("tags", [])]
    removed = len(nb.cells) - len(keep)
    nb.cells = keep
    return removed


def _copy_page(src: Path, dst: Path) -> int:
    removed = 0
    for suffix in (".ipynb", ".md"):
        path = src.with_suffix(suffix)
        if not path.exists():
            continue
        target = dst.with_suffix(suffix)
        target.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".ipynb":
            nb = nbformat.read(path, as_version=4)
            removed += strip_solutions(nb)
            nbformat.write(nb, target)
        elif src.with_suffix(".ipynb").exists():  # a paired MyST source: strip it the same way
            import jupytext

            nb = jupytext.read(path)
            strip_solutions(nb)
            jupytext.write(nb, target, fmt="md:myst")
        else:
            shutil.copy2(path, target)
    return removed


def write_student_book(out: Path | str = REPO_ROOT / "_student", root: Path = REPO_ROOT) -> dict:
    """Write the student edition to ``out`` (replaced atomically). Returns {pages, solutions_removed, out}."""
    out = Path(out).resolve()
    if out == root.resolve() or root.resolve().is_relative_to(out):
        raise ValueError(f"refusing to write the student edition over the repository itself ({out}); pick a new folder, "
                         f"e.g. --out _student.")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".student-", dir=out.parent))
    try:
        for name in BOOK_FILES:
            if (root / name).exists():
                shutil.copy2(root / name, tmp / name)
        for name in BOOK_DIRS:
            if (root / name).is_dir():
                shutil.copytree(root / name, tmp / name)
        pages = toc_pages(root)
        removed = sum(_copy_page(root / page, tmp / page) for page in pages)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"pages": len(pages), "solutions_removed": removed, "out": out}
