"""The judge: compare or score candidates with position swaps, majority votes and a continuous reward.

A :class:`Judge` wraps a :class:`~mmreward.rollout.RolloutEngine`. For each task it runs one trajectory per
(presented order, vote), maps every verdict from displayed positions back to candidates, and aggregates:

* ``swap="both"`` judges both orders; if they disagree the outcome is a tie or an abstention (a setting);
* ``votes=k`` takes the majority over k sampled trajectories per order (a tied majority is a tie/abstain);
* ``reward=True`` adds a continuous reward: the probability the model puts on "candidate 1 is better"
  against "candidate 2" at the verdict position after its own reasoning (pairwise), or the expected score
  over 1-10 (pointwise), averaged over the trajectories.
"""

from __future__ import annotations

import logging
import math
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from mmreward.generators import SamplingSettings, TransformersGenerator
from mmreward.protocol import JudgeTask, resolve_images
from mmreward.rollout import RolloutEngine
from mmreward.settings import EngineSettings
from mmreward.trajectory import Trajectory
from mmreward.verdict import NOUNS, Verdict

logger = logging.getLogger(__name__)

Outcome = Literal["prefer", "tie", "abstain", "failed", "score"]


@dataclass
class JudgeSettings:
    swap: Literal["none", "both", "random"] = "none"
    votes: int = 1
    tools: bool = True
    disagreement: Literal["tie", "abstain"] = "tie"
    reward: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.swap not in ("none", "both", "random"):
            raise ValueError("swap must be none, both or random")
        if self.votes < 1:
            raise ValueError("votes must be at least 1")
        if self.disagreement not in ("tie", "abstain"):
            raise ValueError("disagreement must be tie or abstain")


@dataclass
class Judgment:
    """The aggregated decision for one task. ``preferred`` is a *candidate* index (0 or 1), not a position."""

    task_id: str
    outcome: Outcome
    preferred: int | None = None
    score: float | None = None
    dimensions: dict[str, Any] = field(default_factory=dict)
    agreement: bool | None = None  # both orders agreed (swap="both")
    vote_counts: dict[str, int] = field(default_factory=dict)
    reward: float | None = None
    failures: list[str] = field(default_factory=list)
    trajectories: list[Trajectory] = field(default_factory=list)

    def to_dict(self, with_trajectories: bool = True) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "trajectories"}
        if with_trajectories:
            d["trajectories"] = [t.to_dict() for t in self.trajectories]
        return d


def candidate_verdict(traj: Trajectory) -> Verdict | None:
    """The trajectory's verdict with winners mapped from displayed positions to candidate indices."""
    v = traj.parsed_verdict
    if v is None:
        return None
    order = traj.order

    def to_candidate(w: Any) -> Any:
        return order[w] if isinstance(w, int) and v.kind != "pointwise" else w

    dims = {k: (to_candidate(w) if v.kind == "multi" else w) for k, w in v.dimensions.items()}
    return Verdict(
        v.kind, winner=to_candidate(v.winner), score=v.score, dimensions=dims, strict=v.strict, source=v.source
    )


def _label(winner: int | None) -> str:
    return "tie" if winner is None else str(winner)


def _majority(labels: list[str]) -> str | None:
    """Most common label; ``None`` when the top count is shared (no majority)."""
    if not labels:
        return None
    counts = Counter(labels).most_common()
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        return None
    return counts[0][0]


class Judge:
    def __init__(self, engine: RolloutEngine, settings: JudgeSettings | None = None) -> None:
        self.engine = engine
        self.settings = settings or JudgeSettings()

    @classmethod
    def from_pretrained(
        cls,
        model_dir: str,
        settings: JudgeSettings | None = None,
        engine_settings: EngineSettings | None = None,
        sampling: SamplingSettings | None = None,
        model_settings: Any = None,
        reuse_cache: bool = False,
    ) -> Judge:
        from mmreward.modeling import load_model  # noqa: PLC0415
        from mmreward.settings import resolve_engine_settings  # noqa: PLC0415

        model, processor = load_model(model_dir, model_settings)
        # Default: the settings the checkpoint recorded; either way sized for this processor's patch and merge.
        if engine_settings is None:
            engine_settings = resolve_engine_settings(model_dir, processor)
        else:
            engine_settings = resolve_engine_settings(None, processor, fallback=engine_settings)
        generator = TransformersGenerator(model, processor, sampling, reuse_cache=reuse_cache)
        return cls(RolloutEngine(generator, settings=engine_settings), settings)

    # ---------------------------------------------------------------------------------------------------------------
    def compare(
        self,
        prompt: str,
        candidates: list[Any],
        modality: str = "image",
        *,
        media: list[Any] | None = None,
        media_kind: str = "image",
        dimensions: list[str] | None = None,
        allow_tie: bool = False,
        task_id: str = "item-0",
    ) -> Judgment:
        """Which of two candidates is better? Multi-dimensional when ``dimensions`` is given."""
        task = JudgeTask(
            prompt=prompt,
            candidates=list(candidates),
            modality=modality,
            kind="multi" if dimensions else "pairwise",
            media=list(media or []),
            media_kind=media_kind,
            dimensions=list(dimensions or []),
            allow_tie=allow_tie,
            id=task_id,
        )
        return self.judge([task])[0]

    def score(
        self,
        prompt: str,
        candidate: Any,
        modality: str = "image",
        *,
        media: list[Any] | None = None,
        media_kind: str = "image",
        dimensions: list[str] | None = None,
        task_id: str = "item-0",
    ) -> Judgment:
        """A 1-10 score for one candidate (optionally per dimension)."""
        task = JudgeTask(
            prompt=prompt,
            candidates=[candidate],
            modality=modality,
            kind="pointwise",
            media=list(media or []),
            media_kind=media_kind,
            dimensions=list(dimensions or []),
            id=task_id,
        )
        return self.judge([task])[0]

    def compare_batch(self, tasks: list[JudgeTask], progress: bool = False) -> list[Judgment]:
        """Batched :meth:`compare`: pairwise or multi-dimensional tasks."""
        bad = [t.id for t in tasks if t.kind == "pointwise"]
        if bad:
            raise ValueError(f"compare_batch takes pairwise/multi tasks; pointwise: {bad[:5]}")
        return self.judge(tasks, progress)

    def score_batch(self, tasks: list[JudgeTask], progress: bool = False) -> list[Judgment]:
        """Batched :meth:`score`: pointwise tasks."""
        bad = [t.id for t in tasks if t.kind != "pointwise"]
        if bad:
            raise ValueError(f"score_batch takes pointwise tasks; others: {bad[:5]}")
        return self.judge(tasks, progress)

    def judge(
        self,
        tasks: list[JudgeTask],
        progress: bool = False,
        settings: list[JudgeSettings] | None = None,
        cancelled: Callable[[int], bool] | None = None,
    ) -> list[Judgment]:
        """Judge a batch of tasks; every (task, order, vote) trajectory runs in one batched engine call.

        ``settings`` gives each task its own swap/votes/tools/reward settings (the server batches requests
        that asked for different ones); by default every task uses the judge's settings. ``cancelled(i)`` says
        task ``i`` is no longer wanted: its trajectories stop at their next turn.

        Trajectories come back grouped by task, presented order first, then vote: with ``votes=k`` and both orders,
        trajectory ``o * k + v`` is vote ``v`` in order ``o``.
        """
        per_task = settings or [self.settings] * len(tasks)
        if len(per_task) != len(tasks):
            raise ValueError("settings must have one entry per task")
        rng = random.Random(self.settings.seed)
        runs: list[tuple[int, list[int]]] = []
        for i, task in enumerate(tasks):
            for order in self._orders(task, per_task[i], rng):
                runs.extend((i, order) for _ in range(per_task[i].votes))
        keys = [f"{tasks[i].id or f'item-{i}'}#{''.join(map(str, o))}#{k}" for k, (i, o) in enumerate(runs)]
        tools = [per_task[i].tools for i, _ in runs]
        stop = None if cancelled is None else (lambda r: cancelled(runs[r][0]))
        trajectories = self.engine.run(
            [tasks[i] for i, _ in runs], [o for _, o in runs], tools, keys, progress, cancelled=stop
        )
        grouped: dict[int, list[Trajectory]] = {i: [] for i in range(len(tasks))}
        for (i, _), traj in zip(runs, trajectories):
            grouped[i].append(traj)
        return [self.aggregate(tasks[i], grouped[i], per_task[i]) for i in range(len(tasks))]

    @staticmethod
    def _orders(task: JudgeTask, s: JudgeSettings, rng: random.Random) -> list[list[int]]:
        if task.kind == "pointwise":
            return [[0]]
        if s.swap == "both":
            return [[0, 1], [1, 0]]
        if s.swap == "random":
            return [[0, 1] if rng.random() < 0.5 else [1, 0]]
        return [[0, 1]]

    def aggregate(self, task: JudgeTask, trajs: list[Trajectory], s: JudgeSettings) -> Judgment:
        """One decision from trajectories of ``task`` (all of them, or one vote's across both orders)."""
        j = Judgment(task_id=task.id, outcome="failed", trajectories=trajs)
        verdicts = [(t, candidate_verdict(t)) for t in trajs]
        j.failures = [t.parse_failure or t.stop_reason for t, v in verdicts if v is None]
        ok = [(t, v) for t, v in verdicts if v is not None]
        if not ok:
            return j
        if task.kind == "pointwise":
            j.outcome = "score"
            j.score = sum(v.score for _, v in ok) / len(ok)
            for d in task.dimensions:
                vals = [v.dimensions.get(d) for _, v in ok if v.dimensions.get(d) is not None]
                j.dimensions[d] = sum(vals) / len(vals) if vals else None
        else:
            j.vote_counts = dict(Counter(_label(v.winner) for _, v in ok))
            overall, j.agreement = self._decide(ok, lambda v: v.winner)
            j.outcome, j.preferred = self._outcome(overall, s)
            for d in task.dimensions:
                label, _ = self._decide(ok, lambda v, d=d: v.dimensions.get(d))
                j.dimensions[d] = None if label in (None, "tie") else int(label)
        if s.reward:
            j.reward = self._reward(task, [t for t, _ in ok])
        return j

    @staticmethod
    def _decide(ok: list[tuple[Trajectory, Verdict]], get) -> tuple[str | None, bool | None]:
        """Majority per presented order, then agreement across orders. Returns (label or None, agreement)."""
        by_order: dict[tuple[int, ...], list[str]] = {}
        for t, v in ok:
            by_order.setdefault(tuple(t.order), []).append(_label(get(v)))
        per_order = [_majority(labels) for labels in by_order.values()]
        agreement = None
        if len(by_order) > 1:
            agreement = len(set(per_order)) == 1 and per_order[0] is not None
            return (per_order[0] if agreement else None), agreement
        return per_order[0], agreement

    @staticmethod
    def _outcome(label: str | None, s: JudgeSettings) -> tuple[Outcome, int | None]:
        if label is None:
            return ("tie" if s.disagreement == "tie" else "abstain"), None
        if label == "tie":
            return "tie", None
        return "prefer", int(label)

    def _reward(self, task: JudgeTask, trajs: list[Trajectory]) -> float | None:
        generator = self.engine.generator
        if not hasattr(generator, "option_logprobs"):
            return None
        values = []
        for t in trajs:
            value = verdict_reward(generator, t, task, self.engine)
            if value is not None:
                values.append(value)
        return sum(values) / len(values) if values else None


def verdict_reward(generator: Any, traj: Trajectory, task: JudgeTask, engine: RolloutEngine) -> float | None:
    """P(candidate 0 is better) for pairwise/multi (overall), or the expected 1-10 score for pointwise, read
    from the model's distribution at the verdict position of its final turn."""
    if traj.context is None or traj.verdict is None:
        return None
    final = traj.final_text
    start = final.find("<answer>")
    if start < 0:
        return None
    history = traj.messages[:-1]
    messages, images = resolve_images(engine.context_messages(history), traj.context.images, engine.settings.visual)
    tools = engine.tool_schemas(task, traj.tools_on)
    if task.kind == "pointwise":
        m = re.search(r"Score:", final[start:])
        if not m:
            return None
        prefix = final[: start + m.end()]
        options = [f" {k}" for k in range(1, 11)]
        logps = generator.option_logprobs(messages, images, tools, prefix, options)
        probs = _softmax(logps)
        return sum(p * (k + 1) for k, p in enumerate(probs))
    noun = NOUNS[task.modality]
    matches = list(re.finditer(rf"{noun}(?= [12] is better)", final[start:]))
    cut = start + matches[-1].end() if matches else start + len("<answer>")
    prefix = final[:cut] if matches else final[:cut] + noun
    logps = generator.option_logprobs(messages, images, tools, prefix, [" 1", " 2"])
    p_first_displayed = _softmax(logps)[0]
    return p_first_displayed if traj.order[0] == 0 else 1.0 - p_first_displayed


def _softmax(logps: list[float]) -> list[float]:
    m = max(logps)
    exps = [math.exp(x - m) for x in logps]
    z = sum(exps)
    return [e / z for e in exps]
