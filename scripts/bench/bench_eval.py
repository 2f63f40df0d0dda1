"""Evaluation throughput: judgments per second of ``eval run`` today (batches of 8, every turn's context encoded
again) against larger batches, and larger batches with the KV cache kept across tool turns, on the same items, in
one run. The predictions must come out the same every way, so the accuracy is fixed and only the speed differs.
Rejection sampling runs on the same engine (``data reject --reuse-cache``), so the same ratio applies to it.

    python scripts/bench/bench_eval.py [--model DIR] [--items 32] [--max-new-tokens 64] [--script | --no-script]

Without ``--model`` it builds the tiny model and a synthetic world of image pairs. A random-weight model never
writes a tool call, so by default each turn's text is scripted (two crops, then a verdict: ``scripted_turns.py``)
while the model does each turn's real encoding and decoding; with a trained checkpoint pass ``--no-script`` to time
its own trajectories. Greedy decoding, so the ways produce the same tokens. JSON out.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

WAYS = {  # name: (engine batch size, keep the KV cache across turns)
    "today": (8, False),  # `mmreward eval run` defaults
    "batched": (32, False),
    "batched_reuse": (32, True),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="checkpoint folder (default: build the tiny model)")
    ap.add_argument("--items", type=int, default=32, help="image pairs judged (each in one seeded order)")
    ap.add_argument("--max-new-tokens", type=int, default=64, help="tokens per turn (every turn makes exactly this)")
    ap.add_argument("--no-script", action="store_true", help="the model writes its own turns (a trained judge)")
    args = ap.parse_args()

    from scripted_turns import ToolTurns
    from transformers.utils import logging as hf_logging

    from data_pipelines.synthetic.generate import WORLD_TOOLS, WORLD_VISUAL, generate_world
    from eval.run import RunSettings, read_predictions, run_suite
    from eval.suites import get_suite
    from mmreward.generators import SamplingSettings, TransformersGenerator
    from mmreward.modeling import load_model
    from mmreward.settings import resolve_engine_settings
    from mmreward.tiny import init_tiny

    hf_logging.disable_progress_bar()
    n_tok = args.max_new_tokens
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = args.model or str(init_tiny(tmp / "model"))
        generate_world(tmp / "world", seed=0, splits={"test": args.items}, kinds=["image"])
        model, processor = load_model(model_dir)
        suite = get_suite("synthetic_test")
        results, verdicts = {}, {}
        for rep in range(2):  # the ways alternate twice, so drift hits all of them
            for name, (batch, reuse) in WAYS.items():
                gen = TransformersGenerator(
                    model, processor, SamplingSettings(n_tok, min_new_tokens=n_tok), reuse_cache=reuse
                )
                gen = gen if args.no_script else ToolTurns(gen)
                engine = resolve_engine_settings(
                    model_dir, processor, batch_size=batch, visual=WORLD_VISUAL, tools=WORLD_TOOLS
                )
                out = tmp / f"{name}-{rep}"
                start = time.perf_counter()
                manifest = run_suite(
                    suite,
                    gen,
                    out,
                    RunSettings(swap="random", chunk=max(16, batch)),
                    data=str(tmp / "world"),
                    engine_settings=engine,
                    model_path=model_dir,
                )
                wall = time.perf_counter() - start
                rows = read_predictions(out)
                r = results.setdefault(name, {"batch": batch, "reuse_cache": reuse, "wall_s": 0.0, "judgments": 0})
                r["wall_s"] += wall
                r["judgments"] += manifest["new_predictions"]
                r["accuracy"] = round(sum(bool(x.get("correct")) for x in rows) / max(1, len(rows)), 4)
                r["tool_calls_per_judgment"] = round(sum(x["tool_calls"] for x in rows) / max(1, len(rows)), 2)
                verdicts.setdefault(name, {x["key"]: x.get("verdict") for x in rows})
    for r in results.values():
        r["judgments_per_s"] = round(r["judgments"] / r["wall_s"], 3)
        r["wall_s"] = round(r["wall_s"], 2)
    base = results["today"]["judgments_per_s"]
    same = all(v == verdicts["today"] for v in verdicts.values())
    report = {
        "model": args.model or "tiny (built here, random weights)",
        "turns": "the model's own" if args.no_script else "scripted: 2 crop turns + a verdict (scripted_turns.py)",
        "tokens_per_turn": n_tok,
        "items": args.items,
        "ways": results,
        "speedup_over_today": {k: round(v["judgments_per_s"] / base, 3) for k, v in results.items()},
        "same_verdicts_every_way": same,
        "goal": "batched_reuse faster than today at the same accuracy",
        "met": same and results["batched_reuse"]["judgments_per_s"] > base,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
