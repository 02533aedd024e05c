#!/usr/bin/env bash
# Creates .venv and installs Grounded SAM 2 into it.
#   bash scripts/setup.sh          runtime dependencies (to run the app and the CLI)
#   bash scripts/setup.sh --dev    plus test dependencies
# Settings: PYTHON (default python3), VENV (default .venv), SAM2_BUILD_CUDA (default 0: skip
# SAM2's optional CUDA extension; set 1 on a GPU machine with nvcc to build it).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
DEV=0
for arg in "$@"; do
  case "$arg" in
    --dev) DEV=1 ;;
    *) echo "usage: bash scripts/setup.sh [--dev]" >&2; exit 2 ;;
  esac
done

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install --quiet --upgrade pip setuptools wheel
# torch first: the sam2 sdist compiles against it, so it is built without build isolation
# (an isolated build would fetch a second, multi-GB torch just to build).
"$PY" -m pip install --quiet "torch>=2.5.1" "torchvision>=0.20.1"
SAM2_BUILD_CUDA="${SAM2_BUILD_CUDA:-0}" "$PY" -m pip install --quiet --no-build-isolation -r requirements.txt
if [ "$DEV" = 1 ]; then
  "$PY" -m pip install --quiet -r requirements-dev.txt
fi
"$PY" -c "import grounded_sam, torch, sam2, transformers; print('grounded_sam ready: torch', torch.__version__, '| transformers', transformers.__version__)"
