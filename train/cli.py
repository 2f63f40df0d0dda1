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


# TRL/transformers options a recipe usually sets, shown in the short help (--help-all lists all ~300).
COMMON = (
    "model_name_or_path",
    "output_dir",
    "learning_rate",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "use_peft",
    "lora_r",
    "bf16",
    "gradient_checkpointing",
    "save_steps",
    "logging_steps",
    "seed",
    "num_generations",
    "max_completion_length",
    "use_vllm",
    "vllm_mode",
)


def run(args: argparse.Namespace) -> int:
    import importlib  # noqa: PLC0415

    extra = list(args.extra)
    if "--help-all" in extra:
        extra = ["--help" if a == "--help-all" else a for a in extra]
    elif "-h" in extra or "--help" in extra:
        print(stage_help(args.stage))
        return 0
    module = importlib.import_module(STAGES[args.stage][1])
    return module.main(extra)


def stage_help(stage: str) -> str:
    """``mmreward train STAGE --help``: --config and mmreward's own options first, then the TRL options recipes
    usually set, with defaults; the full TrainingArguments list is behind --help-all."""
    import dataclasses  # noqa: PLC0415

    from mmreward.cli import HelpFormatter  # noqa: PLC0415

    if stage == "grpo":
        from train.grpo import GRPOConfig as Config  # noqa: PLC0415
        from train.grpo import GRPOScriptArguments as Script  # noqa: PLC0415
    else:
        from train.sft import SFTConfig as Config  # noqa: PLC0415
        from train.sft import SFTScriptArguments as Script  # noqa: PLC0415
    from trl import ModelConfig  # noqa: PLC0415

    doc = STAGES[stage][0]
    parser = argparse.ArgumentParser(
        prog=f"mmreward train {stage}",
        description=f"{doc}. Reads a YAML recipe (train/recipes/<model>/{stage}.yaml); any field below, and any "
        "field of TRL's config, can be set in it or overridden on the command line.",
        epilog=f"`mmreward train {stage} --help-all` lists every option of TRL's {Config.__name__} and ModelConfig "
        "(about 300). Several processes: `accelerate launch --config_file train/accelerate/<cfg>.yaml -m "
        f"train.{stage} --config RECIPE.yaml`.",
        formatter_class=HelpFormatter,
        add_help=False,
    )
    parser.add_argument("-h", "--help", action="help", help="this help; --help-all for every TRL option")
    parser.add_argument("--config", metavar="RECIPE.yaml", help="the YAML recipe to run (train/recipes/)")
    own = parser.add_argument_group("mmreward's options")
    for f in dataclasses.fields(Script):
        if f.name == "stage":
            continue
        own.add_argument(f"--{f.name}", default=_default(f), help=f.metadata.get("help", ""), metavar="")
    common = parser.add_argument_group(f"common options of TRL's {Config.__name__} and ModelConfig")
    seen = set()
    for cls in (Config, ModelConfig):
        by_name = {f.name: f for f in dataclasses.fields(cls)}
        for name in COMMON:
            if name in by_name and name not in seen:
                seen.add(name)
                f = by_name[name]
                text = " ".join(str(f.metadata.get("help", "")).split())
                common.add_argument(f"--{name}", default=_default(f), help=text[:160], metavar="")
    return parser.format_help()


def _default(f):
    import dataclasses  # noqa: PLC0415

    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


run.accepts_extra = True  # everything after the stage name goes to TRL's parser (--config, overrides, --help)
