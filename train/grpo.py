"""Stage 3: GRPO with multi-turn tool rollouts (TRL's ``GRPOTrainer`` with an ``environment_factory``).

    mmreward train grpo --config train/recipes/tiny-cpu/grpo.yaml [--learning_rate 1e-5 ...]
    accelerate launch --config_file train/accelerate/zero3.yaml -m train.grpo --config train/recipes/qwen2_5_vl_7b/grpo.yaml

Each rollout gets a :class:`JudgeEnvironment` holding its record's media and exposing the protocol's tools
(``crop``, ``select_frames``) through the same registry, budgets and error observations as the engine. The
prompt of every row is built by :func:`mmreward.protocol.build_conversation` (overview images and video frames
sized by the engine's visual settings), the chat template is the checkpoint's (the project's), and the tool
schemas TRL renders from the environment's methods are the registry's own (both are read from the same
documented signatures), so what GRPO trains is what the judge runs. ``tests/test_grpo.py`` checks the prompt
and the post-tool context token for token against the engine.

Known differences with the engine, and their effect:

* The engine ends a turn at ``</tool_call>``/``</answer>``; TRL generates until ``<|im_end|>``. For a model that
  closes its turn right after the tag (every SFT target does), the tokens are the same; text a model writes
  after the tag stays in its GRPO context and is penalised by the ``format`` reward.
* A call with arguments the signature does not name reaches the registry, which refuses it with the engine's
  message; nothing differs.
* TRL's loop is append-only: the context keeps every observation (no visual memory window). Recipes keep
  ``max_tool_calling_iterations`` and ``max_completion_length`` within what inference allows.

On top of TRL (narrow overrides, see :class:`JudgeGRPOTrainer`): StableReinforce's stabilisers (a clamped
log-ratio before the importance weight is exponentiated; advantages that are not finite or beyond
``advantage_outlier_sigma`` standard deviations are dropped), the share of dropped advantages logged, atomic
checkpoints with resume after a kill (as in SFT), accuracy and tool-call rate on ``eval_records`` before and
after, reward curves in ``curves.png`` and a manifest.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import random
import shutil
import sys
import time
import typing
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from trl import GRPOConfig, GRPOTrainer, ModelConfig, TrlParser

from data_pipelines.records import PreferenceRecord, presented_orders, read_records
from mmreward.generators import vision_token_ids
from mmreward.protocol import build_conversation, image_budget_for, resolve_images, tool_message
from mmreward.settings import EngineSettings, settings_to_dict
from mmreward.tools import Budget, Tool, ToolContext, ToolRegistry, default_registry
from train.arguments import EvalArguments, settings_overrides
from train.rewards import RewardSettings, make_reward_funcs
from train.server_rounds import ServerRounds
from train.sft import (
    STAGING,
    AtomicCheckpoints,
    evaluate_checkpoint,
    evaluate_saved,
    git_version,
    load_for_training,
    lora_config,
    partitioned_weights,
    resume_point,
    sharded,
    train_and_save,
)

logger = logging.getLogger("mmreward.train")

CURVE_KEYS = (
    "reward",
    "reward_std",
    "frac_reward_zero_std",
    "stable/dropped_advantages",
    "tools/call_frequency",
    "tools/failure_frequency",
    "completions/mean_length",
    "kl",
    "loss",
    "learning_rate",
    "grad_norm",
)


@dataclass
class GRPOScriptArguments(EvalArguments):
    """mmreward's own GRPO options (the rest is TRL's ``GRPOConfig`` and ``ModelConfig``)."""

    train_files: list[str] = field(
        default_factory=list, metadata={"help": "record JSONL files: rejection sampling's grpo_pool.jsonl, or any"}
    )
    media_root: str | None = field(default=None, metadata={"help": "media folder (default: each file's folder)"})
    limit: int | None = field(default=None, metadata={"help": "use at most this many records"})
    swap: str = field(default="random", metadata={"help": "presented order per record: none | random | both"})
    max_tool_calls: int = field(
        default=3, metadata={"help": "tool calls per rollout (TRL's max_tool_calling_iterations wins when set)"}
    )
    rewards: list[str] = field(
        default_factory=lambda: ["accuracy", "format", "tool"],
        metadata={"help": "reward functions (train/rewards.py): accuracy, format, tool, length"},
    )
    tool_bonus: float = field(
        default=0.5, metadata={"help": "tool reward: bonus for a right verdict after a successful tool call"}
    )
    invalid_penalty: float = field(default=0.1, metadata={"help": "tool reward: penalty per invalid tool call"})
    length_target: int = field(
        default=512, metadata={"help": "length reward: 0 up to this many tokens, down to -1 at twice it"}
    )
    log_ratio_clamp: float | None = field(
        default=10.0, metadata={"help": "StableReinforce: clamp log(pi/pi_old) to +-this before exp (None: off)"}
    )
    advantage_outlier_sigma: float | None = field(
        default=3.0, metadata={"help": "StableReinforce: drop advantages beyond this many std (None: off)"}
    )
    eval_before: bool = field(default=True, metadata={"help": "judge eval_records before training too"})
    stage: str = field(default="grpo", metadata={"help": "the stage name recorded in the manifest"})


def parse(argv: list[str] | None = None) -> tuple[GRPOScriptArguments, GRPOConfig, ModelConfig]:
    parser = TrlParser((GRPOScriptArguments, GRPOConfig, ModelConfig), prog="mmreward train grpo")
    return parser.parse_args_and_config(argv)


def engine_settings(
    script: GRPOScriptArguments, max_turns: int, model_dir: str | None = None, processor=None
) -> EngineSettings:
    """The engine settings rollouts use: the checkpoint's (see :mod:`mmreward.settings`), with the run's tool budget."""
    from mmreward.settings import resolve_engine_settings  # noqa: PLC0415

    budget = Budget(max_tool_calls=script.max_tool_calls)
    overrides = settings_overrides(script.settings_file)
    return resolve_engine_settings(model_dir, processor, max_turns=max_turns, budget=budget, **overrides)


# --------------------------------------------------------------------------------------------------------------------
# The environment


def _tool_method(tool: Tool):
    """An environment method with the tool's documented signature (TRL renders its schema from it) that hands
    whatever arguments the model gave to the registry, as the engine does."""

    def method(self, **arguments):
        return self._call(tool.name, arguments)

    sig = inspect.signature(tool.signature)
    hints = typing.get_type_hints(tool.signature)
    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    method.__name__ = method.__qualname__ = tool.name
    method.__doc__ = tool.signature.__doc__
    method.__signature__ = sig.replace(parameters=[self_param, *sig.parameters.values()])
    method.__annotations__ = hints
    return method


def environment_class(
    settings: EngineSettings, media_root: str | None, tools: list[str], registry: ToolRegistry | None = None
):
    """A ``JudgeEnvironment`` class bound to the run's settings and exposing ``tools`` (the engine offers crop for
    images, crop and select_frames for video); TRL makes one instance per rollout."""
    registry = registry or default_registry()

    class JudgeEnvironment:
        """One judging rollout: the record's media, the tool context and budget, and the tool trace."""

        def __init__(self) -> None:
            self.ctx: ToolContext | None = None
            self.trace: list[dict[str, Any]] = []
            # What the rollout's trajectory record needs (train.rewards.rollout_trajectory): the task as judged,
            # the prompt messages and each tool message, by reference, as the engine writes them.
            self.task: dict[str, Any] = {}
            self.messages: list[dict[str, Any]] = []
            self.tool_messages: list[dict[str, Any]] = []
            self.settings = settings_to_dict(settings)

        def reset(self, record: str, order: list[int], media_root: str | None = None, **_) -> None:
            rec = PreferenceRecord.from_dict(json.loads(record)).resolved(media_root or root)
            conv = build_conversation(
                rec.to_task(),
                list(order),
                tools_on=True,
                visual=settings.visual,
                tool_settings=settings.tools,
                budget=settings.budget,
            )
            self.ctx, self.trace = conv.context, []
            self.task, self.messages, self.tool_messages = rec.to_task().to_dict(), conv.messages, []
            return None  # the prompt is the dataset row's (built by the same function)

        def _call(self, name: str, arguments: dict[str, Any]) -> list[dict[str, Any]]:
            if self.ctx is None:
                raise RuntimeError("reset() was not called")
            result = registry.call(self.ctx, name, arguments)
            self.trace.append(result.trace())
            self.tool_messages.append(tool_message(result.text, [n for n, _ in result.images]))
            # The engine's tool message: observation images first, then the text (see protocol.tool_message).
            parts: list[dict[str, Any]] = []
            for obs_name, image in result.images:
                budget = image_budget_for(obs_name, settings.visual)
                parts.append({"type": "image", "image": budget.fit(image) if budget else image})
            parts.append({"type": "text", "text": result.text})
            return parts

    root = media_root
    for name in tools:
        setattr(JudgeEnvironment, name, _tool_method(registry.get(name)))
    JudgeEnvironment.__name__ = JudgeEnvironment.__qualname__ = f"JudgeEnvironment[{'+'.join(tools)}]"
    return JudgeEnvironment


def environments(settings: EngineSettings, media_root: str | None) -> dict[str, type]:
    """The environments by visual kind (each row names its own in the ``environment`` column)."""
    return {
        "image": environment_class(settings, media_root, ["crop"]),
        "video": environment_class(settings, media_root, ["crop", "select_frames"]),
    }


# --------------------------------------------------------------------------------------------------------------------
# Data


def trl_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Protocol messages (image references) -> TRL's conversational prompt (``{"type": "image"}`` placeholders)."""
    out = []
    for m in messages:
        content = []
        for p in m["content"]:
            content.append({"type": "image"} if p.get("type") == "image" else {"type": "text", "text": p["text"]})
        out.append({"role": m["role"], "content": content})
    return out


def build_rows(
    records: list[PreferenceRecord], settings: EngineSettings, media_root: str | None, swap: str, seed: int
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """One row per (record, presented order): the prompt as the engine builds it, its images, the record."""
    rows, skipped = [], {}
    for rec in records:
        if rec.metadata_only:
            skipped["metadata_only"] = skipped.get("metadata_only", 0) + 1
            continue
        resolved = rec.resolved(media_root)
        for order in presented_orders(rec, swap, seed):
            try:
                conv = build_conversation(
                    resolved.to_task(),
                    order,
                    tools_on=True,
                    visual=settings.visual,
                    tool_settings=settings.tools,
                    budget=settings.budget,
                )
            except ValueError as exc:  # MediaError is a ValueError: a broken file skips the item, counted
                key = type(exc).__name__
                skipped[key] = skipped.get(key, 0) + 1
                logger.warning("skipping %s: %s", rec.id, exc)
                continue
            messages, images = resolve_images(conv.messages, conv.context.images, settings.visual)
            rows.append(
                {
                    "prompt": trl_messages(conv.messages),
                    "images": images,
                    "record": json.dumps(rec.to_dict(), ensure_ascii=False),
                    "order": list(order),
                    "media_root": str(media_root) if media_root else None,
                    "id": rec.id,
                    "environment": resolved.to_task().visual_kind,
                }
            )
    return rows, skipped


def to_dataset(rows: list[dict[str, Any]]):
    """A ``datasets.Dataset`` whose prompt keeps its exact message structure (as JSON, decoded on access)."""
    from datasets import Dataset  # noqa: PLC0415

    ds = Dataset.from_list([{**r, "prompt": json.dumps(r["prompt"])} for r in rows])

    def decode(batch):
        batch["prompt"] = [json.loads(p) for p in batch["prompt"]]
        return batch

    ds.set_transform(decode, output_all_columns=True)
    return ds


# --------------------------------------------------------------------------------------------------------------------
# The trainer


class JudgeGRPOTrainer(ServerRounds, AtomicCheckpoints, GRPOTrainer):
    """``GRPOTrainer`` with StableReinforce's stabilisers and atomic checkpoints.

    * Advantage filter (override of ``_generate_and_score_completions``, after TRL has computed the
      group-normalised advantages): advantages that are not finite, or further than ``advantage_outlier_sigma``
      standard deviations from the batch mean, are set to 0, so their rollouts contribute no gradient. The share
      is logged as ``stable/dropped_advantages``.
    * Log-ratio clamp (override of ``_compute_loss``): TRL computes ``exp(logp - old_logp)`` inside
      ``_compute_loss`` with no hook in between, so for the duration of that call the per-token log-probabilities
      are replaced by ``old + clamp(logp - old, -c, c)`` (gradient 0 where clamped, like the PPO clip). It only
      matters when old log-probs exist (``num_iterations > 1`` or vLLM sampling); on-policy the ratio is 1.
    """

    def __init__(self, *args, log_ratio_clamp: float | None = None, advantage_sigma: float | None = None, **kw):
        super().__init__(*args, **kw)
        self.log_ratio_clamp = log_ratio_clamp
        self.advantage_sigma = advantage_sigma
        self.step_times: dict[str, float] = {"generate_and_score": 0.0, "optimise": 0.0}

    def _generate_and_score_completions(self, inputs):
        start = time.perf_counter()
        out = super()._generate_and_score_completions(inputs)
        adv = out.get("advantages")
        if adv is not None and self.advantage_sigma is not None:
            out["advantages"], dropped = drop_outlier_advantages(adv, self.advantage_sigma)
            mode = "train" if self.model.training else "eval"
            self._metrics[mode]["stable/dropped_advantages"].append(dropped)
        self.step_times["generate_and_score"] += time.perf_counter() - start
        return out

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # TRL writes its completions table with pandas/pyarrow, which cannot store a column whose messages hold a
        # string content in one row and a list of parts in another (a tool rollout has both), nor tool arguments of
        # different shapes: every content becomes a list of parts and tool arguments a JSON string, as OpenAI sends.
        if self.log_completions:
            for key in ("prompt", "completion"):
                rows = [tabular_messages(m) for m in self._logs[key]]
                self._logs[key].clear()
                self._logs[key].extend(rows)
        super().log(logs, start_time)

    def _compute_loss(self, model, inputs):
        old = inputs.get("old_per_token_logps")
        if self.log_ratio_clamp is None or old is None:
            return super()._compute_loss(model, inputs)
        with _clamped_logps(self, old, self.log_ratio_clamp):
            return super()._compute_loss(model, inputs)

    def training_step(self, model, inputs, num_items_in_batch=None):
        start = time.perf_counter()
        before = self.step_times["generate_and_score"]
        loss = super().training_step(model, inputs, num_items_in_batch)
        spent = time.perf_counter() - start - (self.step_times["generate_and_score"] - before)
        self.step_times["optimise"] += spent
        return loss


def tabular_messages(messages: Any) -> Any:
    """A conversation in one shape per field (see ``JudgeGRPOTrainer.log``); anything but a list is left alone."""
    if not isinstance(messages, list):
        return messages
    out = []
    for m in messages:
        m = dict(m)
        if isinstance(m.get("content"), str):
            m["content"] = [{"type": "text", "text": m["content"]}]
        if m.get("tool_calls"):
            calls = []
            for c in m["tool_calls"]:
                c = json.loads(json.dumps(c, default=str))
                fn = c.get("function") or {}
                if "arguments" in fn and not isinstance(fn["arguments"], str):
                    fn["arguments"] = json.dumps(fn["arguments"], ensure_ascii=False)
                calls.append(c)
            m["tool_calls"] = calls
        out.append(m)
    return out


def drop_outlier_advantages(adv: torch.Tensor, sigma: float) -> tuple[torch.Tensor, float]:
    """Zero advantages that are not finite or beyond ``sigma`` std of the mean; returns (advantages, share)."""
    finite = torch.isfinite(adv)
    keep = finite.clone()
    if int(finite.sum()) > 1:
        vals = adv[finite]
        std = vals.std()
        if float(std) > 0:
            keep &= (adv - vals.mean()).abs() <= sigma * std
    cleaned = torch.where(keep, adv, torch.zeros_like(adv))
    return cleaned, float((~keep).float().mean()) if adv.numel() else 0.0


@contextmanager
def _clamped_logps(trainer: GRPOTrainer, old: torch.Tensor, c: float):
    original = trainer._get_per_token_logps_and_entropies

    def clamped(*args, **kwargs):
        logps, entropies, *rest = original(*args, **kwargs)
        o = old.to(logps.dtype)
        logps = o + torch.clamp(logps - o, -c, c)
        return (logps, entropies, *rest)

    trainer._get_per_token_logps_and_entropies = clamped
    try:
        yield
    finally:
        del trainer._get_per_token_logps_and_entropies


# --------------------------------------------------------------------------------------------------------------------
# Entry point


def load_records(script: GRPOScriptArguments) -> tuple[list[PreferenceRecord], str | None]:
    if not script.train_files:
        raise ValueError("train_files is empty; point it at a records file (rejection sampling's grpo_pool.jsonl)")
    missing = [f for f in script.train_files if not Path(f).is_file()]
    if missing:
        raise FileNotFoundError(f"record file(s) not found: {missing}")
    records = [r for f in script.train_files for r in read_records(f)]
    if script.limit:
        records = random.Random(0).sample(records, min(script.limit, len(records)))
    if not records:
        raise ValueError(f"no records in {script.train_files}; nothing to train on")
    root = script.media_root or str(Path(script.train_files[0]).parent)
    return records, root


def check_tool_loop_distribution(cfg: GRPOConfig, world_size: int, partitioned: bool) -> None:
    """Refuse the multi-process setups where TRL 1.16's tool loop hangs or mixes up completions.

    The loop generates only on ranks that still have pending tool calls. vLLM server mode is made safe here
    (:mod:`train.server_rounds` keeps every rank in every round); vLLM colocate with tensor parallel size 1 and
    plain DDP have no collective in generate. Colocated tensor parallelism gathers prompts across its group, and
    transformers generation under ZeRO-3 gathers parameters on every forward: a rank with nothing left to
    generate leaves the others waiting, so those are refused."""
    if world_size <= 1:
        return
    if cfg.use_vllm and cfg.vllm_mode == "colocate" and (cfg.vllm_tensor_parallel_size or 1) > 1:
        raise ValueError(
            "GRPO with tools cannot use vllm_tensor_parallel_size > 1: colocated generate then gathers across the "
            "tensor-parallel group, which ranks without pending tool calls skip; set it to 1, or use vllm_mode: "
            "server"
        )
    if not cfg.use_vllm and partitioned:
        raise ValueError(
            f"GRPO with tools on {world_size} processes under ZeRO-3 needs vLLM (use_vllm: true, vllm_mode: "
            "colocate or server): transformers generation gathers partitioned weights collectively on every "
            "forward, and the tool loop generates only on ranks with pending calls"
        )


def vision_suppression(cfg: GRPOConfig, ids: list[int]) -> dict[str, Any]:
    """``generation_kwargs`` that keep vision placeholder tokens out of sampling (a sampled ``<|video_pad|>`` breaks
    the next turn's rope index), in the generating engine's own terms: ``suppress_tokens`` for ``transformers``;
    for vLLM, whose ``SamplingParams`` has no such field (colocate raises, the server ignores it), a -100 logit bias,
    which TRL passes through to ``SamplingParams`` in both modes."""
    kwargs = dict(cfg.generation_kwargs or {})
    if not cfg.use_vllm:
        kwargs.setdefault("suppress_tokens", ids)
        return kwargs
    if "suppress_tokens" in kwargs:
        raise ValueError(
            "generation_kwargs.suppress_tokens is a transformers option that vLLM does not have; with use_vllm, "
            "give logit_bias instead (mmreward already biases the vision tokens to -100)"
        )
    bias = {int(i): -100.0 for i in ids}
    bias.update({int(k): float(v) for k, v in (kwargs.get("logit_bias") or {}).items()})
    kwargs["logit_bias"] = bias
    return kwargs


def build_trainer(script: GRPOScriptArguments, cfg: GRPOConfig, model_args: ModelConfig):
    """The trainer, its dataset and engine settings (also used by tests and the rollout benchmark)."""
    if cfg.use_cpu and cfg.bf16:
        raise ValueError("bf16 on CPU is not supported here: set bf16: false with use_cpu: true")
    if script.swap not in ("none", "random", "both"):
        raise ValueError(f"swap must be none, random or both, not {script.swap!r}")
    cfg.remove_unused_columns = False
    check_tool_loop_distribution(cfg, int(os.environ.get("WORLD_SIZE", "1")), partitioned_weights())
    model, processor = load_for_training(model_args, cfg)
    records, root = load_records(script)
    max_turns = (cfg.max_tool_calling_iterations or script.max_tool_calls) + 1
    settings = engine_settings(script, max_turns, model_args.model_name_or_path, processor)
    rows, skipped = build_rows(records, settings, root, script.swap, cfg.seed)
    if not rows:
        raise ValueError(f"no usable records (skipped: {skipped})")
    cfg.generation_kwargs = vision_suppression(cfg, vision_token_ids(processor.tokenizer))
    reward_settings = RewardSettings(script.tool_bonus, script.invalid_penalty, script.length_target)
    funcs = make_reward_funcs(script.rewards, processor.tokenizer, reward_settings, cfg.log_completions)
    if cfg.reward_weights is not None and len(cfg.reward_weights) != len(funcs):
        raise ValueError(f"reward_weights has {len(cfg.reward_weights)} entries for rewards {script.rewards}")
    trainer = JudgeGRPOTrainer(
        model=model,
        reward_funcs=funcs,
        args=cfg,
        train_dataset=to_dataset(rows),
        processing_class=processor,
        peft_config=lora_config(model_args),
        environment_factory=environments(settings, root),
        log_ratio_clamp=script.log_ratio_clamp,
        advantage_sigma=script.advantage_outlier_sigma,
    )
    stats = {"records": len(records), "rows": len(rows), "skipped": skipped}
    return trainer, processor, settings, stats


def run(script: GRPOScriptArguments, cfg: GRPOConfig, model_args: ModelConfig) -> dict:
    started = time.perf_counter()
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / STAGING, ignore_errors=True)
    trainer, processor, settings, stats = build_trainer(script, cfg, model_args)
    resume = resume_point(cfg)
    before = None
    # A sharded run evaluates both folders after training, each in a fresh process (see train.evaluate).
    split = sharded(trainer)
    if script.eval_records and script.eval_before and trainer.is_world_process_zero() and not split:
        before_file = out / "eval_before.json"
        if before_file.is_file():
            before = json.loads(before_file.read_text())  # measured before a resumed run started
        elif not resume:
            before = evaluate_checkpoint(trainer.model, processor, script, model_args.model_name_or_path)
            before_file.write_text(json.dumps(before, indent=2))
        trainer.model.train()
    summary = train_and_save(
        trainer, processor, cfg, script.stage, resume, started, stats, model_args.model_name_or_path
    )
    summary["step_time_s"] = {k: round(v, 2) for k, v in trainer.step_times.items()}
    if trainer.is_world_process_zero():
        from mmreward.settings import save_engine_settings  # noqa: PLC0415
        from train.plots import plot_curves  # noqa: PLC0415

        save_engine_settings(cfg.output_dir, settings)
        keys = CURVE_KEYS + tuple(f"rewards/{n}/mean" for n in script.rewards)
        summary["curves"] = plot_curves(trainer.state.log_history, out / "curves.png", title="grpo", keys=keys)
        if script.eval_records:
            if split and script.eval_before:
                before = evaluate_saved(model_args.model_name_or_path, script)
                (out / "eval_before.json").write_text(json.dumps(before, indent=2))
            summary["eval_before"] = _brief(before)
            if split:
                summary["eval_after"] = _brief(evaluate_saved(cfg.output_dir, script))
            else:
                summary["eval_after"] = _brief(evaluate_checkpoint(trainer.model, processor, script, cfg.output_dir))
        manifest = {
            "stage": script.stage,
            "inputs": {"train_files": script.train_files, "model": model_args.model_name_or_path},
            "config": {
                "script": asdict(script),
                "model": asdict(model_args),
                "trainer": {k: v for k, v in cfg.to_dict().items() if not k.startswith("_")},
                "engine": {"max_turns": settings.max_turns, "max_tool_calls": settings.budget.max_tool_calls},
            },
            "code_version": git_version(),
            "summary": summary,
            "log_history": trainer.state.log_history,
        }
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
        print(json.dumps({k: v for k, v in summary.items() if k != "curves"}, default=str), flush=True)
    return summary


def _brief(report: dict | None) -> dict | None:
    if not report:
        return None
    groups = report.get("groups", {})
    overall = groups.get("all", {})
    return {
        "accuracy": report["accuracy"],
        "items": report["items"],
        "tool_call_rate": overall.get("tool_call_rate"),
        "parse_failure_rate": overall.get("parse_failure_rate"),
        "needs_tool": {k.split("=")[1]: v.get("pass@1") for k, v in groups.items() if k.startswith("needs_tool=")},
    }


def main(argv: list[str] | None = None) -> int:
    import os  # noqa: PLC0415

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    script, cfg, model_args = parse(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run(script, cfg, model_args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
