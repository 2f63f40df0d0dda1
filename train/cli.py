"""``mmreward train ...``: the training stages, registered into the one CLI through an entry point."""

from __future__ import annotations

import argparse

STAGES = {
    "sft": ("stage 1: cold-start SFT on distilled trajectories", "train.sft"),
    "rft": ("stage 2: SFT on rejection-sampled trajectories", "train.rft"),
    "grpo": ("stage 3: GRPO with multi-turn tool rollouts", "train.grpo"),
}


def register(sub) -> dict:
    p = sub.add_parser(
        "train",
        help="training stages: sft, rft, grpo (YAML recipes in train/recipes/)",
        description="Run a training stage from a YAML recipe (train/recipes/<model>/<stage>.yaml); any recipe field can "
        "be overridden on the command line, e.g. `mmreward train sft --config R.yaml --learning_rate 5e-4`. "
        "For several processes use `accelerate launch --config_file train/accelerate/<cfg>.yaml -m train.<stage> "
        "--config R.yaml`.",
    )
    tsub = p.add_subparsers(dest="stage", metavar="STAGE")
    tsub.required = True
    for name, (doc, _) in STAGES.items():
        tsub.add_parser(
            name,
            help=doc,
            description=f"{doc}. Options are "
            + {"grpo": "TRL's GRPOConfig and ModelConfig fields plus mmreward's"}.get(
                name, "TRL's SFTConfig and ModelConfig fields plus mmreward's"
            )
            + "; see "
            + STAGES[name][1].replace(".", "/")
            + ".py.",
            add_help=False,
        )
    return {"train": run}


def run(args: argparse.Namespace) -> int:
    import importlib  # noqa: PLC0415

    module = importlib.import_module(STAGES[args.stage][1])
    return module.main(list(args.extra))


run.accepts_extra = True  # everything after the stage name goes to TRL's parser (--config, overrides, --help)
