#!/usr/bin/env bash
# Re-execute chapters after editing their MyST source: sync each .md into its paired .ipynb,
# run it in place (one torch thread), drop per-cell timestamps so diffs stay small.
#   bash scripts/execute_chapters.sh chapters/05_interchange.md [more .md or .ipynb files]
set -euo pipefail
cd "$(dirname "$0")/.."
nb=""
trap '[ -n "$nb" ] && echo "execute_chapters: $nb did not execute (the traceback is above); its outputs were not written" >&2' ERR
for f in "$@"; do
  nb="${f%.*}.ipynb"
  jupytext --sync "${f%.*}.md"
  OMP_NUM_THREADS=1 jupyter execute --inplace "$nb"
  python - "$nb" <<'PY'
import sys
import nbformat
path = sys.argv[1]
nb = nbformat.read(path, as_version=4)
for cell in nb.cells:
    cell.metadata.pop("execution", None)
nbformat.write(nb, path)
PY
  jupytext --sync "$nb" >/dev/null
done
