#!/usr/bin/env python
"""The one source of every notebook's Colab badge and Colab setup cell.

    python scripts/colab.py           # (re)write the first two cells of intro.ipynb and every chapters/*.ipynb,
                                      # their paired .md, and scripts/colab_data.json
    python scripts/colab.py --check   # exit 1, naming the file, if any of them differs

Each notebook starts with a markdown cell holding an "Open in Colab" badge and a code cell that
installs the book in Colab.  Both are generated here from one template, so editing the setup means
editing this file and re-running it.  The paired MyST .md (jupytext) gets the same two cells.

The setup cell clones only the book's last commit, without the checkpoints (data/checkpoints, most of
the repository's size), and then checks out the checkpoint folders the notebook loads.  Which ones is
found by reading the notebook's code, without running it (``needed_checkpoints``); the lists are written
to scripts/colab_data.json, with every call whose checkpoint could not be worked out.
"""
from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from pathlib import Path

import jupytext
import nbformat
import yaml
from nbformat.corpus.words import generate_corpus_id

REPO_ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = REPO_ROOT / "chapters"
CHECKPOINTS = REPO_ROOT / "data" / "checkpoints"
MANIFEST = REPO_ROOT / "scripts" / "colab_data.json"
CLONE_DIR = "/content/book"


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
             f"/blob/{REPO_BRANCH}/{{path}}")

BADGE_ID, SETUP_ID = "colab-badge", "colab-setup"
BADGE_TAGS = ["colab-badge"]
SETUP_TAGS = ["colab-setup", "remove-input"]

# Does nothing outside Colab, so it prints nothing and leaves no output.  Inside Colab it is safe to run
# again: the clone and the installs are skipped once done, and only missing checkpoints are fetched.
# Colab ships torch, numpy, pandas, altair, ipywidgets, safetensors, tqdm, pillow and transformers, and
# they are deliberately left alone (a reinstall would replace the versions Colab's own tools were built
# with; pyproject.toml's lower bounds are met by them, and scripts/colab_check.sh runs chapters against
# them).  Only nnsight is installed, pinned: its tracing API changes between versions.
# The clone is shallow (--depth 1) and partial (--filter=blob:none: a file's content is downloaded when
# it is checked out), and the sparse patterns check out everything but data/checkpoints, then the folders
# this notebook loads.  Plain config and read-tree rather than `sparse-checkout set --no-cone`, which
# older git (Colab's Ubuntu 22.04 has 2.34) does not know.
SETUP_TEMPLATE = '''\
# Colab setup, written by scripts/colab.py (edit it there). Outside Google Colab it does nothing.
# In Colab it clones the book without its history and without the checkpoints, then checks out the
# checkpoints this page loads. If a load fails because a checkpoint folder is missing, fetch it with
# fetch_checkpoints("NAME") (NAME as under data/checkpoints/), or every one (about 190 MB) with
# !git -C {book} sparse-checkout disable
import sys
if "google.colab" in sys.modules:
    import importlib.util, os, subprocess

    def fetch_checkpoints(*names):
        """Check out data/checkpoints/NAME for each NAME given: its files are downloaded then."""
        with open("{book}/.git/info/sparse-checkout", "a") as patterns:
            patterns.writelines(f"/data/checkpoints/{{name}}/\\n" for name in names)
        subprocess.run(["git", "-C", "{book}", "read-tree", "-mu", "HEAD"], check=True)

    if not os.path.isdir("{book}"):
        subprocess.run("git clone -q --depth 1 --filter=blob:none --no-checkout{branch} {url} {book}", shell=True, check=True)
        subprocess.run(["git", "-C", "{book}", "config", "core.sparseCheckout", "true"], check=True)
        with open("{book}/.git/info/sparse-checkout", "w") as patterns:
            patterns.write("/*\\n!/data/checkpoints/\\n")
    fetch_checkpoints(*[name for name in {checkpoints!r} if not os.path.isdir(f"{book}/data/checkpoints/{{name}}")])
    if importlib.util.find_spec("bindlib") is None or importlib.util.find_spec("nnsight") is None:
        subprocess.run(f"{{sys.executable}} -m pip install -q --no-deps -e {book}", shell=True, check=True)
        subprocess.run(f'{{sys.executable}} -m pip install -q "nnsight==0.8.1"', shell=True, check=True)
    if "{book}" not in sys.path:
        sys.path.insert(0, "{book}")
    os.chdir("{book}")'''


def setup_code(checkpoints: list[str]) -> str:
    return SETUP_TEMPLATE.format(book=CLONE_DIR, url=REPO_URL, branch=CLONE_BRANCH, checkpoints=list(checkpoints))


SETUP_CODE = setup_code([])  # the cell of a notebook that loads no checkpoint


def badge_source(path: str) -> str:
    # A styled link, not Colab's badge image: the built book loads nothing from the network, and a
    # remote image would show as a broken icon offline (the look is in _vendor/book.css, .colab-badge).
    return f'<a class="colab-badge" href="{COLAB_URL.format(path=path)}" target="_blank">Open in Colab</a>'


# ---------------------------------------------------------------- which checkpoints a notebook loads
def checkpoint_folders() -> set[str]:
    return {p.name for p in CHECKPOINTS.iterdir() if (p / "model.json").exists()} if CHECKPOINTS.is_dir() else set()


def _resolvers() -> dict:
    """The bindlib functions that name a checkpoint folder, called with a cell's literal arguments."""
    sys.path.insert(0, str(REPO_ROOT))
    from bindlib.core import profiles
    from bindlib.interp import runs
    from bindlib.experiments.recipes import stage1_dir

    def names(paths):
        return [Path(p["path"] if isinstance(p, dict) else p).name for p in paths]
    return {"checkpoint_dir": lambda *a, **k: [profiles.checkpoint_dir(*a, **k).name],
            "run_tag": lambda *a, **k: [profiles.run_tag(*a, **k)],
            "variant_dir": lambda *a, **k: [runs.variant_dir(*a, **k).name],
            "stage1_dir": lambda *a, **k: [stage1_dir(*a, **k).name],
            "existing_checkpoints": lambda *a, **k: names(runs.existing_checkpoints(*a, **k))}


def _call_name(node: ast.AST) -> str | None:
    func = node.func if isinstance(node, ast.Call) else None
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


def _code(source: str) -> str:
    """A cell's source as Python: IPython's ! and % lines are left out."""
    return "\n".join("" if line.lstrip().startswith(("!", "%")) else line for line in source.splitlines())


def _literal_names(tree: ast.AST, folders: set[str]) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value in folders:
                found.add(node.value)
            found |= {m for m in re.findall(r"data/checkpoints/([\w.-]+)", node.value) if m in folders}
    return found


def helper_checkpoints(folders: set[str]) -> dict[str, set[str]]:
    """bindlib functions that load a checkpoint named in their own code (e.g. an exercise checker that
    loads text_only_cpu_s0), by function name: a notebook that calls one needs that checkpoint too."""
    found: dict[str, set[str]] = {}
    for path in sorted((REPO_ROOT / "bindlib").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names = _literal_names(node, folders)
                if names:
                    found.setdefault(node.name, set()).update(names)
    return found


def needed_checkpoints(nb, folders: set[str] | None = None, helpers: dict | None = None,
                       resolvers: dict | None = None) -> tuple[list[str], list[str]]:
    """(checkpoint folders the notebook's code names, calls whose checkpoint could not be worked out).

    Read, not run: folder names written in the code; calls of checkpoint_dir, run_tag, variant_dir,
    stage1_dir and existing_checkpoints with literal arguments (existing_checkpoints(...)[k] takes the
    k-th only); calls of bindlib functions that name a checkpoint in their own code."""
    folders = checkpoint_folders() if folders is None else folders
    helpers = helper_checkpoints(folders) if helpers is None else helpers
    resolvers = _resolvers() if resolvers is None else resolvers
    found, unresolved = set(), []
    for k, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or is_generated(cell):
            continue
        try:
            tree = ast.parse(_code(cell.source))
        except SyntaxError as err:
            unresolved.append(f"cell {k}: does not parse ({err.msg})")
            continue
        found |= _literal_names(tree, folders)
        indexed = {id(node.value): node.slice.value for node in ast.walk(tree) if isinstance(node, ast.Subscript)
                   and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, int)}
        for node in ast.walk(tree):
            name = _call_name(node)
            if name in helpers:
                found |= helpers[name]
            if name not in resolvers:
                continue
            try:
                args = [ast.literal_eval(a) for a in node.args]
                kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords}
                names = resolvers[name](*args, **kwargs)
                if id(node) in indexed:
                    names = [names[indexed[id(node)]]]
            except Exception:  # an argument that is not a literal, or a call that fails: a person must say
                unresolved.append(f"cell {k}: {ast.unparse(node)}")
                continue
            found |= {n for n in names if n in folders}
    return sorted(found), unresolved


# ---------------------------------------------------------------- the cells
def is_generated(cell) -> bool:
    tags = cell.get("metadata", {}).get("tags", [])
    return BADGE_TAGS[0] in tags or SETUP_TAGS[0] in tags


def expected_cells(path: str, checkpoints=(), old_setup=None) -> list:
    """The badge and setup cells of the notebook at ``path`` (relative to the repository); keeps an old
    setup cell's execution count."""
    badge = nbformat.v4.new_markdown_cell(badge_source(path), id=BADGE_ID, metadata={"tags": list(BADGE_TAGS)})
    setup = nbformat.v4.new_code_cell(setup_code(list(checkpoints)), id=SETUP_ID, metadata={"tags": list(SETUP_TAGS)})
    if old_setup is not None:
        setup.execution_count = old_setup.get("execution_count")
    return [badge, setup]


def problems(nb, path: str, checkpoints=()) -> list[str]:
    """What differs between a notebook's leading cells and what this script would write."""
    want = expected_cells(path, checkpoints)
    found = []
    for position, wanted in enumerate(want):
        if len(nb.cells) <= position:
            found.append(f"cell {position} is missing")
            continue
        cell = nb.cells[position]
        if cell.cell_type != wanted.cell_type or cell.source.strip() != wanted.source:
            found.append(f"cell {position} is not the generated {wanted.id} cell")
        elif cell.get("metadata", {}).get("tags", []) != wanted.metadata["tags"]:
            found.append(f"cell {position} has tags {cell.metadata.get('tags', [])}, expected {wanted.metadata['tags']}")
        elif cell.cell_type == "code" and cell.get("outputs"):
            found.append(f"cell {position} (the setup cell) has outputs; outside Colab it must have none")
    extra = [k for k, cell in enumerate(nb.cells) if k >= len(want) and is_generated(cell)]
    if extra:
        found.append(f"generated cells also appear at positions {extra}")
    return found


def rewrite(nb, path: str, checkpoints=()) -> None:
    """Drop any generated cells, wherever they are, and put fresh ones first."""
    old_setup = next((c for c in nb.cells if SETUP_TAGS[0] in c.get("metadata", {}).get("tags", [])), None)
    kept = [cell for cell in nb.cells if not is_generated(cell)]
    nb.nbformat, nb.nbformat_minor = 4, max(nb.get("nbformat_minor", 5), 5)  # cell ids need nbformat 4.5
    for cell in kept:
        # Every cell needs an id, and a hand-made cell must not hold one of ours.
        if cell.get("id") in (None, BADGE_ID, SETUP_ID):
            cell.id = generate_corpus_id()
    nb.cells = expected_cells(path, checkpoints, old_setup) + kept


def notebook_paths() -> list[Path]:
    """The front page and every chapter: each opens in Colab on its own."""
    return [REPO_ROOT / "intro.ipynb"] + sorted(CHAPTERS.glob("*.ipynb"))


def manifest() -> dict:
    """scripts/colab_data.json: per notebook, the checkpoint folders its setup cell checks out."""
    folders = checkpoint_folders()
    helpers, resolvers = helper_checkpoints(folders), _resolvers()
    notebooks = {}
    for path in notebook_paths():
        needs, unresolved = needed_checkpoints(nbformat.read(path, as_version=4), folders, helpers, resolvers)
        notebooks[path.relative_to(REPO_ROOT).as_posix()] = {"checkpoints": needs, "unresolved": unresolved}
    return {"about": "Written by scripts/colab.py from the notebooks' code (read, not run): the folders under "
                     "data/checkpoints that each notebook's Colab setup cell checks out. 'unresolved' lists calls "
                     "whose checkpoint could not be worked out; a notebook with any needs a look.",
            "notebooks": notebooks}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report differences and exit 1 instead of writing")
    args = parser.parse_args(argv)
    failed = False
    data = manifest()
    text = json.dumps(data, indent=2) + "\n"
    if not MANIFEST.exists() or MANIFEST.read_text() != text:
        if args.check:
            failed = True
            print(f"{MANIFEST.relative_to(REPO_ROOT)} differs from what the notebooks load. Run: python scripts/colab.py",
                  file=sys.stderr)
        else:
            MANIFEST.write_text(text)
            print(f"rewrote {MANIFEST.relative_to(REPO_ROOT)}")
    for path in notebook_paths():
        rel = path.relative_to(REPO_ROOT).as_posix()
        entry = data["notebooks"][rel]
        for line in entry["unresolved"]:
            print(f"{rel}: {line}: its checkpoint could not be worked out; check that the page works in Colab",
                  file=sys.stderr)
        md = path.with_suffix(".md")
        nb = nbformat.read(path, as_version=4)
        found = problems(nb, rel, entry["checkpoints"])
        md_found = problems(jupytext.read(md), rel, entry["checkpoints"]) if md.exists() else [f"{md.name} is missing"]
        if not found and not md_found:
            continue
        if args.check:
            failed = True
            for name, what in ((rel, found), (md.relative_to(REPO_ROOT).as_posix(), md_found)):
                if what:
                    print(f"{name}: {'; '.join(what)}. Run: python scripts/colab.py", file=sys.stderr)
            continue
        rewrite(nb, rel, entry["checkpoints"])
        nbformat.validate(nb)
        nbformat.write(nb, path)
        # The paired .md is written from the notebook, as `jupytext --sync` would: both hold the same cells.
        jupytext.write(jupytext.read(path), md, fmt="md:myst")
        print(f"rewrote the Colab cells of {rel} and {md.relative_to(REPO_ROOT).as_posix()}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
