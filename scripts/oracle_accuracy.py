"""Accuracy of the synthetic world's oracle teacher with tools and from the overview alone.

    python scripts/oracle_accuracy.py --world runs/world --split test [--json]

Runs the oracle through the rollout engine (the same path distillation takes) in a random presented order per
item, and prints accuracy by item kind and by the needs-tool flag, plus tool calls per item. The gap between the
two columns on needs-tool items is what the world's tools are worth.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict

from data_pipelines.labels import check_verdict
from data_pipelines.records import read_records
from data_pipelines.synthetic.generate import WORLD_TOOLS, WORLD_VISUAL
from data_pipelines.synthetic.oracle import OracleTeacher
from mmreward.rollout import EngineSettings, RolloutEngine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", required=True, help="folder written by `mmreward data synth`")
    ap.add_argument("--split", default="test")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    records = read_records(f"{args.world}/{args.split}.jsonl")
    engine = RolloutEngine(
        OracleTeacher({r.id: r for r in records}, seed=args.seed),
        settings=EngineSettings(visual=WORLD_VISUAL, tools=WORLD_TOOLS, verdict_mode="strict"),
    )
    rng = random.Random(args.seed)
    orders = [[0] if r.task == "pointwise" else rng.sample([0, 1], 2) for r in records]
    tasks = [r.to_task(args.world) for r in records]
    report = {}
    for tools in (True, False):
        trajs = engine.run(tasks, orders=orders, tools_on=tools, keys=[f"{r.id}|x" for r in records])
        groups = defaultdict(list)
        for r, t in zip(records, trajs):
            ok = check_verdict(r, t).correct
            groups["all"].append(ok)
            groups[f"kind={r.metadata['world']['kind']}"].append(ok)
            groups[f"needs_tool={r.metadata['world']['needs_tool']}"].append(ok)
        report["tools" if tools else "overview_only"] = {
            "accuracy": {k: round(sum(v) / len(v), 4) for k, v in sorted(groups.items())},
            "n": {k: len(v) for k, v in sorted(groups.items())},
            "tool_calls_per_item": round(sum(len(t.tool_trace) for t in trajs) / len(trajs), 3),
        }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{'group':28s} {'n':>5s} {'tools':>8s} {'overview':>9s}")
    for k, n in report["tools"]["n"].items():
        print(f"{k:28s} {n:5d} {report['tools']['accuracy'][k]:8.3f} {report['overview_only']['accuracy'][k]:9.3f}")
    print(f"tool calls per item: {report['tools']['tool_calls_per_item']}")


if __name__ == "__main__":
    main()
