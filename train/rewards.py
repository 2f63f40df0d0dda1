"""GRPO rewards, by name, with TRL's reward-function signature.

A reward looks at one *rollout*: the assistant turns the model wrote (tool calls included), the tool trace the
environment kept, and the record it judged. Every verdict goes through the shared parser
(:func:`mmreward.verdict.parse_verdict`) and the shared label check (:mod:`data_pipelines.labels`), so GRPO
rewards exactly what eval counts as right.

* ``accuracy``: 1 for a right verdict, 0 otherwise; multi-dimensional tasks score the share of labelled
  dimensions (and the overall verdict, where labelled) that are right; ties count as the task defines them;
  pointwise scores are right within the label tolerance.
* ``format``: 1 when the whole trajectory follows the strict grammar: every turn is ``<think>...</think>`` and
  one ``<tool_call>`` or ``<answer>``, tool calls come before the answer, and the answer parses strictly.
* ``tool`` (in the spirit of ARM-Thinker): ``tool_bonus`` for a right verdict reached after at least one
  successful tool call, ``-invalid_penalty`` per invalid call (a call the tool refused or that did not parse),
  nothing for tool calls that end in a wrong verdict.
* ``length`` (optional): 0 up to ``length_target`` generated tokens, then linearly down to -1 at twice that.

``make_reward_funcs(names, tokenizer)`` returns TRL reward functions named after the rewards (TRL logs them
as ``rewards/<name>/mean``); they read the dataset's ``record`` and ``order`` columns and the per-rollout
``environments`` TRL passes in.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from data_pipelines.batch import needs_tool
from data_pipelines.labels import SCORE_TOLERANCE, check_verdict, label_text
from data_pipelines.records import PreferenceRecord
from mmreward.judge import candidate_verdict
from mmreward.protocol import assistant_message, parse_turn
from mmreward.trajectory import Trajectory
from mmreward.verdict import ParseFailure, parse_verdict


@dataclass
class RewardSettings:
    tool_bonus: float = 0.5
    invalid_penalty: float = 0.1
    length_target: int = 512
    verdict_mode: str = "lenient"  # how the final answer is read for accuracy (the engine's default)


@dataclass
class Rollout:
    """What a reward sees of one GRPO rollout."""

    turns: list[str]  # assistant turns, in order
    record: PreferenceRecord
    order: list[int]
    tool_trace: list[dict[str, Any]] = field(default_factory=list)  # the environment's: name, ok, error, ...
    environment: Any = None  # the rollout's JudgeEnvironment (its prompt and tool messages), when TRL passes it
    completion_tokens: int = 0
    truncated: bool = False  # the completion hit max_completion_length

    @property
    def final(self) -> str:
        return self.turns[-1] if self.turns else ""

    def trajectory(self, mode: str = "lenient") -> Trajectory:
        """A trajectory record holding the final verdict, for the shared label check."""
        task = self.record.to_task()
        traj = Trajectory(id=self.record.id, task=task.to_dict(), order=list(self.order), tools_on=True)
        if self.truncated or not self.turns or "<tool_call>" in self.final:
            # cut off, or still calling tools when the turns ran out: no verdict (as the engine's max_turns)
            traj.parse_failure = "truncated" if self.truncated else "no answer"
            return traj
        result = parse_verdict(self.final, task.answer_spec, mode)
        if isinstance(result, ParseFailure):
            traj.parse_failure = result.reason
        else:
            traj.verdict = result.to_dict()
        return traj


# --------------------------------------------------------------------------------------------------------------------
# The rewards


def accuracy(r: Rollout, s: RewardSettings) -> float:
    traj = r.trajectory(s.verdict_mode)
    if traj.verdict is None:
        return 0.0
    rec = r.record
    if rec.task != "multi":
        return 1.0 if check_verdict(rec, traj, SCORE_TOLERANCE).correct else 0.0
    v = candidate_verdict(traj)
    checks = []
    if rec.tie or rec.preferred is not None:
        checks.append(v.winner == (None if rec.tie else rec.preferred))
    for dim, want in rec.dimension_labels.items():
        checks.append(dim in v.dimensions and v.dimensions[dim] == want)
    return sum(checks) / len(checks) if checks else 0.0


def strict_format(r: Rollout) -> bool:
    if r.truncated or not r.turns:
        return False
    parsed = [parse_turn(t) for t in r.turns]
    if any(p.error for p in parsed):
        return False
    if not parsed[-1].is_answer or not all(p.is_tool_call for p in parsed[:-1]):
        return False
    return not isinstance(parse_verdict(r.final, r.record.to_task().answer_spec, "strict"), ParseFailure)


def format_reward(r: Rollout, s: RewardSettings) -> float:
    return 1.0 if strict_format(r) else 0.0


def invalid_calls(r: Rollout) -> int:
    """Calls the tool refused, plus tool-call attempts that never reached a tool (malformed JSON, unclosed)."""
    refused = sum(1 for c in r.tool_trace if not c.get("ok"))
    malformed = sum(1 for t in r.turns if "<tool_call>" in t and parse_turn(t).error)
    return refused + malformed


def tool_reward(r: Rollout, s: RewardSettings) -> float:
    bonus = 0.0
    if any(c.get("ok") for c in r.tool_trace) and accuracy(r, s) == 1.0:
        bonus = s.tool_bonus
    return bonus - s.invalid_penalty * invalid_calls(r)


def length_reward(r: Rollout, s: RewardSettings) -> float:
    over = r.completion_tokens - s.length_target
    return 0.0 if over <= 0 else -min(1.0, over / s.length_target)


REWARDS: dict[str, Callable[[Rollout, RewardSettings], float]] = {
    "accuracy": accuracy,
    "format": format_reward,
    "tool": tool_reward,
    "length": length_reward,
}


# --------------------------------------------------------------------------------------------------------------------
# From TRL's batch to rollouts


def split_turns(text: str) -> list[str]:
    """The assistant turns of a decoded multi-turn completion (Qwen chat markup: tool results sit between
    ``<|im_end|>`` and the next ``<|im_start|>assistant``)."""
    turns = [segment.split("<|im_end|>")[0].strip() for segment in text.split("<|im_start|>assistant\n")]
    return [t for t in turns if t]


class RolloutBuilder:
    """Decodes TRL's completion ids once per batch and builds the rollouts every reward function reads."""

    def __init__(self, tokenizer, max_completion_length: int | None = None) -> None:
        self.tokenizer = tokenizer
        self.max_completion_length = max_completion_length
        self._key: int | None = None
        self._rollouts: list[Rollout] = []

    def __call__(self, completion_ids: list[list[int]], record: list[str], order: list[Any], environments=None):
        key = id(completion_ids)
        if key == self._key:
            return self._rollouts
        rollouts = []
        end_ids = {self.tokenizer.convert_tokens_to_ids("<|im_end|>"), self.tokenizer.eos_token_id}
        for i, ids in enumerate(completion_ids):
            text = self.tokenizer.decode(ids, skip_special_tokens=False)
            rec = PreferenceRecord.from_dict(json.loads(record[i]) if isinstance(record[i], str) else record[i])
            env = environments[i] if environments else None
            trace = list(getattr(env, "trace", []) or [])
            rollouts.append(
                Rollout(
                    turns=split_turns(text),
                    record=rec,
                    order=list(order[i]),
                    tool_trace=trace,
                    environment=env,
                    completion_tokens=int(getattr(env, "generated_tokens", 0) or len(ids)),
                    truncated=bool(ids) and ids[-1] not in end_ids,
                )
            )
        self._key, self._rollouts = key, rollouts
        return rollouts


def rollout_trajectory(r: Rollout, settings: RewardSettings) -> dict[str, Any]:
    """One rollout as the other stages store a judgment: a whole :class:`Trajectory` (prompt, turns, tool messages
    by reference, tool trace, verdict) with its label and result, for TRL's completions table and ``mmreward view``."""
    env = r.environment
    traj = r.trajectory(settings.verdict_mode)
    traj.id = f"{r.record.id}|{''.join(map(str, r.order))}"
    if env is not None and env.messages:
        traj.task = env.task
        traj.settings = env.settings
        messages = list(env.messages)
        tool_messages = iter(env.tool_messages)
        for turn in r.turns:
            messages.append(assistant_message(turn))
            if "<tool_call>" in turn and "<answer>" not in turn:
                nxt = next(tool_messages, None)
                if nxt is not None:
                    messages.append(nxt)
        traj.messages = messages
    else:
        traj.messages = [assistant_message(t) for t in r.turns]
    traj.tool_trace = list(r.tool_trace)
    traj.num_turns = len(r.turns)
    traj.completion_tokens = r.completion_tokens
    traj.format_ok = strict_format(r)
    traj.stop_reason = "answer" if traj.verdict else ("max_tokens" if r.truncated else "parse_failure")
    return {
        "record_id": r.record.id,
        "category": r.record.category,
        "label": label_text(r.record),
        "needs_tool": needs_tool(r.record),
        "correct": check_verdict(r.record, traj).correct,
        "trajectory": traj.to_dict(),
    }


def make_reward_funcs(
    names: list[str], tokenizer, settings: RewardSettings | None = None, log_trajectories: bool = False
) -> list[Callable]:
    """TRL reward functions for ``names`` (each is called with the batch's completions and dataset columns).
    ``log_trajectories`` (set with ``log_completions``) adds each rollout's trajectory to TRL's completions table;
    off, nothing is serialised or gathered across processes."""
    settings = settings or RewardSettings()
    unknown = [n for n in names if n not in REWARDS]
    if unknown:
        raise ValueError(f"unknown reward(s) {unknown}; choose from {sorted(REWARDS)}")
    builder = RolloutBuilder(tokenizer)
    funcs = []
    for i, name in enumerate(names):
        fn = REWARDS[name]

        def reward(
            prompts, completions, completion_ids, record, order, environments=None, log_extra=None, _fn=fn, _i=i, **_
        ):
            rollouts = builder(completion_ids, record, order, environments)
            if _i == 0 and log_trajectories and log_extra is not None:
                # One column of whole trajectories in TRL's completions table (log_completions: true).
                entries = [rollout_trajectory(r, settings) | {"rewards": names} for r in rollouts]
                log_extra("trajectory", [json.dumps(e, ensure_ascii=False) for e in entries])
            return [float(_fn(r, settings)) for r in rollouts]

        reward.__name__ = name
        funcs.append(reward)
    return funcs
