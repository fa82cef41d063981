#!/usr/bin/env bash
# Command one: set up the environment, then build the book's HTML into _build/html.
# The chapters are committed executed, so the build runs no chapter code; it fails
# (non-zero exit) on any Sphinx warning, a broken reference included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh book
if [ "${BINDLIB_NO_VENV:-0}" != "1" ]; then
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi
python scripts/colab.py --check
jupyter-book build . -W -n --keep-going
echo "The book's HTML is in $(pwd)/_build/html (open _build/html/index.html)."
