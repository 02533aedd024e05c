#!/usr/bin/env bash
# Rebuilds the app the way a Hugging Face Space (Gradio SDK) does, in a fresh virtualenv, and checks it starts:
#   pip install -r pre-requirements.txt; pip install -r requirements.txt  (default pip: sam2 built isolated)
# then imports app.py and builds the page. Usage: bash scripts/space_build.sh [VENV] (default /tmp/space-venv).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-/tmp/space-venv}"
rm -rf "$VENV"
start=$(date +%s)
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet --no-cache-dir -r pre-requirements.txt
"$VENV/bin/python" -m pip install --quiet --no-cache-dir -r requirements.txt
echo "installed in $(( $(date +%s) - start )) s"
GRADIO_ANALYTICS_ENABLED=False "$VENV/bin/python" -c "
import app, sam2, torch
demo = app.build_demo()
print('space build ok: sam2', sam2.__file__, '| torch', torch.__version__, '| page with', len(demo.fns), 'events')
"
