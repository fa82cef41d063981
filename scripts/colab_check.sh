#!/usr/bin/env bash
# Run chapters as Colab would, with Colab's package versions (scripts/colab_runtime.txt). Slow: it
# executes whole chapters, so it is not part of CI or scripts/test.sh; run it after changing the Colab
# setup cell (scripts/colab.py), a dependency, or after Colab's runtime moves on.
#   bash scripts/colab_check.sh                          # chapters/01_task.ipynb and chapters/05_interchange.ipynb
#   bash scripts/colab_check.sh chapters/07_probes.ipynb # any notebooks
# It checks the committed HEAD (commit first), in /tmp/colab_check; the report is /tmp/colab_check/report.json.
# Environment: COLAB_ENV (the virtual environment, default /tmp/colabenv, made once and reused),
# COLAB_PYTHON (default python3.12, Colab's; else python3), COLAB_TORCH (default Colab's pin, e.g.
# COLAB_TORCH=torch==2.13.0 for a CPU wheel on hand), COLAB_REV (default HEAD).
set -euo pipefail
cd "$(dirname "$0")/.."
env_dir=${COLAB_ENV:-/tmp/colabenv}
python=${COLAB_PYTHON:-}
if [ -z "$python" ]; then
  for candidate in python3.12 python3; do  # a version manager's shim may exist and still not run
    if "$candidate" -c 'import venv' 2>/dev/null; then python=$candidate; break; fi
  done
fi
if [ ! -x "$env_dir/bin/python" ]; then
  echo "colab_check: making $env_dir with $("$python" --version)" >&2
  "$python" -m venv "$env_dir"
fi
pins=$(grep -v '^#' scripts/colab_runtime.txt | grep -v '^torch==')
torch=${COLAB_TORCH:-$(grep '^torch==' scripts/colab_runtime.txt)}
# Colab's versions, what the setup cell installs (nnsight), bindlib's other needs, and the runner.
# shellcheck disable=SC2086
"$env_dir/bin/python" -m pip install -q "$torch" $pins "nnsight==0.8.1" "pillow>=10.0" nbclient nbformat
"$env_dir/bin/python" -c 'import sys; v = sys.version_info[:2]; v == (3, 12) or print(f"colab_check: Python {v[0]}.{v[1]} here, Colab has 3.12", file=sys.stderr)'
[ $# -gt 0 ] || set -- chapters/01_task.ipynb chapters/05_interchange.ipynb
PYDEVD_DISABLE_FILE_VALIDATION=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$env_dir/bin/python" scripts/colab_check.py --rev "${COLAB_REV:-HEAD}" "$@"
