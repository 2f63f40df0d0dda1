#!/usr/bin/env bash
# The main job on the embedded default: set up the environment if needed, then run every stage of mmreward on the
# tiny model and the synthetic world (build the model, generate the world, stage 0 learning to see, oracle
# distillation, SFT, rejection sampling + RFT, GRPO with tools, eval of every stage, a judge-server smoke check)
# and write runs/quickstart/report.md. About 70 minutes on 2 CPU cores; `scripts/quickstart.sh --fast` is the
# few-minute smoke version. Re-running skips finished steps (`--force` redoes them); any other argument goes to
# `mmreward pipeline` (see `mmreward pipeline --help`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
cd "$ROOT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export FORCE_QWENVL_VIDEO_READER="${FORCE_QWENVL_VIDEO_READER:-decord}"
OUT="${OUT:-runs/quickstart}"
exec "$ROOT/.venv/bin/mmreward" pipeline --recipe tiny-cpu --out "$OUT" "$@"
