"""``mmreward tiny ...`` and ``mmreward pipeline``: the embedded default's commands, registered into the one CLI
through the ``mmreward.commands`` entry point."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

STAGES = {
    "vision": ("vision pretraining: dense per-token labels for the tiny vision tower", "mmreward_tiny.vision"),
    "see": (
        "stage 0, learning to see: the SFT trainer on captions and questions, then perception",
        "mmreward_tiny.see",
    ),
}


def register(sub) -> dict:
    from mmreward_tiny.pipeline import register as register_pipeline  # noqa: PLC0415

    p = sub.add_parser(
        "tiny",
        help="the embedded default's own steps: vision pretraining, stage 0, the learning-to-see curriculum",
        description="What the tiny model needs before the general stages, because it starts from random weights. "
        "`mmreward pipeline` runs these and every general stage in order.",
    )
    tsub = p.add_subparsers(dest="tiny_command", metavar="STEP")
    tsub.required = True
    for name, (doc, module) in STAGES.items():
        # --help and every option go to the stage's own parser (TRL's for `see`).
        tsub.add_parser(name, help=doc, description=f"{doc}; options: {module.replace('.', '/')}.py", add_help=False)
    c = tsub.add_parser(
        "curriculum",
        help="write the learning-to-see data for stage 0 into a world folder",
        description="Write OUT/see/ (captions and questions about images, crops and frames) and, when asked, the "
        "warm-ups' rows under OUT/see/<warm-up>/, seeded and deterministic. OUT is a world folder (`mmreward data "
        "synth`); the one-crop rows draw fresh items like its validation split.",
    )
    c.add_argument("--out", required=True, help="the world folder")
    c.add_argument("--see", type=int, default=200, help="learning-to-see examples (0 = none)")
    c.add_argument("--lookup", type=int, default=0, help="text-only lookup rows, to OUT/see/lookup/")
    c.add_argument(
        "--compare", type=int, default=0,
        help="text-only comparison rows (what is seen against the prompt, in the oracle's words), to OUT/see/compare/",
    )  # fmt: skip
    c.add_argument(
        "--crops", type=int, default=0,
        help="one-crop rows from this many fresh image items (each candidate's crop as the judge gets it, answered with "
        "the oracle's sentence about it), to OUT/see/crops/",
    )  # fmt: skip
    c.add_argument("--seed", type=int, default=0, help="the curriculum's seed")
    c.add_argument("--workers", type=int, default=1, help="worker processes")
    from data_pipelines.cli import add_world_arguments  # noqa: PLC0415

    add_world_arguments(c)
    return {"tiny": run, **register_pipeline(sub)}


def run(args: argparse.Namespace) -> int:
    if args.tiny_command == "curriculum":
        if args.extra:
            from mmreward.errors import InputError  # noqa: PLC0415

            raise InputError(f"unrecognized arguments: {' '.join(args.extra)} (see mmreward tiny curriculum --help)")
        return curriculum(args)
    return importlib.import_module(STAGES[args.tiny_command][1]).main(list(args.extra))


run.accepts_extra = True  # a stage's options go to its own parser (--config, overrides, --help)


def curriculum(args: argparse.Namespace) -> int:
    from data_pipelines.cli import print_table, world_config  # noqa: PLC0415

    out, cfg = Path(args.out), world_config(args)
    if args.see:
        from mmreward_tiny.curriculum.questions import generate_see  # noqa: PLC0415

        stats = generate_see(out / "see", n=args.see, seed=args.seed, cfg=cfg, progress=True)
        print_table("learning-to-see examples:", {s: v["n"] for s, v in stats.items()})
    if args.lookup:
        from mmreward_tiny.curriculum.lookup import generate_lookup  # noqa: PLC0415

        lm = generate_lookup(out / "see" / "lookup", args.lookup, seed=args.seed)
        print_table("lookup warm-up rows (text only):", lm["splits"])
    if args.compare:
        from mmreward_tiny.curriculum.compare import generate_compare  # noqa: PLC0415

        cm = generate_compare(out / "see" / "compare", args.compare, seed=args.seed)
        print_table("comparison rows (text only):", cm["splits"])
    if args.crops:
        from mmreward_tiny.curriculum.crops import generate_crops  # noqa: PLC0415

        km = generate_crops(
            out / "see" / "crops", args.crops, args.seed, cfg, out / "val.jsonl", workers=args.workers, progress=True
        )
        print_table(
            "one-crop rows (share that match):", {s: f"{n} ({km['match_share'][s]})" for s, n in km["splits"].items()}
        )
    return 0
