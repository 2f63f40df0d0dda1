#!/usr/bin/env bash
# The GPU stack, checked on a CPU machine (CI runs it after scripts/test.sh):
#   1. the whole GPU pin set (constraints/gpu.txt) resolves together: `pip install --dry-run`, without the two
#      source-only packages (flash-attn, DeepSpeed), whose metadata needs a CUDA build;
#   2. the quick tests pass with the GPU set's transformers/trl/peft/accelerate (constraints/gpu-test.txt) in a second
#      venv, .venv-gpustack.
# Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# Seeded from .venv when it exists: the same torch through hard links, not a second 4.5 GB copy.
SEED_VENV="${SEED_VENV:-$ROOT/.venv}" STACK=gpu-test VENV=.venv-gpustack "$ROOT/scripts/setup.sh"
PY="$ROOT/.venv-gpustack/bin/python"

echo "[gpu-stack] resolving constraints/gpu.txt (pip --dry-run)"
resolvable="$(mktemp)"
trap 'rm -f "$resolvable"' EXIT
grep -vE '^(flash-attn|deepspeed)==' constraints/gpu.txt > "$resolvable"
PIP_DISABLE_PIP_VERSION_CHECK=1 "$PY" -m pip install -q --dry-run --ignore-installed -r "$resolvable" 2>&1 \
  | grep -v "^WARNING: Location" || true
PIP_DISABLE_PIP_VERSION_CHECK=1 "$PY" -m pip install -q --dry-run --ignore-installed -r "$resolvable" >/dev/null 2>&1 \
  || { echo "[gpu-stack] constraints/gpu.txt does not resolve" >&2; exit 1; }
echo "[gpu-stack] constraints/gpu.txt resolves"

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export FORCE_QWENVL_VIDEO_READER="${FORCE_QWENVL_VIDEO_READER:-decord}"
"$PY" -c 'import torch, transformers, trl, peft; print(f"[gpu-stack] quick tests on torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}, peft {peft.__version__}")'
exec "$PY" -m pytest -q -m "not slow" -p no:cacheprovider "$@"
