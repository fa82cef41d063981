#!/usr/bin/env bash
# Command two: set up the environment, then run every test: the unit tests, nbval on every chapter
# and the built book opened in headless Chromium (tests/test_browser.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh book,test  # book: tests/test_browser.py builds the book
if [ "${BINDLIB_NO_VENV:-0}" != "1" ]; then
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi
python scripts/colab.py --check
# One torch thread per worker: two workers share the cores without oversubscribing them.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# --dist loadfile keeps each notebook's cells on one worker, in order.
python -m pytest -p no:cacheprovider -n "${BINDLIB_TEST_WORKERS:-2}" --dist loadfile \
  --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg \
  tests chapters intro.ipynb "$@"
