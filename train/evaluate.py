"""Judge a records file with a saved checkpoint, in its own process, and write the report as JSON.

A sharded run (ZeRO-3, FSDP) cannot evaluate its model on one rank: its weights are partitioned across processes,
and the process group is gone by the end of the run. So its evaluations load the saved folders here instead, one
process on rank 0 after training (:func:`train.sft.evaluate_saved`).

    python -m train.evaluate --model runs/x/grpo --script '{"eval_records": "...", ...}' --out eval.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace

from train.arguments import EVAL_FIELDS


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="checkpoint or adapter folder (its chain is merged)")
    p.add_argument("--script", required=True, help=f"JSON object with the stage's {', '.join(EVAL_FIELDS)}")
    p.add_argument("--out", required=True, help="where the report goes (JSON)")
    p.add_argument("--device", default="auto", help="device to judge on (default %(default)s)")
    args = p.parse_args(argv)

    from mmreward.modeling import ModelSettings, load_model  # noqa: PLC0415
    from train.sft import evaluate_checkpoint  # noqa: PLC0415

    given = json.loads(args.script)
    script = SimpleNamespace(**{k: given.get(k) for k in EVAL_FIELDS})
    model, processor = load_model(args.model, ModelSettings(device=args.device, merge_lora=True))
    report = evaluate_checkpoint(model, processor, script, args.model)
    Path(args.out).write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
