"""Accuracy of the synthetic world's oracle teacher with tools and from the overview alone.

    python scripts/oracle_accuracy.py --world runs/world --split test [--json]

Runs the oracle through the rollout engine (the same path distillation takes) in a random presented order per
item, and prints accuracy by item kind and by the needs-tool flag, plus tool calls per item. The gap between the
two columns on needs-tool items is what the world's tools are worth.
"""

from __future__ import annotations

import argparse
import json

from data_pipelines.synthetic.oracle import oracle_accuracy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", required=True, help="folder written by `mmreward data synth`")
    ap.add_argument("--split", default="test")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--crop-policy", choices=["zoom", "each"], default="zoom", help="the oracle's crop policy")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    report = oracle_accuracy(args.world, args.split, args.seed, crop_policy=args.crop_policy)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{'group':28s} {'n':>5s} {'tools':>8s} {'overview':>9s}")
    for k, n in report["tools"]["n"].items():
        print(f"{k:28s} {n:5d} {report['tools']['accuracy'][k]:8.3f} {report['overview_only']['accuracy'][k]:9.3f}")
    print(f"tool calls per item: {report['tools']['tool_calls_per_item']}")


if __name__ == "__main__":
    main()
