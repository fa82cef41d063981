#!/usr/bin/env python
"""The one source of every chapter's Colab badge and Colab setup cell.

    python scripts/colab.py           # (re)write the first two cells of every chapters/*.ipynb
    python scripts/colab.py --check   # exit 1, naming the file, if any chapter differs

Each chapter starts with a markdown cell holding an "Open in Colab" badge and a
code cell that installs the book in Colab.  Both are generated here from one
template, so editing the setup means editing this file and re-running it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
import yaml
from nbformat.corpus.words import generate_corpus_id

REPO_ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = REPO_ROOT / "chapters"


def repository(config_path: Path = REPO_ROOT / "_config.yml") -> tuple[str, str]:
    """The book's repository URL and branch: the one place they are written is _config.yml."""
    repo = (yaml.safe_load(config_path.read_text()) or {}).get("repository") or {}
    url, branch = str(repo.get("url", "")).rstrip("/"), str(repo.get("branch", "main"))
    if not url.startswith("https://github.com/") or len(url.split("/")) != 5:
        raise SystemExit(f"{config_path}: repository.url must be https://github.com/OWNER/NAME, got {url!r}. "
                         "Fix it there; every chapter's Colab cells are made from it.")
    return url, branch


REPO_URL, REPO_BRANCH = repository()
CLONE_BRANCH = "" if REPO_BRANCH == "main" else f" --branch {REPO_BRANCH}"  # main is what a clone gets anyway
COLAB_URL = (f"https://colab.research.google.com/github/{REPO_URL.removeprefix('https://github.com/')}"
             f"/blob/{REPO_BRANCH}/chapters/{{name}}")

BADGE_ID, SETUP_ID = "colab-badge", "colab-setup"
BADGE_TAGS = ["colab-badge"]
SETUP_TAGS = ["colab-setup", "remove-input"]

# Does nothing outside Colab, so it prints nothing and leaves no output.  Inside
# Colab it is safe to run again: the clone and the installs are skipped once done.
# torch, numpy and ipywidgets come with Colab and are deliberately left alone: the book's widgets
# need only ipywidgets 7.6 or newer, so Colab's own copy (7.x or 8.x) is fine.
SETUP_CODE = f'''\
# Colab setup, written by scripts/colab.py (edit it there). Outside Google Colab it does nothing.
import sys
if "google.colab" in sys.modules:
    import importlib.util, os, subprocess
    if not os.path.isdir("/content/book"):
        subprocess.run("git clone --depth 1{CLONE_BRANCH} {REPO_URL} /content/book", shell=True, check=True)
    if importlib.util.find_spec("bindlib") is None or importlib.util.find_spec("nnsight") is None:
        subprocess.run(f"{{sys.executable}} -m pip install -q --no-deps -e /content/book", shell=True, check=True)
        subprocess.run(f'{{sys.executable}} -m pip install -q "nnsight==0.8.1" "safetensors>=0.4" "altair>=5" "tqdm>=4.60"', shell=True, check=True)
    if "/content/book" not in sys.path:
        sys.path.insert(0, "/content/book")
    os.chdir("/content/book")'''


def badge_source(name: str) -> str:
    # A styled link, not Colab's badge image: the built book loads nothing from the network, and a
    # remote image would show as a broken icon offline (the look is in _vendor/book.css, .colab-badge).
    return f'<a class="colab-badge" href="{COLAB_URL.format(name=name)}" target="_blank">Open in Colab</a>'


def is_generated(cell) -> bool:
    tags = cell.get("metadata", {}).get("tags", [])
    return BADGE_TAGS[0] in tags or SETUP_TAGS[0] in tags


def expected_cells(name: str, old_setup=None) -> list:
    """The badge and setup cells for chapter ``name``; keeps an old setup cell's execution count."""
    badge = nbformat.v4.new_markdown_cell(badge_source(name), id=BADGE_ID, metadata={"tags": list(BADGE_TAGS)})
    setup = nbformat.v4.new_code_cell(SETUP_CODE, id=SETUP_ID, metadata={"tags": list(SETUP_TAGS)})
    if old_setup is not None:
        setup.execution_count = old_setup.get("execution_count")
    return [badge, setup]


def problems(nb, name: str) -> list[str]:
    """What differs between a notebook's leading cells and what this script would write."""
    want = expected_cells(name)
    found = []
    for position, wanted in enumerate(want):
        if len(nb.cells) <= position:
            found.append(f"cell {position} is missing")
            continue
        cell = nb.cells[position]
        if cell.cell_type != wanted.cell_type or cell.source != wanted.source:
            found.append(f"cell {position} is not the generated {wanted.id} cell")
        elif cell.get("metadata", {}).get("tags", []) != wanted.metadata["tags"]:
            found.append(f"cell {position} has tags {cell.metadata.get('tags', [])}, expected {wanted.metadata['tags']}")
        elif cell.cell_type == "code" and cell.outputs:
            found.append(f"cell {position} (the setup cell) has outputs; outside Colab it must have none")
    extra = [k for k, cell in enumerate(nb.cells) if k >= len(want) and is_generated(cell)]
    if extra:
        found.append(f"generated cells also appear at positions {extra}")
    return found


def rewrite(nb, name: str) -> None:
    """Drop any generated cells, wherever they are, and put fresh ones first."""
    old_setup = next((c for c in nb.cells if SETUP_TAGS[0] in c.get("metadata", {}).get("tags", [])), None)
    kept = [cell for cell in nb.cells if not is_generated(cell)]
    nb.nbformat, nb.nbformat_minor = 4, max(nb.get("nbformat_minor", 5), 5)  # cell ids need nbformat 4.5
    for cell in kept:
        # Every cell needs an id, and a hand-made cell must not hold one of ours.
        if cell.get("id") in (None, BADGE_ID, SETUP_ID):
            cell.id = generate_corpus_id()
    nb.cells = expected_cells(name, old_setup) + kept


def chapter_paths() -> list[Path]:
    return sorted(CHAPTERS.glob("*.ipynb"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report differences and exit 1 instead of writing")
    args = parser.parse_args(argv)
    failed = False
    for path in chapter_paths():
        nb = nbformat.read(path, as_version=4)
        found = problems(nb, path.name)
        if not found:
            continue
        if args.check:
            failed = True
            print(f"{path.relative_to(REPO_ROOT)}: {'; '.join(found)}. Run: python scripts/colab.py", file=sys.stderr)
        else:
            rewrite(nb, path.name)
            nbformat.validate(nb)
            nbformat.write(nb, path)
            print(f"rewrote the Colab cells of {path.relative_to(REPO_ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
