"""Stage 1 (cold-start SFT) and stage 2's RFT: TRL's ``SFTTrainer`` on multi-turn judging trajectories.

    mmreward train sft --config train/recipes/tiny-cpu/sft.yaml [--learning_rate 5e-4 ...]
    accelerate launch --config_file train/accelerate/zero3.yaml -m train.sft --config train/recipes/qwen2_5_vl_7b/sft.yaml

Trajectories (the engine's JSONL: distilled ``kept.jsonl`` or rejection sampling's ``accepted.jsonl``) are
rendered by :mod:`train.render` exactly as the engine renders them at inference, images and tool observations
included; the loss is on assistant turns only. Configuration is three dataclasses (:class:`SFTScriptArguments`,
TRL's ``SFTConfig`` and ``ModelConfig``) read by ``TrlParser`` from a YAML recipe, with command-line overrides.

What this adds to TRL:

* padding-free packing of VLM traces with exact 3-D mRoPE positions (``pack: true``; see :mod:`train.collate`);
* sub-losses per kind of token (``loss_think``, ``loss_tool_call``, ``loss_answer``, ``loss_end``) and effective
  ``tokens_per_second`` in the logs;
* checkpoints written to a staging folder and renamed into place, so a ``kill -9`` never leaves a half-written
  ``checkpoint-N``; re-running the same command resumes from the last complete checkpoint (model, optimizer,
  scheduler, RNG and data position, as ``Trainer`` restores them);
* at the end: the model (or adapter) and processor in ``output_dir``, ``curves.png``, an optional accuracy on a
  records file (``eval_records``), and ``manifest.json``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from trl import ModelConfig, SFTConfig, SFTTrainer, TrlParser, get_peft_config

from train.arguments import EVAL_FIELDS, EvalArguments, settings_overrides
from train.collate import PackedCollator, PaddedCollator, attention_width, rope_function
from train.render import (
    KIND_NAMES,
    ChatRowsDataset,
    ExampleCache,
    Renderer,
    TrajectoryDataset,
    read_trajectory_files,
)

logger = logging.getLogger("mmreward.train")
STAGING = ".staging"


@dataclass
class SFTScriptArguments(EvalArguments):
    """mmreward's own SFT options (the rest is TRL's ``SFTConfig`` and ``ModelConfig``)."""

    train_files: list[str] = field(default_factory=list, metadata={"help": "trajectory JSONL files to train on"})
    eval_files: list[str] = field(default_factory=list, metadata={"help": "trajectory JSONL files for eval loss"})
    chat_files: list[str] = field(
        default_factory=list,
        metadata={
            "help": "one-turn chat JSONL files to train on beside the trajectories: rows {id, images, question, "
            "answer[, labels]} (captions, VQA, grounding; see train.render.ChatRowsDataset)"
        },
    )
    chat_limit: list[int] = field(
        default_factory=list,
        metadata={
            "help": "use only the first N rows of each chat file (e.g. a share of warm-up rows mixed into SFT): one N "
            "for every file, or one per file in chat_files' order"
        },
    )
    pack: bool = field(default=False, metadata={"help": "padding-free packing with exact mRoPE positions"})
    cache_gb: float = field(
        default=8.0,
        metadata={
            "help": "memory for rendered training examples (mostly pixel values, ~1.2 MB per 224-px image); past it "
            "examples are rendered again each time they are used (a few ms each). 0: render every time"
        },
    )
    freeze_vision_tower: bool = field(default=False, metadata={"help": "keep the vision encoder's weights fixed"})
    freeze_projector: bool = field(
        default=False, metadata={"help": "keep the vision-to-language projector (merger) fixed"}
    )
    stage: str = field(default="sft", metadata={"help": "the stage name recorded in the manifest (sft, rft, ...)"})


def parse(argv: list[str] | None = None, stage: str = "sft", extra: tuple[type, ...] = ()) -> tuple:
    """(script, *extra, SFTConfig, ModelConfig): ``extra`` are a caller's own argument dataclasses (a recipe may set
    their fields too)."""
    parser = TrlParser((SFTScriptArguments, *extra, SFTConfig, ModelConfig), prog=f"mmreward train {stage}")
    return parser.parse_args_and_config(argv)


# --------------------------------------------------------------------------------------------------------------------
# The trainer


class AtomicCheckpoints:
    """Trainer mixin: checkpoints are written to ``output_dir/.staging/`` and renamed into place when complete, so a
    ``kill -9`` never leaves a half-written ``checkpoint-N``; full checkpoints reload through ``from_pretrained``."""

    def _save_checkpoint(self, model, trial) -> None:
        """Write the checkpoint under ``output_dir/.staging/`` and rename it into place when complete."""
        run_dir = self._get_output_dir(trial=trial)
        staging = os.path.join(run_dir, STAGING)
        name = f"checkpoint-{self.state.global_step}"
        self._get_output_dir = lambda trial=None: staging  # noqa: ARG005
        try:
            super()._save_checkpoint(model, trial)
        finally:
            del self._get_output_dir
        self.accelerator.wait_for_everyone()
        if self.is_world_process_zero():
            final = os.path.join(run_dir, name)
            if os.path.exists(final):
                shutil.rmtree(final)
            os.replace(os.path.join(staging, name), final)
            fd = os.open(run_dir, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            if self.args.save_total_limit:
                from transformers.trainer_utils import rotate_checkpoints  # noqa: PLC0415

                rotate_checkpoints(run_dir, self.args.save_total_limit, self.state.best_model_checkpoint)
        self.accelerator.wait_for_everyone()

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        """Full checkpoints are reloaded through ``from_pretrained``: transformers 5 saves Qwen-VL weights under
        their conversion-mapped names, which ``Trainer``'s raw ``load_state_dict`` would silently miss (strict=False),
        resuming from random weights. Adapters and sharded (FSDP/DeepSpeed) checkpoints keep Trainer's path."""
        model = model if model is not None else self.model
        target = self.accelerator.unwrap_model(model)
        full = (Path(resume_from_checkpoint) / "model.safetensors").is_file() or (
            Path(resume_from_checkpoint) / "model.safetensors.index.json"
        ).is_file()
        if not full or hasattr(target, "peft_config") or self.is_deepspeed_enabled or self.is_fsdp_enabled:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        loaded = type(target).from_pretrained(resume_from_checkpoint, dtype=next(target.parameters()).dtype)
        missing, unexpected = target.load_state_dict(loaded.state_dict(), strict=True), None
        del loaded, missing, unexpected


class JudgeSFTTrainer(AtomicCheckpoints, SFTTrainer):
    """``SFTTrainer`` plus sub-losses, tokens/s and atomic checkpoints (see the module docstring)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._last_outputs = None
        self.model.register_forward_hook(self._capture)
        self._tokens_since_log = 0
        self._log_clock = time.perf_counter()

    def _capture(self, module, args, output) -> None:
        self._last_outputs = output

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        kinds = inputs.pop("loss_kinds", None)
        if "attention_mask" in inputs:
            n_tokens = int(inputs["attention_mask"].sum())
        else:
            n_tokens = int(inputs["input_ids"].numel())
        self._last_outputs = None
        result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        out = self._last_outputs
        log_probs = getattr(out, "log_probs", None)
        if kinds is not None and log_probs is not None and log_probs.dim() == 2:
            mode = "train" if self.model.training else "eval"
            k = kinds[:, 1:].to(log_probs.device)
            with torch.no_grad():
                for kind, name in KIND_NAMES.items():
                    m = k == kind
                    if bool(m.any()):
                        self._metrics[mode][f"loss_{name}"].append(float(-log_probs[m].mean()))
        if self.model.training:
            self._tokens_since_log += n_tokens
        return result

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self.model.training:
            now = time.perf_counter()
            tokens = self.accelerator.gather_for_metrics(
                torch.tensor(self._tokens_since_log, device=self.accelerator.device)
            ).sum()
            logs["tokens_per_second"] = round(float(tokens) / max(now - self._log_clock, 1e-9), 1)
            self._tokens_since_log, self._log_clock = 0, now
        super().log(logs, start_time)


def last_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest complete ``checkpoint-N`` (complete ones are only ever renamed into place)."""
    d = Path(output_dir)
    if not d.is_dir():
        return None
    found = sorted(
        (int(p.name.split("-")[1]), p)
        for p in d.glob("checkpoint-*")
        if p.is_dir() and p.name.split("-")[1].isdigit() and (p / "trainer_state.json").is_file()
    )
    return str(found[-1][1]) if found else None


# --------------------------------------------------------------------------------------------------------------------
# Building blocks


def load_for_training(model_args: ModelConfig, cfg: SFTConfig):
    from mmreward.modeling import ModelSettings, load_model  # noqa: PLC0415

    if not model_args.model_name_or_path:
        raise ValueError("model_name_or_path is required (a local checkpoint folder)")
    dtype = model_args.dtype if model_args.dtype not in (None, "auto") else ("bfloat16" if cfg.bf16 else "float32")
    device = "cpu" if cfg.use_cpu else "auto"
    if partitioned_weights() and (Path(model_args.model_name_or_path) / "adapter_config.json").is_file():
        # Under ZeRO-3 the base is partitioned as it loads, and PEFT cannot merge into partitioned weights.
        raise ValueError(
            f"{model_args.model_name_or_path} is a LoRA adapter and this run shards weights with ZeRO-3, which cannot "
            "merge it: write the full checkpoint first with `mmreward merge "
            f"{model_args.model_name_or_path} OUT` and set model_name_or_path to OUT"
        )
    model, processor = load_model(
        model_args.model_name_or_path,
        # Training on top of an adapter checkpoint (RFT after a LoRA SFT) merges it first; a new adapter goes on top.
        ModelSettings(dtype=dtype, device=device, attn_implementation=model_args.attn_implementation, merge_lora=True),
    )
    model.train()
    return model, processor


def partitioned_weights() -> bool:
    """Whether this process loads weights partitioned (DeepSpeed ZeRO-3 with zero.Init)."""
    from transformers.integrations import is_deepspeed_zero3_enabled  # noqa: PLC0415

    return bool(is_deepspeed_zero3_enabled())


def record_adapter_base(out: str | os.PathLike, model_name_or_path: str) -> None:
    """Make a LoRA stage's adapter name the checkpoint it was trained on as its base (PEFT records the original
    model, because the input adapter was merged first), so loading it keeps every earlier stage's weights."""
    config_path = Path(out) / "adapter_config.json"
    if not config_path.is_file():
        return
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = str(Path(model_name_or_path).resolve())
    config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")


def lora_config(model_args: ModelConfig, model=None, train_projector: bool = False):
    """The PEFT config the recipe asks for (None for full fine-tuning); LoRA targets default to mmreward's.

    PEFT freezes everything it does not adapt, so a projector that is to be trained under LoRA (``freeze_projector:
    false``) is trained in full through ``modules_to_save``."""
    if not model_args.use_peft:
        return None
    from mmreward.modeling import LORA_TARGETS  # noqa: PLC0415

    if not model_args.lora_target_modules:
        model_args.lora_target_modules = LORA_TARGETS
    if train_projector and model is not None:
        extra = [m for m in projector_modules(model) if m not in (model_args.lora_modules_to_save or [])]
        model_args.lora_modules_to_save = list(model_args.lora_modules_to_save or []) + extra
    return get_peft_config(model_args)


PROJECTOR_PREFIXES = ("merger", "deepstack_merger_list")  # Qwen2.5-VL's merger; Qwen3-VL's also its deepstack mergers


def projector_modules(model) -> list[str]:
    """Names (relative to the model) of the modules that project vision features into the language model."""
    return [
        n
        for n, _ in model.named_modules()
        if n.endswith(".visual.merger") or (".deepstack_merger_list." in n and n.split(".")[-1].isdigit())
    ]


def freeze(model, vision_tower: bool, projector: bool) -> dict[str, int]:
    """Freeze the vision tower's blocks and/or the projector (merger and, on Qwen3-VL, the deepstack mergers)."""
    inner = getattr(model, "model", model)
    visual = getattr(inner, "visual", None)
    frozen = 0
    if visual is None:
        return {"frozen_parameters": 0}
    for n, p in visual.named_parameters():
        is_projector = n.startswith(PROJECTOR_PREFIXES)
        if (is_projector and projector) or (not is_projector and vision_tower):
            p.requires_grad_(False)
            frozen += p.numel()
    return {"frozen_parameters": frozen}


def build_datasets(
    script: SFTScriptArguments, processor, max_length: int | None
) -> tuple[TrajectoryDataset, TrajectoryDataset | None, dict]:
    """Render every example up front (kept in memory up to ``cache_gb``); trajectories longer than ``max_length``
    (SFTConfig's) are skipped and counted."""
    renderer = Renderer(processor, max_length=max_length)
    cache = ExampleCache(int(script.cache_gb * (1 << 30)))
    if not script.train_files and not script.chat_files:
        raise ValueError(
            "train_files and chat_files are empty; point train_files at trajectory JSONL (a distill run's "
            "kept.jsonl) or chat_files at one-turn chat rows"
        )
    if len(script.chat_limit) > 1 and len(script.chat_limit) != len(script.chat_files):
        raise ValueError(
            f"chat_limit has {len(script.chat_limit)} values for {len(script.chat_files)} chat_files; give one N for "
            "every file, or one per file"
        )
    missing = [f for f in script.train_files + script.eval_files + script.chat_files if not Path(f).is_file()]
    if missing:
        raise FileNotFoundError(f"training file(s) not found: {missing}")

    def build(files: list[str]) -> tuple[TrajectoryDataset, int]:
        trajs = read_trajectory_files(files)
        ds = TrajectoryDataset(trajs, renderer, skip_bad=True, cache=cache)  # bad data fails here, not mid-training
        for reason in ds.skipped:
            logger.warning("skipping %s", reason)
        if trajs and not ds.trajectories:
            raise ValueError(f"no trajectory in {files} could be rendered for training")
        return ds, len(ds.skipped)

    parts, skipped = [], 0
    if script.train_files:
        traj_ds, skipped = build(script.train_files)
        parts.append(traj_ds)
    n_traj = len(parts[0].trajectories) if parts else 0
    n_segments = len(parts[0]) if parts else 0
    limits = script.chat_limit * len(script.chat_files) if len(script.chat_limit) == 1 else script.chat_limit
    for f, limit in zip(script.chat_files, limits or [None] * len(script.chat_files), strict=True):
        parts.append(ChatRowsDataset(f, renderer, limit=limit, cache=cache))
    parts = [p for p in parts if len(p)]
    if not parts:
        raise ValueError("nothing to train on: every input file was empty")
    train = torch.utils.data.ConcatDataset(parts)
    stats = {
        "train_trajectories": n_traj,
        "train_segments": n_segments,
        "chat_examples": len(train) - n_segments,
        "skipped": skipped,
    }
    sizes = [(len(e), e.trained_tokens) for e in map(train.__getitem__, range(len(train)))]  # renders each once
    lengths = [n for n, _ in sizes]
    train.lengths = lengths  # for the length-aware samplers
    stats.update(
        tokens=sum(lengths),
        trained_tokens=sum(t for _, t in sizes),
        max_length_seen=max(lengths),
        cached_examples=len(cache),
        cache_used_gb=round(cache.bytes / (1 << 30), 2),
    )
    eval_ds = build(script.eval_files)[0] if script.eval_files else None
    return train, eval_ds, stats


def _index_dataset(n: int, split: str, lengths: list[int] | None = None):
    """TRL wants a ``datasets.Dataset``: rows are indices into the rendered examples, which stay in memory. With
    ``lengths`` a ``length`` column holds each example's tokens, which transformers' length-aware samplers read
    (``train_sampling_strategy: group_by_length`` or ``batch_rebalance``)."""
    from datasets import Dataset  # noqa: PLC0415

    columns = {"idx": list(range(n)), "split": [split] * n}
    if lengths is not None:
        columns["length"] = list(lengths)
    return Dataset.from_dict(columns)


class IndexCollator:
    """Collate index rows: fetch each rendered example, then batch them (padded or packed)."""

    def __init__(self, datasets: dict[str, TrajectoryDataset], collator) -> None:
        self.datasets, self.collator = datasets, collator

    def __call__(self, rows):
        return self.collator([self.datasets[r["split"]][int(r["idx"])] for r in rows])


def resume_point(cfg) -> str | None:
    """The checkpoint to resume from: the newest complete one in ``output_dir`` unless the config names one."""
    if cfg.resume_from_checkpoint in (None, "auto", "True", True):
        return last_checkpoint(cfg.output_dir)
    return cfg.resume_from_checkpoint


def _finished(checkpoint: str, cfg) -> bool:
    """Whether ``checkpoint`` is the last step of a ``max_steps`` run."""
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
    return cfg.max_steps > 0 and state.get("global_step", 0) >= cfg.max_steps


def train_and_save(
    trainer, processor, cfg, stage: str, resume: str | None, started: float, extra: dict, base_model: str | None = None
) -> dict:
    """Train (resuming if asked), save the model and processor in ``output_dir``, and return the run summary.
    ``base_model`` is the checkpoint trained on, recorded as a LoRA adapter's base."""
    if resume:
        logger.warning("resuming from %s", resume)
        print(f"[{stage}] resuming from {resume}", flush=True)
    if resume and _finished(resume, cfg):
        # Trainer would take one more step here: resuming mid-epoch, it skips the seen batches and only checks
        # max_steps after the next optimizer step. So a finished run's weights and state are loaded, not trained.
        from transformers import TrainerState  # noqa: PLC0415

        trainer._load_from_checkpoint(resume)
        trainer.state = TrainerState.load_from_json(str(Path(resume) / "trainer_state.json"))
        train_loss = 0.0  # nothing trained in this call (what Trainer reports for a re-run at an epoch's end)
    else:
        train_loss = trainer.train(resume_from_checkpoint=resume).training_loss
    trainer.save_model(cfg.output_dir)
    if trainer.is_world_process_zero():
        processor.save_pretrained(cfg.output_dir)
        if base_model:
            record_adapter_base(cfg.output_dir, base_model)
    # Leave the process group together, now: what follows (plots, eval, manifest) is rank 0's alone. A rank that
    # exits with its gloo group still open while the other is busy was seen to die with SIGABRT at shutdown (about
    # 1 run in 10 of the 2-process test), failing a run whose training and checkpoint were complete.
    trainer.accelerator.wait_for_everyone()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return {
        "stage": stage,
        "train_loss": round(float(train_loss), 5),
        "global_step": trainer.state.global_step,
        "resumed_from": resume,
        "world_size": trainer.accelerator.num_processes,
        "seconds": round(time.perf_counter() - started, 1),
        **extra,
    }


def record_judge_settings(out: str, train_files: list[str], base_model: str | None) -> None:
    """Write into the checkpoint the visual/tool settings its trajectories were produced with (the first one's),
    or carry over the base checkpoint's, so the judge and the server show the model what it was trained on."""
    from mmreward.settings import ENGINE_SETTINGS_FILE, save_engine_settings  # noqa: PLC0415

    for f in train_files:
        with Path(f).open(encoding="utf-8") as fh:
            first = next((line for line in fh if line.strip()), None)
        if first:
            save_engine_settings(out, json.loads(first).get("settings") or {})
            return
    if base_model and Path(base_model, ENGINE_SETTINGS_FILE).is_file():
        shutil.copy(Path(base_model, ENGINE_SETTINGS_FILE), Path(out, ENGINE_SETTINGS_FILE))


def git_version() -> str:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                cwd=Path(__file__).parent,
                timeout=5,
            ).stdout.strip()
            or "unknown"
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# --------------------------------------------------------------------------------------------------------------------
# Entry point


Evaluation = Callable[[Any, Any], dict]  # (model, processor) -> results, run on the trained model before it is freed


def run(
    script: SFTScriptArguments,
    cfg: SFTConfig,
    model_args: ModelConfig,
    evaluations: dict[str, Evaluation] | None = None,
) -> dict:
    """Train, save, evaluate on ``eval_records`` and write the manifest. ``evaluations`` are a caller's own, each
    result stored under its name in the summary."""
    started = time.perf_counter()
    cfg.remove_unused_columns = False
    cfg.dataset_kwargs = {"skip_prepare_dataset": True}
    cfg.packing = False  # TRL's packing refuses vision data; ours is `pack`
    if cfg.use_cpu and cfg.bf16:
        raise ValueError("bf16 on CPU is not supported here: set bf16: false with use_cpu: true")
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / STAGING, ignore_errors=True)  # a checkpoint interrupted while being written

    model, processor = load_for_training(model_args, cfg)
    frozen = freeze(model, script.freeze_vision_tower, script.freeze_projector)
    train, eval_ds, stats = build_datasets(script, processor, cfg.max_length)
    collator = (
        PackedCollator(rope_function(model), attention_width=attention_width(model))
        if script.pack
        else PaddedCollator(processor.tokenizer.pad_token_id)
    )
    trainer = JudgeSFTTrainer(
        model=model,
        args=cfg,
        train_dataset=_index_dataset(len(train), "train", train.lengths),
        eval_dataset=_index_dataset(len(eval_ds), "eval") if eval_ds is not None else None,
        data_collator=IndexCollator({"train": train, "eval": eval_ds}, collator),
        processing_class=processor,
        peft_config=lora_config(model_args, model, train_projector=not script.freeze_projector),
    )
    resume = resume_point(cfg)
    summary = train_and_save(
        trainer, processor, cfg, script.stage, resume, started, {**stats, **frozen}, model_args.model_name_or_path
    )
    if trainer.is_world_process_zero():
        from train.plots import plot_curves  # noqa: PLC0415

        record_judge_settings(cfg.output_dir, script.train_files, model_args.model_name_or_path)
        summary["curves"] = plot_curves(trainer.state.log_history, out / "curves.png", title=f"{script.stage}")
        if script.eval_records and sharded(trainer):
            summary["eval"] = evaluate_saved(cfg.output_dir, script)
        elif script.eval_records:
            summary["eval"] = evaluate_checkpoint(trainer.model, processor, script, cfg.output_dir)
        for name, evaluate in (evaluations or {}).items():
            summary[name] = evaluate(trainer.model, processor)
        manifest = {
            "stage": script.stage,
            "inputs": {
                "train_files": script.train_files,
                "eval_files": script.eval_files,
                "model": model_args.model_name_or_path,
            },
            "config": {
                "script": asdict(script),
                "model": asdict(model_args),
                "trainer": {k: v for k, v in cfg.to_dict().items() if not k.startswith("_")},
            },
            "code_version": git_version(),
            "summary": summary,
            "log_history": trainer.state.log_history,
        }
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
        print(json.dumps({k: v for k, v in summary.items() if k != "curves"}, default=str), flush=True)
    return summary


def sharded(trainer) -> bool:
    """Whether the trained weights are spread over processes (ZeRO-3 or FSDP), so no one rank can judge with them."""
    return bool(getattr(trainer, "is_fsdp_enabled", False)) or (
        bool(getattr(trainer, "is_deepspeed_enabled", False)) and partitioned_weights()
    )


def evaluate_saved(model_dir: str | os.PathLike, script) -> dict:
    """:func:`evaluate_checkpoint` on a saved folder, in a fresh process (``python -m train.evaluate``)."""
    import tempfile  # noqa: PLC0415

    fields = {k: getattr(script, k) for k in EVAL_FIELDS}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "eval.json"
        cmd = [sys.executable, "-m", "train.evaluate", "--model", str(model_dir), "--script", json.dumps(fields)]
        r = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True)
        if r.returncode != 0 or not out.is_file():
            raise RuntimeError(f"evaluating {model_dir} in a fresh process failed:\n{r.stderr[-3000:]}")
        return json.loads(out.read_text(encoding="utf-8"))


def evaluate_checkpoint(model, processor, script: SFTScriptArguments, model_dir: str | None = None) -> dict:
    """Greedy judging of ``eval_records`` (tools on by default): accuracy, by category and needs-tool. The engine
    settings are the ones ``model_dir`` recorded (:func:`mmreward.settings.resolve_engine_settings`), or those of
    ``settings_file`` when given."""
    from data_pipelines.records import read_records  # noqa: PLC0415
    from data_pipelines.rejection import judge_records  # noqa: PLC0415
    from mmreward.generators import SamplingSettings, TransformersGenerator  # noqa: PLC0415
    from mmreward.settings import resolve_engine_settings  # noqa: PLC0415

    records = read_records(script.eval_records)
    engine = resolve_engine_settings(model_dir, processor, **settings_overrides(script.settings_file))
    model.eval()
    gen = TransformersGenerator(
        model, processor, SamplingSettings(max_new_tokens=script.eval_max_new_tokens, temperature=0.0)
    )
    root = script.eval_media_root or str(Path(script.eval_records).parent)
    report = judge_records(records, gen, engine, media_root=root, tools=script.eval_tools, limit=script.eval_limit)
    return {"accuracy": report["accuracy"], "items": report["items"], "groups": report["groups"]}


def main(argv: list[str] | None = None, stage: str | None = None) -> int:
    script, cfg, model_args = parse(argv, stage or "sft")
    if stage:
        script.stage = stage
    setup_logging()
    run(script, cfg, model_args)
    return 0


def setup_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


if __name__ == "__main__":
    sys.exit(main())
