"""Stage 2's training half: RFT is SFT on the accepted trajectories of rejection sampling (``data_pipelines.rejection``),
optionally mixed with the cold-start data. Same entry point and trainer as :mod:`train.sft`, its own recipes.

    mmreward data reject --model runs/quickstart/sft --records runs/quickstart/world/train.jsonl --out runs/quickstart/rejection
    mmreward train rft --config train/recipes/tiny-cpu/rft.yaml
"""

from __future__ import annotations

import sys

from train.sft import main as sft_main


def main(argv: list[str] | None = None) -> int:
    return sft_main(argv, stage="rft")


if __name__ == "__main__":
    sys.exit(main())
