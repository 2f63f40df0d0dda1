#!/usr/bin/env bash
# Set up the environment if needed, then run the test suite (CPU, offline).
#   scripts/test.sh                # everything, slow end-to-end tests included
#   scripts/test.sh -m "not slow"  # the quick suite
# Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
cd "$ROOT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export FORCE_QWENVL_VIDEO_READER="${FORCE_QWENVL_VIDEO_READER:-decord}"
"$ROOT/.venv/bin/ruff" check mmreward data_pipelines train eval mmreward_tiny tests scripts
"$ROOT/.venv/bin/ruff" format --check mmreward data_pipelines train eval mmreward_tiny tests scripts
exec "$ROOT/.venv/bin/python" -m pytest -q --durations=10 "$@"
