"""Which step of a judge's reasoning fails on the synthetic world: perception, comparison, or verdict.

Runs a checkpoint trained on the oracle's ``crop_policy="each"`` trajectories (the tiny-cpu pipeline's SFT, RFT or GRPO
judge) over a split's two-image items, tools on, each in a random presented order, and checks every step of what
it wrote against the oracle's perception of the same pixels (:mod:`mmreward_tiny.curriculum.diagnose`):

    python scripts/diagnose_judge.py --model runs/quickstart/sft --world runs/quickstart/world [--split val]

Prints JSON: ``perception`` (what it says it sees is what is there), ``restated`` (the prompt's
objects it restates are the prompt's), ``checks`` (its marks of either list against the other are right about its
own lists), ``comparison`` (its match call follows from its own words and the prompt), ``match_call`` (its match
call is right), ``verdict_follows_calls`` (on pairs where its two calls differ, it prefers the one it called a
match) and ``accuracy``. ``implied_call`` and ``implied_verdict`` score what its own descriptions imply, as if it
had compared them with the prompt faithfully: ``implied_verdict`` on the share ``implied_decisive`` of pairs where
its descriptions single out one view. When that is well above its ``accuracy``, the step to fix is the comparison,
not perception.

``--teacher-forced`` adds ``teacher_forced``: the same items' oracle trajectories in the same orders, and the
judge's choice at the first token of each match call with the oracle's correct text before it (``mmreward_tiny/probe.py``).
That isolates the comparison step from errors earlier in the turn; ``first_view`` and ``second_view`` split it by
the order the views were described in.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a judge checkpoint folder")
    ap.add_argument("--world", required=True, help="folder written by `mmreward data synth`")
    ap.add_argument("--split", default="val")
    ap.add_argument("--limit", type=int, default=80, help="two-image items to judge")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-new-tokens", type=int, default=224)
    ap.add_argument("--examples", type=int, default=0, help="also print this many judged items in full")
    ap.add_argument(
        "--teacher-forced",
        action="store_true",
        help="also run mmreward_tiny/probe.py: the judge's match calls with the oracle's own trajectories in context",
    )
    args = ap.parse_args()

    import torch  # noqa: PLC0415
    from transformers import AutoModelForImageTextToText, AutoProcessor  # noqa: PLC0415

    from data_pipelines.labels import check_verdict  # noqa: PLC0415
    from data_pipelines.records import read_records  # noqa: PLC0415
    from data_pipelines.synthetic.generate import WORLD_TOOLS, WORLD_VISUAL  # noqa: PLC0415
    from mmreward.generators import SamplingSettings, TransformersGenerator
    from mmreward.rollout import RolloutEngine
    from mmreward.settings import EngineSettings, load_engine_settings
    from mmreward_tiny.curriculum.diagnose import diagnose, summarize  # noqa: PLC0415

    world = Path(args.world)
    records = [
        r for r in read_records(world / f"{args.split}.jsonl") if r.modality == "image" and r.task != "pointwise"
    ]
    records = records[: args.limit]
    if not records:
        raise SystemExit(f"no two-image items in {world / args.split}.jsonl")
    model = AutoModelForImageTextToText.from_pretrained(args.model, dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(args.model)
    settings = load_engine_settings(args.model) or EngineSettings(visual=WORLD_VISUAL, tools=WORLD_TOOLS)
    generator = TransformersGenerator(model, processor, SamplingSettings(max_new_tokens=args.max_new_tokens))
    engine = RolloutEngine(generator, settings=settings)
    rng = random.Random(args.seed)
    orders = [rng.sample([0, 1], 2) for _ in records]
    trajs = engine.run(
        [r.to_task(world) for r in records], orders=orders, tools_on=True, keys=[f"{r.id}|diag" for r in records]
    )
    report = summarize([diagnose(r, t, world, settings.tools) for r, t in zip(records, trajs)])
    report["accuracy"] = round(sum(check_verdict(r, t).correct for r, t in zip(records, trajs)) / len(records), 4)
    if args.teacher_forced:
        from data_pipelines.synthetic.oracle import OracleTeacher  # noqa: PLC0415
        from mmreward_tiny.probe import oracle_calls, probe_calls  # noqa: PLC0415
        from train.render import Renderer  # noqa: PLC0415

        oracle = RolloutEngine(OracleTeacher({r.id: r for r in records}, crop_policy="each"), settings=settings)
        gold = oracle.run(
            [r.to_task(world) for r in records], orders=orders, tools_on=True, keys=[f"{r.id}|tf" for r in records]
        )
        report["teacher_forced"] = probe_calls(model, Renderer(processor), gold, [oracle_calls(t) for t in gold])
    report["model"] = str(args.model)
    for r, t in list(zip(records, trajs))[: args.examples]:
        print(f"# {r.id} ({r.category}) {r.prompt!r}, order {t.order}", file=sys.stderr)
        for m in t.messages:
            if m["role"] == "assistant":
                print("  " + m["content"][0]["text"].replace("\n", " "), file=sys.stderr)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
