#!/usr/bin/env bash
# Create the project's virtual environment (.venv at the repo root) if missing and install everything.
# Idempotent: a second run checks a stamp of the install inputs and returns in about a second.
#
#   scripts/setup.sh            # torch + torchvision, then `pip install -e .[dev]`
#   EXTRAS=dev,gpu scripts/setup.sh   # on a CUDA machine: flash-attn, vLLM, DeepSpeed too
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"
EXTRAS="${EXTRAS:-dev}"
# torch first, pinned: the CPU machines here carry these two wheels on disk (see ENVIRONMENT.md).
TORCH_SPEC="torch==2.14.1 torchvision==0.29.1"

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"

stamp_file="$VENV/.mmreward-install-stamp"
stamp="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/setup.sh" | sha256sum | cut -d' ' -f1)-$EXTRAS"
if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ]; then
  echo "[setup] $VENV is up to date"
  exit 0
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1
"$PY" -m pip install -q --upgrade "pip>=24" setuptools wheel
if ! "$PY" -c "import torch, torchvision; assert torch.__version__.startswith('2.14.1')" 2>/dev/null; then
  echo "[setup] installing $TORCH_SPEC"
  # shellcheck disable=SC2086
  "$PY" -m pip install -q $TORCH_SPEC
fi
echo "[setup] installing mmreward[$EXTRAS] (editable)"
"$PY" -m pip install -q -e "$ROOT[$EXTRAS]"
echo "$stamp" > "$stamp_file"
echo "[setup] done: $("$PY" -c 'import torch, transformers, trl; print(f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}")')"
