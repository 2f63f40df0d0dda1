"""Stage 0 for the embedded default: teach a randomly initialised tiny backbone to see, on the synthetic world's
captions and questions about whole images, crops and frames (``data_pipelines.synthetic.see``), before it learns to
judge. It stands in for the pretraining a real Qwen-VL checkpoint already has. Same trainer as :mod:`train.sft`
(``see_files`` instead of ``train_files``).

    mmreward train see --config train/recipes/tiny-cpu/see.yaml
"""

from __future__ import annotations

import sys

from train.sft import main as sft_main


def main(argv: list[str] | None = None) -> int:
    return sft_main(argv, stage="see")


if __name__ == "__main__":
    sys.exit(main())
