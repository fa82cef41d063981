#!/bin/bash
# Rebuild, execute and finish chapters 5-7 (see scripts/build_interp_chapters.py).
set -euo pipefail
cd "$(dirname "$0")/.."
CH="chapters/05_interchange.ipynb chapters/06_knockouts.ipynb chapters/07_probes.ipynb"
python scripts/build_interp_chapters.py
for f in $CH; do
    OMP_NUM_THREADS=1 jupyter execute --inplace "$f"
done
python scripts/build_interp_chapters.py --strip
# the Colab cells, from scripts/colab.py, on these three chapters only
python - $CH <<'PY'
import sys
from pathlib import Path
import nbformat
sys.path.insert(0, "scripts")
import colab
for path in map(Path, sys.argv[1:]):
    nb = nbformat.read(path, as_version=4)
    if colab.problems(nb, path.name):
        colab.rewrite(nb, path.name)
        nbformat.validate(nb)
        nbformat.write(nb, path)
    assert not colab.problems(nbformat.read(path, as_version=4), path.name), path
PY
