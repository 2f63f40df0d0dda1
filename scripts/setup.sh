#!/usr/bin/env bash
# Create the project's virtual environment (.venv at the repo root) if missing and install everything.
# Idempotent: a second run checks a stamp of the install inputs and returns in about a second.
#
#   scripts/setup.sh                 # the CPU stack (constraints/cpu.txt): torch + torchvision, then `pip install -e .[dev]`
#   scripts/setup.sh --gpu           # on a CUDA machine: the GPU stack (constraints/gpu.txt): vLLM, flash-attn, DeepSpeed
#   STACK=gpu-test VENV=.venv-gpustack scripts/setup.sh   # the GPU stack's libraries on CPU torch (CI's second run)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK="${STACK:-cpu}"
if [ "${1:-}" = "--gpu" ]; then STACK=gpu; fi
case "$STACK" in
  cpu) EXTRAS="${EXTRAS:-dev}"; CONSTRAINTS="$ROOT/constraints/cpu.txt" ;;
  gpu) EXTRAS="${EXTRAS:-dev,gpu}"; CONSTRAINTS="$ROOT/constraints/gpu.txt" ;;
  gpu-test) EXTRAS="${EXTRAS:-dev}"; CONSTRAINTS="$ROOT/constraints/gpu-test.txt" ;;
  *) echo "[setup] STACK must be cpu, gpu or gpu-test, not '$STACK'" >&2; exit 2 ;;
esac
VENV="${VENV:-$ROOT/.venv}"
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
PYTHON="${PYTHON:-python3}"

if [ "$STACK" = gpu ] && ! command -v nvcc >/dev/null 2>&1; then
  echo "[setup] --gpu builds flash-attn and DeepSpeed with nvcc, which is not on PATH: run it on a CUDA machine" >&2
  exit 2
fi
fresh_venv=0
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PYTHON" -m venv "$VENV"
  fresh_venv=1
fi
PY="$VENV/bin/python"

# SEED_VENV=<venv>: start a new venv from another's packages through hard links, so a second venv (CI's gpu-test run)
# costs no second copy of the 4.5 GB torch/CUDA stack. pip unlinks before it writes, so neither venv can change the
# other; whatever differs from this stack's pins is then replaced below as usual.
if [ "$fresh_venv" = 1 ] && [ -n "${SEED_VENV:-}" ] && [ -x "$SEED_VENV/bin/python" ]; then
  site() { "$1" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
  src_site="$(site "$SEED_VENV/bin/python")"
  dst_site="$(site "$PY")"
  # The new venv's own pip and setuptools make way for the seed's (newer) ones.
  rm -rf "${dst_site:?}"/*
  if cp -al "$src_site/." "$dst_site/"; then
    # Console scripts name their interpreter in the first line: point the copies at this venv's.
    src_py="$(cd "$SEED_VENV/bin" && pwd)/python"
    for script in "$SEED_VENV"/bin/*; do
      name="$(basename "$script")"
      [ -f "$script" ] && [ ! -e "$VENV/bin/$name" ] || continue
      if [ "$(head -c 2 "$script")" = "#!" ] && head -1 "$script" | grep -qE "^#!${src_py}[0-9.]*\$"; then
        { echo "#!$VENV/bin/python"; tail -n +2 "$script"; } > "$VENV/bin/$name"
        chmod +x "$VENV/bin/$name"
      fi
    done
    echo "[setup] seeded $VENV from $SEED_VENV (hard links)"
  else
    echo "[setup] could not hard-link $SEED_VENV into $VENV (another filesystem?): installing everything"
    "$PYTHON" -m venv --clear "$VENV"
  fi
fi

stamp_file="$VENV/.mmreward-install-stamp"
stamp="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/setup.sh" "$CONSTRAINTS" | sha256sum | cut -d' ' -f1)-$STACK-$EXTRAS"
if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ]; then
  echo "[setup] $VENV is up to date"
  exit 0
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1
pin() { grep -E "^$1==" "$CONSTRAINTS" | head -1; }
"$PY" -m pip install -q --upgrade "pip>=24" setuptools wheel
# torch first, pinned: the CPU machines here carry the 2.14.1 wheels on disk (see ENVIRONMENT.md).
TORCH_SPEC="$(pin torch) $(pin torchvision)"
torch_version="$(pin torch | cut -d= -f3)"
if ! "$PY" -c "import torch, torchvision; assert torch.__version__.split('+')[0] == '$torch_version'" 2>/dev/null; then
  echo "[setup] installing $TORCH_SPEC"
  # shellcheck disable=SC2086
  "$PY" -m pip install -q $TORCH_SPEC
fi
if [ "$STACK" = gpu ]; then
  # Source-only packages compile against the installed torch: no build isolation, and after torch.
  "$PY" -m pip install -q -c "$CONSTRAINTS" ninja packaging
  "$PY" -m pip install -q --no-build-isolation -c "$CONSTRAINTS" flash-attn deepspeed
fi
echo "[setup] installing mmreward[$EXTRAS] (editable, $STACK stack: $(basename "$CONSTRAINTS"))"
"$PY" -m pip install -q -c "$CONSTRAINTS" -e "$ROOT[$EXTRAS]"
echo "$stamp" > "$stamp_file"
echo "[setup] done: $("$PY" -c 'import torch, transformers, trl; print(f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}")')"
