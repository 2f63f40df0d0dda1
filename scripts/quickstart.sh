#!/usr/bin/env bash
# The main job on the embedded default: set up, build the tiny offline judge, and judge the real image pair
# (MJ-Bench) and the real video pair (VideoGen-RewardBench) from ../shared/benchmarks/.
# Output goes to runs/quickstart/ (model folder, one JSON judgment per pair).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
cd "$ROOT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
MM="$ROOT/.venv/bin/mmreward"
OUT="${OUT:-runs/quickstart}"
BENCH="${BENCH:-$ROOT/../shared/benchmarks}"
mkdir -p "$OUT"
if [ ! -f "$OUT/model/config.json" ]; then
  "$MM" init-tiny "$OUT/model"
fi
IMG="$BENCH/mj_bench/quality_objects_indoor_sample/images"
VID="$BENCH/videogen_rewardbench/videos"
echo "== image pair (MJ-Bench): $IMG/furniture_0.jpg vs $IMG/furniture_0_edited_furniture.jpg"
"$MM" judge --model "$OUT/model" --prompt "A large room with a long wooden table and many chairs." \
  --image "$IMG/furniture_0.jpg" --image "$IMG/furniture_0_edited_furniture.jpg" --swap both \
  --max-new-tokens 64 --json > "$OUT/image_pair.json"
"$ROOT/.venv/bin/python" -c "import json,sys; j=json.load(open(sys.argv[1])); print('   outcome:', j['outcome'], '| stop reasons:', [t['stop_reason'] for t in j['trajectories']], '| timing:', j['timing'])" "$OUT/image_pair.json"
echo "== video pair (VideoGen-RewardBench example 1)"
"$MM" judge --model "$OUT/model" \
  --prompt "The camera remains still, a girl with braided hair and wearing a pink dress approached the chair in the room and sat on it." \
  --video "$VID/example_1_A.mp4" --video "$VID/example_1_B.mp4" --swap both --max-new-tokens 64 --json > "$OUT/video_pair.json"
"$ROOT/.venv/bin/python" -c "import json,sys; j=json.load(open(sys.argv[1])); print('   outcome:', j['outcome'], '| stop reasons:', [t['stop_reason'] for t in j['trajectories']], '| timing:', j['timing'])" "$OUT/video_pair.json"
echo "Judgments (trajectory records) written to $OUT/image_pair.json and $OUT/video_pair.json."
echo "The tiny model has random weights, so its verdicts are noise until it is trained; the pipeline stages will train it."
