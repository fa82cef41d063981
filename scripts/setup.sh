#!/usr/bin/env bash
# Idempotent environment setup shared by the two README commands.
# Creates .venv (unless BINDLIB_NO_VENV=1), installs torch only if none is importable
# (pinned to the CPU build so pip never pulls CUDA wheels), then bindlib with extras.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-book,test}"
if [ "${BINDLIB_NO_VENV:-0}" != "1" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi
python -m pip install -q --upgrade pip >/dev/null
if ! python -c "import torch" 2>/dev/null; then
  python -m pip install -q "torch==2.13.0"
fi
python -m pip install -q -e ".[${extras}]" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
python -m ipykernel install --sys-prefix --name python3 >/dev/null 2>&1 || true
# The test setup also needs a headless browser for tests/test_browser.py: Debian's chromium,
# installed quietly when missing and when apt-get can be run (as root, or with sudo without a password).
case ",$extras," in
  *,test,*)
    if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
      if command -v apt-get >/dev/null 2>&1; then
        sudo=""; [ "$(id -u)" = "0" ] || sudo="sudo -n"
        { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium; } \
          >/dev/null 2>&1 || echo "setup: could not install chromium (apt-get install chromium); tests/test_browser.py will fail without it" >&2
      else
        echo "setup: no chromium and no apt-get: install Chromium for tests/test_browser.py" >&2
      fi
    fi
    ;;
esac
