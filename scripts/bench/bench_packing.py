"""Padding-free packing vs padded batches for multi-turn VLM traces: effective (non-pad) tokens per second.

    python scripts/bench/bench_packing.py [--trajectories kept.jsonl --model DIR] [--batch 8 --batches 12]

Without arguments it builds a tiny model and a small synthetic world, distills trajectories with the oracle
(their lengths vary with the number of turns, tool observations and video frames) and trains on the same examples
four ways: padded or packed, in random batches (the default sampler) or in length-grouped batches (transformers'
``train_sampling_strategy: group_by_length``, which SFT supports through a ``length`` column), alternating the ways
batch by batch so drift hits all of them. Prints JSON: tokens/s for each way, the pad/filler share of each, the
ideal speed-up 1/(1 - pad share of padded random batches), and the achieved fraction of it.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import torch


def build_data(tmp: Path, hidden: int = 256, layers: int = 4) -> tuple[Path, Path]:
    from data_pipelines.distill import DistillSettings, distill
    from data_pipelines.records import read_records
    from data_pipelines.synthetic.generate import WORLD_TOOLS, WORLD_VISUAL, generate_world
    from data_pipelines.synthetic.oracle import OracleTeacher
    from mmreward.settings import EngineSettings
    from mmreward.tiny import TinySizes, init_tiny

    # The language model dominates a real VLM's compute (a 7B LLM on a 0.6B vision tower); keep that proportion.
    sizes = TinySizes(hidden_size=hidden, num_layers=layers, num_heads=4, num_kv_heads=2, intermediate_size=4 * hidden)
    model = init_tiny(tmp / "model", sizes=sizes)
    generate_world(tmp / "world", seed=0, splits={"train": 120})
    records = read_records(tmp / "world" / "train.jsonl")
    distill(
        records,
        OracleTeacher({r.id: r for r in records}),
        tmp / "distill",
        DistillSettings(swap="random", engine=EngineSettings(visual=WORLD_VISUAL, tools=WORLD_TOOLS)),
        media_root=tmp / "world",
    )
    return tmp / "distill" / "kept.jsonl", model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trajectories")
    ap.add_argument("--model")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hidden", type=int, default=256, help="text hidden size of the model built when none is given")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--row-tokens", type=int, help="packed row capacity (default: the batch's longest sequence)")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    from transformers.trainer_pt_utils import get_length_grouped_indices

    from mmreward.modeling import load_model
    from train.collate import PackedCollator, PaddedCollator, attention_width, rope_function
    from train.render import Renderer, TrajectoryDataset, read_trajectory_files

    with tempfile.TemporaryDirectory() as d:
        if args.trajectories and args.model:
            traj_path, model_dir = Path(args.trajectories), Path(args.model)
        else:
            traj_path, model_dir = build_data(Path(d), args.hidden, args.layers)
        model, processor = load_model(model_dir)
        model.train()
        ds = TrajectoryDataset(read_trajectory_files([traj_path]), Renderer(processor))
        examples = [ds[i] for i in range(len(ds))]
    n = args.batch * args.batches
    if len(examples) < n + 2 * args.batch:
        raise SystemExit(f"{len(examples)} trajectories: need {n + 2 * args.batch} for --batch x --batches + warm-up")
    rng = random.Random(args.seed)
    order = rng.sample(range(len(examples)), n + 2 * args.batch)
    warmup, timed = order[: 2 * args.batch], order[2 * args.batch :]
    lengths = [len(examples[i]) for i in timed]
    # The same examples two ways: random batches (the default sampler), and transformers' own length grouping
    # (train_sampling_strategy: group_by_length), which sorts mega-batches by length before cutting batches.
    grouped = get_length_grouped_indices(lengths, args.batch, generator=torch.Generator().manual_seed(args.seed))
    plans = {
        "random": [timed[i : i + args.batch] for i in range(0, n, args.batch)],
        "grouped": [[timed[j] for j in grouped[i : i + args.batch]] for i in range(0, n, args.batch)],
    }
    collators = {
        "padded": PaddedCollator(processor.tokenizer.pad_token_id),
        "packed": PackedCollator(
            rope_function(model), row_tokens=args.row_tokens, attention_width=attention_width(model)
        ),
    }
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # a real backward and step, no drift in the weights

    def step(batch) -> float:
        inputs = {k: v for k, v in batch.items() if k != "loss_kinds"}
        t = time.perf_counter()
        out = model(**inputs, use_cache=False)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t

    for collate in collators.values():  # warm-up
        for i in range(0, len(warmup), args.batch):
            step(collate([examples[j] for j in warmup[i : i + args.batch]]))
    ways = [(c, p) for p in plans for c in collators]
    seconds = dict.fromkeys(ways, 0.0)
    slots = dict.fromkeys(ways, 0)
    for b in range(args.batches):  # the ways alternate batch by batch, so drift hits all of them
        for collator, plan in ways:
            batch = collators[collator]([examples[j] for j in plans[plan][b]])  # collation is not timed
            seconds[(collator, plan)] += step(batch)
            slots[(collator, plan)] += batch["input_ids"].numel()
    real = sum(lengths)
    tps = {f"{c}_{p}": real / seconds[(c, p)] for c, p in ways}
    pad_share = 1 - real / slots[("padded", "random")]
    ideal = 1 / (1 - pad_share)
    base = tps["padded_random"]
    all_lengths = [len(e) for e in examples]
    ratio = tps["packed_grouped"] / base
    print(
        json.dumps(
            {
                "trajectories": len(examples),
                "length": {
                    "min": min(all_lengths),
                    "mean": round(sum(all_lengths) / len(all_lengths), 1),
                    "max": max(all_lengths),
                },
                "model": {
                    "text_hidden": model.config.text_config.hidden_size,
                    "text_layers": model.config.text_config.num_hidden_layers,
                    "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
                },
                "batch": args.batch,
                "batches_timed": args.batches,
                "effective_tokens_per_s": {k: round(v, 1) for k, v in tps.items()},
                "filler_share": {f"{c}_{p}": round(1 - real / slots[(c, p)], 4) for c, p in ways},
                "speedup_over_padded_random": {k: round(v / base, 3) for k, v in tps.items()},
                "ideal_speedup": round(ideal, 3),
                "fraction_of_ideal": {k: round(v / base / ideal, 3) for k, v in tps.items() if k != "padded_random"},
                "goal": "packed_grouped >= 0.95 of ideal",
                "speedup": round(ratio, 3),
                "met": ratio / ideal >= 0.95,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
