"""What the pipeline and its report share: the steps, the stages evaluated, the warm-ups, where recipes live."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "train" / "recipes"
STEPS = ["model", "world", "see", "distill", "sft", "reject", "rft", "grpo", "eval", "serve", "report"]
STAGES = ["untrained", "see", "sft", "rft", "grpo"]  # checkpoints evaluated, in order
# Warm-ups that can end stage 0, in the order they run; each has a recipe section, a recipe file
# (train/recipes/<recipe>/<name>.yaml), rows under world/see/<name>/ (`mmreward tiny curriculum --<name> N`), and
# `sft.<name>_rows` mixes its first N rows into SFT.
WARMUPS = ("compare", "crops")
