#!/usr/bin/env bash
# Set up the environment if needed, then run the test suite (CPU, offline).
#   scripts/test.sh                # everything, slow end-to-end tests included
#   scripts/test.sh -m "not slow"  # the quick suite
# Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
cd "$ROOT"
# The viewer's tests open its pages in a real headless browser: Debian's chromium, installed here when missing
# (where this script may install packages, the tests then require it; elsewhere they skip without it).
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  if ! command -v chromium >/dev/null 2>&1; then
    echo "[test] installing chromium (Debian package) for the viewer's browser tests"
    apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
  fi
  export MMREWARD_REQUIRE_CHROMIUM=1
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export FORCE_QWENVL_VIDEO_READER="${FORCE_QWENVL_VIDEO_READER:-decord}"
"$ROOT/.venv/bin/ruff" check mmreward data_pipelines train eval mmreward_tiny tests scripts
"$ROOT/.venv/bin/ruff" format --check mmreward data_pipelines train eval mmreward_tiny tests scripts
exec "$ROOT/.venv/bin/python" -m pytest -q --durations=10 "$@"
