"""KV-cache reuse across tool turns vs re-encoding the conversation every turn, on 3-turn judging trajectories
(crop, crop, answer). One run, JSON out.

    python scripts/bench/bench_turn_cache.py [--items 8] [--hidden 256]

The turns are scripted (a random-weight model writes no tool calls) but the model does all the work a judge
does: each turn's context is encoded (all of it, or only what the turn appended on top of the kept cache), then
the turn's own tokens are decoded through the model one by one. Both ways run the same trajectories in the same
process, alternating. That the cached continuation equals re-encoding (logits, and greedy generations) is
tested in ``tests/test_rollout.py``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


class ForcedTurns:
    """A generator that encodes each turn's context with the model and decodes the scripted turn's tokens."""

    def __init__(self, gen, script: dict[str, list[str]], reuse: bool) -> None:
        self.gen, self.script, self.reuse = gen, script, reuse
        self.sampling = gen.sampling
        self.encoded_tokens = 0
        self.calls = 0
        self.prefill_s = 0.0

    def generate(self, requests):
        from mmreward.rollout import GenerationOutput

        outs = []
        for r in requests:
            text = self.script[r.key.split("|")[0]][r.turn]
            key = r.key if self.reuse else f"{r.key}#{self.calls}"
            self.calls += 1
            start = time.perf_counter()
            _, encoded, ids, next_pos = self.gen.extend(key, self.gen.render(r.messages, r.tools), r.images)
            self.prefill_s += time.perf_counter() - start
            self.encoded_tokens += encoded
            cache = self.gen._caches[key][1]
            tokens = self.gen.tokenizer(text + "<|im_end|>", add_special_tokens=False)["input_ids"]
            with torch.inference_mode():
                for k, tok in enumerate(tokens[:-1]):  # decode the turn token by token, as generation does
                    self.gen.model(
                        input_ids=torch.tensor([[tok]]),
                        position_ids=torch.full((3, 1, 1), next_pos + k),
                        past_key_values=cache,
                        use_cache=True,
                        cache_position=torch.tensor([len(ids) + k]),
                    )
            self.gen._caches[key] = (list(ids) + tokens[:-1], cache)
            if not self.reuse:
                self.gen.release(key)
            outs.append(GenerationOutput(text=text, prompt_tokens=len(ids), completion_tokens=len(tokens)))
        return outs

    def release(self, key: str) -> None:
        self.gen.release(key)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=256, help="text hidden size of the tiny model")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    from data_pipelines.records import read_records
    from data_pipelines.synthetic.generate import WORLD_TOOLS, WORLD_VISUAL, generate_world
    from mmreward.modeling import load_model
    from mmreward.protocol import format_turn
    from mmreward.rollout import EngineSettings, RolloutEngine, TransformersGenerator
    from mmreward.tiny import TinySizes, init_tiny
    from mmreward.tools import Budget

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sizes = TinySizes(
            hidden_size=args.hidden, num_layers=4, num_heads=4, num_kv_heads=2, intermediate_size=4 * args.hidden
        )
        model, processor = load_model(init_tiny(tmp / "model", sizes=sizes))
        model.eval()
        generate_world(tmp / "world", seed=0, kinds=["image"], splits={"test": args.items}, see=0)
        records = read_records(tmp / "world" / "test.jsonl")[: args.items]
        script = {
            r.id: [
                format_turn("the shapes are small; look at the left half", tool=("crop", {"image": "image_1", "bbox_2d": [0, 0, 500, 1000]})),
                format_turn("now the right half of the second image", tool=("crop", {"image": "image_2", "bbox_2d": [500, 0, 1000, 1000]})),
                format_turn("the first image matches the prompt", answer="Image 1 is better"),
            ]
            for r in records
        }  # fmt: skip
        settings = EngineSettings(
            max_turns=3, batch_size=1, budget=Budget(max_tool_calls=2), visual=WORLD_VISUAL, tools=WORLD_TOOLS
        )
        tasks = [r.to_task(tmp / "world") for r in records]
        times = {"reencode": 0.0, "reuse_cache": 0.0}
        prefill = {"reencode": 0.0, "reuse_cache": 0.0}
        encoded = {}
        for _ in range(args.rounds):
            for name, reuse in (("reencode", False), ("reuse_cache", True)):
                gen = TransformersGenerator(model, processor, reuse_cache=True)
                forced = ForcedTurns(gen, script, reuse)
                engine = RolloutEngine(forced, settings=settings)
                start = time.perf_counter()
                trajs = engine.run(tasks, [[0, 1]] * len(tasks), True, [f"{r.id}|x" for r in records])
                times[name] += time.perf_counter() - start
                encoded[name] = forced.encoded_tokens
                prefill[name] += forced.prefill_s
                assert all(t.num_turns == 3 and t.stop_reason == "answer" for t in trajs)
    n = args.items * args.rounds
    report = {
        "model": f"tiny Qwen2.5-VL, text hidden {args.hidden} x 4 layers",
        "trajectories": n,
        "turns_per_trajectory": 3,
        "seconds_per_trajectory": {k: round(v / n, 4) for k, v in times.items()},
        "encoded_tokens_per_trajectory": {k: round(v / args.items) for k, v in encoded.items()},
        "context_encoding_seconds_per_trajectory": {k: round(v / n, 4) for k, v in prefill.items()},
        "speedup": round(times["reencode"] / times["reuse_cache"], 2),
        "context_encoding_speedup": round(prefill["reencode"] / prefill["reuse_cache"], 2),
        "goal": ">= 1.5",
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
