"""KV-cache reuse across tool turns vs re-encoding the conversation every turn, on 3-turn judging trajectories
(tool, tool, answer). One run, JSON out.

    python scripts/bench/bench_turn_cache.py [--items 6] [--hidden 256] [--scenarios image video]

Scenarios: ``image``, the tiny-cpu world's image pairs (112x112 overviews and crops, 16 visual tokens each: a
short context, so re-encoding it is cheap); ``video``, a pair of 6-second world clips under the protocol's
default visual settings (8-frame overviews of up to 224x224 per frame, ``select_frames`` of 4 frames a call):
the long-context case the cache is for, where re-encoding also re-runs the vision tower over every frame.

The turns are scripted (a random-weight model writes no tool calls) but the model does all the work a judge
does: each turn's context is encoded (all of it, or only what the turn appended on top of the kept cache), then
the turn's own tokens are decoded through the model one by one. Both ways run the same trajectories in the same
process, alternating. That the cached continuation equals re-encoding (logits, and greedy generations) is
tested in ``tests/test_rollout.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
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
        from mmreward.generators import GenerationOutput

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


REASONING = (
    "I compare what I can see with the prompt, object by object: the colours and the count agree so far, but "
    "the details are too small to be sure at this size, so I take a closer look before I decide."
)  # about the length of a distilled turn's reasoning (30-90 tokens)


def scenario(name: str, tmp: Path, items: int):
    """(records, world folder, engine settings, scripted turns) for one scenario."""
    from data_pipelines.records import read_records
    from data_pipelines.synthetic.generate import WORLD_TOOLS, WORLD_VISUAL, WorldConfig, generate_world
    from mmreward.protocol import VisualSettings, format_turn
    from mmreward.settings import EngineSettings
    from mmreward.tools import Budget, ToolSettings

    world = tmp / name
    if name == "image":  # the tiny-cpu world: 112x112 overviews and crops (16 visual tokens each)
        generate_world(world, seed=0, kinds=["image"], splits={"test": items})
        visual, tools = WORLD_VISUAL, WORLD_TOOLS
        turns = [
            format_turn(REASONING, tool=("crop", {"image": "image_1", "bbox_2d": [0, 0, 500, 1000]})),
            format_turn(REASONING, tool=("crop", {"image": "image_2", "bbox_2d": [500, 0, 1000, 1000]})),
            format_turn(REASONING, answer="Image 1 is better"),
        ]
    else:  # two 6-second clips, the protocol's default video overview (8 frames of up to 224x224), 4 frames a call
        cfg = WorldConfig(clip_frames=48, fps=8.0, visual=replace(WORLD_VISUAL, overview_frames=8))
        generate_world(world, seed=0, kinds=["video"], cfg=cfg, splits={"test": items})
        visual, tools = VisualSettings(), ToolSettings()
        turns = [
            format_turn(REASONING, tool=("select_frames", {"video": "video_1", "frames": [9, 10, 11, 12]})),
            format_turn(REASONING, tool=("select_frames", {"video": "video_2", "frames": [9, 10, 11, 12]})),
            format_turn(REASONING, answer="Video 1 is better"),
        ]
    records = read_records(world / "test.jsonl")[:items]
    settings = EngineSettings(max_turns=3, batch_size=1, budget=Budget(max_tool_calls=2), visual=visual, tools=tools)
    return records, world, settings, {r.id: turns for r in records}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=6)
    ap.add_argument("--hidden", type=int, default=256, help="text hidden size of the tiny model")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--scenarios", nargs="+", default=["image", "video"], choices=["image", "video"])
    args = ap.parse_args()

    from mmreward.generators import TransformersGenerator
    from mmreward.modeling import load_model
    from mmreward.rollout import RolloutEngine
    from mmreward.tiny import TinySizes, init_tiny

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sizes = TinySizes(
            hidden_size=args.hidden, num_layers=4, num_heads=4, num_kv_heads=2, intermediate_size=4 * args.hidden
        )
        model, processor = load_model(init_tiny(tmp / "model", sizes=sizes))
        model.eval()
        for name in args.scenarios:
            records, world, settings, script = scenario(name, tmp, args.items)
            tasks = [r.to_task(world) for r in records]
            times = {"reencode": 0.0, "reuse_cache": 0.0}
            prefill = {"reencode": 0.0, "reuse_cache": 0.0}
            encoded, prompt = {}, 0
            for _ in range(args.rounds):
                for mode, reuse in (("reencode", False), ("reuse_cache", True)):
                    gen = TransformersGenerator(model, processor, reuse_cache=True)
                    forced = ForcedTurns(gen, script, reuse)
                    engine = RolloutEngine(forced, settings=settings)
                    start = time.perf_counter()
                    trajs = engine.run(tasks, [[0, 1]] * len(tasks), True, [f"{r.id}|x" for r in records])
                    times[mode] += time.perf_counter() - start
                    encoded[mode] = forced.encoded_tokens
                    prefill[mode] += forced.prefill_s
                    assert all(t.num_turns == 3 and t.stop_reason == "answer" for t in trajs), [
                        (t.stop_reason, t.error) for t in trajs
                    ]
                    prompt = max(t.prompt_tokens for t in trajs)
            n = len(records) * args.rounds
            results[name] = {
                "trajectories": n,
                "prompt_tokens_per_trajectory_summed_over_turns": prompt,
                "seconds_per_trajectory": {k: round(v / n, 4) for k, v in times.items()},
                "encoded_tokens_per_trajectory": {k: round(v / len(records)) for k, v in encoded.items()},
                "context_encoding_seconds_per_trajectory": {k: round(v / n, 4) for k, v in prefill.items()},
                "speedup": round(times["reencode"] / times["reuse_cache"], 2),
                "context_encoding_speedup": round(prefill["reencode"] / prefill["reuse_cache"], 2),
            }
            print(json.dumps({name: results[name]}), file=sys.stderr)
    report = {
        "model": f"tiny Qwen2.5-VL, text hidden {args.hidden} x 4 layers",
        "turns_per_trajectory": 3,
        "scenarios": results,
        "goal": "speedup >= 1.5",
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
