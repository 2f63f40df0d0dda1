"""Vision pretraining for the embedded default: teach the tiny model's vision tower what each part of an image shows,
before stage 0 teaches the language model to talk about it.

    mmreward tiny vision --config train/recipes/tiny-cpu/vision.yaml [--max_steps 3000 ...]

It stands in for the vision encoder pretraining every real Qwen-VL checkpoint already has (a real model skips it, as
it skips stage 0). Linear heads on the vision tower's merged tokens (the tokens the language model receives)
predict, for every token's cell of the image, the shape and colour of the object there or "background"
(:mod:`mmreward_tiny.curriculum.vision`), and where the architecture has absolute position embeddings in its vision
tower (Qwen3-VL) also the cell's row and column. The heads are thrown away; the vision tower and its merger are
saved back into a full checkpoint of the same model, which loads like any other.

Why it exists: from random weights, the vision tower learns almost nothing through the language model's few answer
tokens per image. On a probe of one object per view, stage 0 alone read shape at 0.34 (chance 0.25) after 10
epochs; with this pretraining first, 0.96 (the module docstring of :mod:`mmreward_tiny.curriculum.vision`).

Row and column targets are off for Qwen2.5-VL's tower: it has only rotary (relative) positions, so on a plain
background a token cannot know where in the image it is, and the target would only add noise.
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

TARGETS = ("shape", "colour", "row", "col")


@dataclass
class VisionArguments:
    model_name_or_path: str = field(metadata={"help": "the checkpoint whose vision tower to pretrain"})
    output_dir: str = field(metadata={"help": "where the whole model is written (with the pretrained tower)"})
    max_steps: int = field(default=3000, metadata={"help": "optimizer steps (each a fresh batch of scenes)"})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "images per step"})
    learning_rate: float = field(default=2e-3, metadata={"help": "peak learning rate (one-cycle: warmup, cosine)"})
    warmup_ratio: float = field(default=0.05, metadata={"help": "share of steps spent warming up"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping (0 turns it off)"})
    canvas: int = field(default=112, metadata={"help": "scene side in pixels (the world's view size)"})
    object_size: list[float] = field(
        default_factory=lambda: [0.1, 0.45], metadata={"help": "object side as a share of the canvas: min max"}
    )
    max_objects: int = field(default=3, metadata={"help": "objects per scene: 1 to this many"})
    position_targets: str = field(
        default="auto",
        metadata={"help": "predict each cell's row and column: auto (when the tower has absolute positions), on, off"},
    )
    eval_images: int = field(default=128, metadata={"help": "held-out scenes measured before, during and after"})
    eval_steps: int = field(default=250, metadata={"help": "measure the held-out scenes every this many steps"})
    logging_steps: int = field(default=50, metadata={"help": "log the training loss every this many steps"})
    seed: int = field(default=0, metadata={"help": "random seed (the scenes drawn and the data order)"})


def parse(argv: list[str] | None):
    from trl import TrlParser  # noqa: PLC0415

    parser = TrlParser((VisionArguments,), prog="mmreward tiny vision")
    (args,) = parser.parse_args_and_config(argv)
    if args.position_targets not in ("auto", "on", "off"):
        parser.error(f"--position_targets must be auto, on or off, not {args.position_targets!r}")
    if len(args.object_size) != 2 or not 0 < args.object_size[0] <= args.object_size[1] <= 1:
        parser.error(f"--object_size takes two shares of the canvas, 0 < min <= max <= 1; got {args.object_size}")
    return args


def has_absolute_positions(visual) -> bool:
    """Whether the vision tower adds absolute position embeddings to its patches (Qwen3-VL's ``pos_embed``)."""
    return getattr(visual, "pos_embed", None) is not None


class Scenes:
    """Batches of fresh scenes, rendered at the processor's resolution, with their per-cell labels."""

    def __init__(self, args: VisionArguments, image_processor, seed: str) -> None:
        self.args, self.ip = args, image_processor
        self.rng = random.Random(seed)
        unit = image_processor.patch_size * image_processor.merge_size
        self.size = max(unit, round(args.canvas / unit) * unit)  # what the processor would resize the view to
        self.grid = self.size // unit

    def batch(self, n: int):
        import torch  # noqa: PLC0415

        from data_pipelines.synthetic.world import render  # noqa: PLC0415
        from mmreward_tiny.curriculum.vision import cell_labels, random_scene  # noqa: PLC0415

        images, labels = [], {k: [] for k in TARGETS}
        for _ in range(n):
            scene = random_scene(self.rng, self.args.canvas, tuple(self.args.object_size), self.args.max_objects)
            images.append(render(scene, size=self.size))
            cells = cell_labels(scene, self.size, self.grid)
            for k in TARGETS:
                labels[k] += getattr(cells, k)
        inputs = self.ip(images=images, return_tensors="pt")
        grid = inputs["image_grid_thw"]
        if int(grid[0, 1]) != self.grid * self.ip.merge_size:
            raise RuntimeError(f"the processor resized {self.size}-px scenes to {grid[0].tolist()} patches")
        return inputs, {k: torch.tensor(v) for k, v in labels.items()}


def merged_tokens(inner, inputs):
    """The vision tower's output as the language model receives it: (tokens, hidden) over the whole batch."""
    import torch  # noqa: PLC0415

    out = inner.get_image_features(inputs["pixel_values"], image_grid_thw=inputs["image_grid_thw"])
    feats = getattr(out, "pooler_output", out)
    return torch.cat(list(feats)) if isinstance(feats, (tuple, list)) else feats


def accuracy(heads, feats, labels, targets) -> dict[str, float]:
    """Per-target accuracy: shape and colour on the cells that hold an object, row and column on every cell, and
    ``background``: cells without an object that the shape head calls background."""
    from mmreward_tiny.curriculum.vision import SHAPE_CLASSES  # noqa: PLC0415

    obj = labels["shape"] < len(SHAPE_CLASSES) - 1
    out = {}
    for k in targets:
        hit = heads[k](feats).argmax(-1) == labels[k]
        out[k] = round(float(hit[obj].float().mean() if k in ("shape", "colour") else hit.float().mean()), 4)
    if (~obj).any():
        out["background"] = round(float((heads["shape"](feats).argmax(-1) == labels["shape"])[~obj].float().mean()), 4)
    return out


def run(args: VisionArguments) -> dict:
    import torch  # noqa: PLC0415
    from tqdm.auto import tqdm  # noqa: PLC0415
    from transformers import AutoModelForImageTextToText, AutoProcessor  # noqa: PLC0415

    from mmreward_tiny.curriculum.vision import COLOUR_CLASSES, SHAPE_CLASSES  # noqa: PLC0415
    from train.plots import plot_curves  # noqa: PLC0415
    from train.sft import git_version  # noqa: PLC0415

    src, out = Path(args.model_name_or_path), Path(args.output_dir)
    if not (src / "config.json").is_file():
        raise FileNotFoundError(f"{src} is not a model folder (no config.json); build one with `mmreward init-tiny`")
    if out.resolve() == src.resolve():
        raise ValueError("--output_dir must differ from --model_name_or_path (the source checkpoint is kept)")
    if out.is_dir() and any(out.iterdir()) and not (out / "manifest.json").is_file():
        raise FileExistsError(f"{out} holds files that are not a vision-pretraining output; choose another folder")
    torch.manual_seed(args.seed)
    model = AutoModelForImageTextToText.from_pretrained(src, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(src)
    inner = model.model
    visual = inner.visual
    absolute = has_absolute_positions(visual)
    if args.position_targets == "on" and not absolute:
        raise ValueError(
            f"--position_targets on: {type(visual).__name__} has no absolute position embeddings, so its tokens "
            "cannot know their row and column on a plain background; use auto or off"
        )
    targets = ["shape", "colour"] + (
        ["row", "col"] if args.position_targets == "on" or (args.position_targets == "auto" and absolute) else []
    )

    train_scenes = Scenes(args, processor.image_processor, f"{args.seed}/vision/train")
    eval_inputs, eval_labels = Scenes(args, processor.image_processor, f"{args.seed}/vision/eval").batch(
        args.eval_images
    )
    hidden = model.config.text_config.hidden_size
    sizes = {
        "shape": len(SHAPE_CLASSES),
        "colour": len(COLOUR_CLASSES),
        "row": train_scenes.grid,
        "col": train_scenes.grid,
    }
    heads = torch.nn.ModuleDict({k: torch.nn.Linear(hidden, sizes[k]) for k in targets})
    for p in model.parameters():
        p.requires_grad_(False)
    params = list(visual.parameters()) + list(heads.parameters())
    for p in visual.parameters():
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=0.0)
    warmup = max(1, int(args.warmup_ratio * args.max_steps))

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, args.max_steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)

    def measure() -> dict[str, float]:
        visual.eval()
        with torch.no_grad():
            result = accuracy(heads, merged_tokens(inner, eval_inputs), eval_labels, targets)
        visual.train()
        return result

    started = time.perf_counter()
    before = measure()
    history: list[dict] = [{"step": 0, **{f"eval_{k}": v for k, v in before.items()}}]
    losses: list[float] = []
    bar = tqdm(range(1, args.max_steps + 1), desc="vision", unit="step")
    visual.train()
    for step in bar:
        inputs, labels = train_scenes.batch(args.per_device_train_batch_size)
        feats = merged_tokens(inner, inputs)
        loss = sum(torch.nn.functional.cross_entropy(heads[k](feats), labels[k]) for k in targets)
        opt.zero_grad()
        loss.backward()
        if args.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if not math.isfinite(losses[-1]):
            raise RuntimeError(
                f"vision pretraining diverged at step {step} (loss {losses[-1]}); lower --learning_rate"
            )
        if step % args.logging_steps == 0:
            history.append({"step": step, "loss": round(sum(losses[-args.logging_steps :]) / args.logging_steps, 4),
                            "learning_rate": sched.get_last_lr()[0]})  # fmt: skip
            bar.set_postfix(loss=history[-1]["loss"])
        if step % args.eval_steps == 0 and step != args.max_steps:
            history.append({"step": step, **{f"eval_{k}": v for k, v in measure().items()}})
    after = measure()
    history.append({"step": args.max_steps, **{f"eval_{k}": v for k, v in after.items()}})
    seconds = round(time.perf_counter() - started, 1)

    # Write the whole model next to the source's other files (tokenizer, processor, the tiny model's own notes),
    # into a temporary folder first: a half-written checkpoint never appears under output_dir.
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(
        src, tmp, ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "checkpoint-*", "runs", "manifest.json")
    )
    model.save_pretrained(tmp)
    summary = {
        "targets": targets,
        "absolute_positions": absolute,
        "steps": args.max_steps,
        "images": args.max_steps * args.per_device_train_batch_size,
        "grid": train_scenes.grid,
        "chance": {
            "shape": round(1 / (len(SHAPE_CLASSES) - 1), 4),
            "colour": round(1 / (len(COLOUR_CLASSES) - 1), 4),
            "row": round(1 / train_scenes.grid, 4),
            "col": round(1 / train_scenes.grid, 4),
        },  # fmt: skip
        "before": before,
        "after": after,
        "train_runtime": seconds,
    }
    summary["curves"] = plot_curves(history, tmp / "curves.png", title="vision pretraining",
                                    keys=("loss", *(f"eval_{k}" for k in (*targets, "background"))))  # fmt: skip
    if summary["curves"]:
        summary["curves"] = str(out / "curves.png")
    manifest = {
        "stage": "vision",
        "inputs": {"model": str(src)},
        "config": asdict(args),
        "code_version": git_version(),
        "summary": summary,
        "log_history": history,
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print(json.dumps({k: v for k, v in summary.items() if k != "curves"}), flush=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
