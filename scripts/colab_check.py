"""Run notebooks the way Colab does, in an environment with Colab's package versions (scripts/colab_check.sh
makes it and calls this with its Python; not part of CI: it executes whole chapters).

For each notebook: the Colab setup cell is run as written, with two substitutions: the GitHub URL becomes
a local mirror of the commit under test (served with partial clone allowed, as GitHub does) and
/content/book a fresh folder. A first cell makes ``google.colab`` importable, so the setup cell takes its
Colab branch: shallow partial clone, sparse checkout of the notebook's checkpoints, ``pip install -e``.
Then every cell runs. A missing checkpoint, a package API that Colab's versions lack, or a setup step
that fails shows up as a failed cell. Outputs are compared with the committed ones after the
substitutions of tests/nbval_sanitize.cfg, for information only (html, widget and stderr outputs skipped).

    python scripts/colab_check.py [--rev REV] [--workdir DIR] NOTEBOOK...
"""
from __future__ import annotations

import argparse
import configparser
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO_ROOT = Path(__file__).resolve().parents[1]
GITHUB = re.compile(r"https://github\.com/[\w.-]+/[\w.-]+")
FAKE_COLAB = ('import sys, types\nsys.modules["google.colab"] = types.ModuleType("google.colab")\n'
              'print("kernel:", sys.executable)')
WHERE_FROM = 'import bindlib, os\nprint(os.path.dirname(os.path.dirname(os.path.abspath(bindlib.__file__))))'
COMPARED = ("text/plain",)


def git(*args, cwd=REPO_ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def mirror(rev: str, workdir: Path) -> str:
    """A bare copy of the repository whose HEAD is ``rev``, serving partial clones; its file:// URL."""
    origin = workdir / "origin.git"
    if origin.exists():
        shutil.rmtree(origin)
    git("clone", "-q", "--bare", str(REPO_ROOT), str(origin))
    commit = git("rev-parse", rev)
    if subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=origin).returncode:
        git("fetch", "-q", str(REPO_ROOT), commit, cwd=origin)
    git("update-ref", "refs/heads/colab-check", commit, cwd=origin)
    git("symbolic-ref", "HEAD", "refs/heads/colab-check", cwd=origin)
    git("config", "uploadpack.allowFilter", "true", cwd=origin)
    git("config", "uploadpack.allowAnySHA1InWant", "true", cwd=origin)
    return f"file://{origin}"


def sanitizers() -> list[tuple[re.Pattern, str]]:
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(REPO_ROOT / "tests" / "nbval_sanitize.cfg")
    return [(re.compile(cfg[s]["regex"]), cfg[s]["replace"]) for s in cfg.sections()]


def text_of(outputs, subs) -> str:
    parts = []
    for out in outputs:
        if out.get("output_type") == "stream" and out.get("name") == "stdout":
            parts.append(out.get("text", ""))
        elif out.get("output_type") in ("execute_result", "display_data"):
            parts += [str(out.get("data", {}).get(k, "")) for k in COMPARED]
        elif out.get("output_type") == "error":
            parts.append(f"{out.get('ename')}: {out.get('evalue')}")
    text = "".join(parts)
    for pattern, replace in subs:
        text = pattern.sub(replace, text)
    return text.strip()


def check(path: Path, url: str, workdir: Path, timeout: int) -> dict:
    name = path.stem
    book = workdir / name / "book"
    if book.parent.exists():
        shutil.rmtree(book.parent)
    book.parent.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "pip", "uninstall", "-q", "-y", "bindlib"], capture_output=True)
    committed = nbformat.read(path, as_version=4)
    nb = nbformat.read(path, as_version=4)
    setup = next(c for c in nb.cells if "colab-setup" in c.metadata.get("tags", []))
    setup.source = GITHUB.sub(url, setup.source).replace("/content/book", str(book))
    nb.cells.insert(0, nbformat.v4.new_code_cell(FAKE_COLAB))
    nb.cells.append(nbformat.v4.new_code_cell(WHERE_FROM))
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    start = time.time()
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(book.parent)}})
    try:
        client.execute()
        crashed = None
    except Exception as err:  # the kernel died, or a cell ran past the timeout
        crashed = f"{type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else ''}"
    nbformat.write(nb, workdir / name / f"{name}.ipynb")
    subs = sanitizers()
    failed, differs = [], []
    for k, (cell, old) in enumerate(zip(nb.cells[1:-1], committed.cells)):
        if cell.cell_type != "code":
            continue
        errors = [o for o in cell.outputs if o.get("output_type") == "error"]
        if errors:
            first = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
            failed.append({"cell": k, "first_line": first, "error": f"{errors[0]['ename']}: {errors[0]['evalue']}"[:500]})
        elif text_of(cell.outputs, subs) != text_of(old.outputs, subs):
            differs.append(k)
    def printed(cell) -> str:
        return "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream").strip()
    kernel, bindlib_from = printed(nb.cells[0]), printed(nb.cells[-1])
    return {"notebook": path.relative_to(REPO_ROOT).as_posix(), "seconds": round(time.time() - start),
            "kernel": kernel, "bindlib_imported_from": bindlib_from, "clone_is_the_setup_cells": bindlib_from == str(book),
            "crashed": crashed, "failed_cells": failed, "output_differs_in_cells": differs,
            "checkpoints_checked_out": sorted(p.name for p in (book / "data" / "checkpoints").glob("*"))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--rev", default="HEAD", help="the commit to check (committed code only; default HEAD)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/colab_check"))
    parser.add_argument("--timeout", type=int, default=3600, help="seconds one cell may run")
    args = parser.parse_args(argv)
    if git("status", "--porcelain", "--untracked-files=no"):
        print(f"note: the working tree has uncommitted changes; the check runs the commit {args.rev}", file=sys.stderr)
    args.workdir.mkdir(parents=True, exist_ok=True)
    url = mirror(args.rev, args.workdir)
    versions = subprocess.run([sys.executable, "-m", "pip", "list", "--format", "freeze"], capture_output=True,
                              text=True).stdout.split()
    report = {"rev": git("rev-parse", args.rev), "python": sys.version.split()[0], "git": git("--version"),
              "packages": versions, "notebooks": []}
    for path in args.notebooks:
        result = check(path.resolve(), url, args.workdir, args.timeout)
        report["notebooks"].append(result)
        print(json.dumps(result, indent=1), flush=True)
    (args.workdir / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"report: {args.workdir / 'report.json'}; executed notebooks under {args.workdir}")
    return 1 if any(r["failed_cells"] or r["crashed"] or not r["clone_is_the_setup_cells"]
                    for r in report["notebooks"]) else 0


if __name__ == "__main__":
    sys.exit(main())
