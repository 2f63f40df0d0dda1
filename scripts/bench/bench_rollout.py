"""GRPO's multi-turn tool loop at the tiny-cpu recipe: rollouts per second, and where a step's time goes
(generation, tools, reward, optimisation). One run, JSON out.

    python scripts/bench/bench_rollout.py [--model DIR --records R.jsonl] [--steps 6]

Without arguments it builds the tiny model and a small synthetic world. A random-weight model writes no tool
calls, so by default the policy's sampler is the scripted one of ``tests/grpo_scripted.py`` (a crop call, then a
verdict) and the numbers show the loop's own overheads with real tools, real log-probabilities and real
optimisation on the real model; pass ``--model`` with a trained checkpoint (and ``--no-script``) to time real
sampling. Time in each part is measured with TRL's own profiling hooks (``transformers.generate``, the tool
calls inside the environment, each reward function) and the trainer's step timers.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--records")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--no-script", action="store_true", help="sample with the model itself")
    args = ap.parse_args()

    import os

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from transformers.utils import logging as hf_logging

    import train.grpo as grpo
    from data_pipelines.synthetic.generate import generate_world
    from mmreward.tiny import init_tiny

    hf_logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model or str(init_tiny(tmp / "model"))
        records = args.records
        if not records:
            generate_world(tmp / "world", seed=0, splits={"train": 32})
            records = str(tmp / "world" / "train.jsonl")
        script, cfg, model_args = grpo.parse(
            [
                "--config", str(REPO / "train/recipes/tiny-cpu/grpo.yaml"),
                "--model_name_or_path", model,
                "--train_files", records,
                "--settings_file", "" if args.records else str(tmp / "world" / "mmreward_judge.json"),
                "--eval_records", "",
                "--output_dir", str(tmp / "out"),
                "--max_steps", str(args.steps),
                "--report_to", "none",
                "--save_strategy", "no",
                "--logging_steps", "1",
                "--log_completions", "false",
            ]
        )  # fmt: skip
        trainer, _, _, _ = grpo.build_trainer(script, cfg, model_args)
        if not args.no_script:
            sys.path.insert(0, str(REPO / "tests"))
            from grpo_scripted import install

            install(trainer, seed=0)

        timings: dict[str, float] = defaultdict(float)
        _time_tools(trainer, timings)
        _time_rewards(trainer, timings)
        _time_generate(trainer, timings)
        _time_forwards(trainer, timings)
        start = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - start

    steps = trainer.state.global_step
    rollouts = steps * cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps
    gen_score = trainer.step_times["generate_and_score"]
    parts = {
        "generation": timings["generate"],
        "tools": timings["tools"],
        "reward": timings["reward"],
        "optimisation": trainer.step_times["optimise"],
    }
    parts["other_rollout_overhead"] = max(0.0, gen_score - timings["generate"] - timings["tools"] - timings["reward"])
    total = sum(parts.values())
    logs = [row for row in trainer.state.log_history if "reward" in row]
    report = {
        "model": args.model or "tiny (built here, random weights)",
        "sampler": "model" if args.no_script else "scripted tool-calling policy (tests/grpo_scripted.py)",
        "steps": steps,
        "rollouts": rollouts,
        "group_size": cfg.num_generations,
        "wall_s": round(wall, 2),
        "rollouts_per_s": round(rollouts / wall, 3),
        "tool_calls_per_rollout": round(sum(r.get("tools/call_frequency", 0) for r in logs) / max(1, len(logs)), 3),
        "seconds": {k: round(v, 3) for k, v in parts.items()},
        "share_of_step_time": {k: round(v / total, 3) for k, v in parts.items()},
        # Inside generation: the forward passes that encode a prompt or a tool observation (what KV reuse across
        # tool turns and a shared prefill of a group's prompt can save), the one-token decode passes, and the rest:
        # generate's loop (sampling, stopping checks, position and mask bookkeeping) and TRL's batching around it.
        "generation_split": {
            "prefill": round(timings["prefill"], 3),
            "decode_forward": round(timings["decode"], 3),
            "rest_of_generation": round(max(0.0, timings["generate"] - timings["prefill"] - timings["decode"]), 3),
            "prefill_calls": int(timings["prefill_calls"]),
            "decode_steps": int(timings["decode_calls"]),
        },
    }
    print(json.dumps(report, indent=2))


def _time_tools(trainer, timings) -> None:
    """Wrap every environment's ``_call`` (the tool execution, image fitting included)."""
    for cls in trainer.environment_factories.values():
        original = cls._call

        def timed(self, name, arguments, _orig=original):
            start = time.perf_counter()
            try:
                return _orig(self, name, arguments)
            finally:
                timings["tools"] += time.perf_counter() - start

        cls._call = timed


def _time_rewards(trainer, timings) -> None:
    wrapped = []
    for fn in trainer.reward_funcs:

        def timed(*a, _fn=fn, **k):
            start = time.perf_counter()
            try:
                return _fn(*a, **k)
            finally:
                timings["reward"] += time.perf_counter() - start

        timed.__name__ = fn.__name__
        wrapped.append(timed)
    trainer.reward_funcs = wrapped


def _time_generate(trainer, timings) -> None:
    original = trainer._generate_single_turn

    def timed(*a, **k):
        start = time.perf_counter()
        try:
            return original(*a, **k)
        finally:
            timings["generate"] += time.perf_counter() - start

    trainer._generate_single_turn = timed


def _time_forwards(trainer, timings) -> None:
    """Time the policy's no-grad forward passes: more than one new token is a prefill, one is a decode step."""
    import torch

    started = {}

    def pre(module, args, kwargs):
        started["t"], started["ids"] = time.perf_counter(), kwargs.get("input_ids")

    def post(module, args, kwargs, output):
        ids = started.get("ids")
        if torch.is_grad_enabled() or ids is None:
            return
        kind = "prefill" if ids.shape[1] > 1 else "decode"
        timings[kind] += time.perf_counter() - started["t"]
        timings[f"{kind}_calls"] += 1

    trainer.model.register_forward_pre_hook(pre, with_kwargs=True)
    trainer.model.register_forward_hook(post, with_kwargs=True)


if __name__ == "__main__":
    main()
