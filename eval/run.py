"""``mmreward eval run``: judge a suite with a checkpoint and write predictions, resumably.

Each (item, vote, presented order) is one prediction row in ``out/predictions.jsonl``: the item key, the order,
the raw final output, the parsed verdict or the parse failure, the tool trace summary, tokens and latency. The
whole trajectory (every turn, tool call and observation reference) goes to ``out/trajectories.jsonl`` for
``mmreward view``.
Finished rows are skipped on a re-run. Items without media on disk are skipped and counted. Under
``accelerate launch`` (or ``torchrun``) each process takes every ``WORLD_SIZE``-th job and writes its own
``predictions.rank<N>.jsonl``; scoring reads them all. Scoring follows
(:mod:`eval.score`) and writes ``metrics.json`` and ``report.md``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_pipelines.batch import Job, append_jsonl, needs_tool, run_jobs
from data_pipelines.labels import check_verdict, label_text
from data_pipelines.records import PreferenceRecord, presented_orders
from eval.suites import Suite, load_suite
from mmreward.generators import Generator
from mmreward.judge import verdict_reward
from mmreward.rollout import RolloutEngine
from mmreward.runs import RunFolder, atomic_write_text, generator_identity, record_digest
from mmreward.settings import EngineSettings, settings_to_dict
from mmreward.trajectory import Trajectory


@dataclass
class RunSettings:
    swap: str = "random"  # none | random | both
    votes: int = 1
    tools: bool = True
    seed: int = 0
    limit: int | None = None
    chunk: int = 16
    pointwise: bool = False  # score each candidate of a pairwise item on its own (a scalar judge)
    reward: bool = False  # also read the continuous reward (P(better), expected score) for calibration

    def __post_init__(self) -> None:
        if self.swap not in ("none", "random", "both"):
            raise ValueError(f"swap must be none, random or both, not {self.swap!r}")
        if self.votes < 1:
            raise ValueError("votes must be at least 1")


def orders(record: PreferenceRecord, swap: str, seed: int, vote: int) -> list[list[int]]:
    return presented_orders(record, swap, seed, f"/{vote}")


def pointwise_task(record: PreferenceRecord, candidate: int, root) -> Any:
    """A pairwise item's candidate as a pointwise (1-10) task, for scalar-judge evaluation."""
    from mmreward.protocol import JudgeTask  # noqa: PLC0415

    task = record.resolved(root).to_task()
    return JudgeTask(
        prompt=task.prompt,
        candidates=[task.candidates[candidate]],
        modality=task.modality,
        kind="pointwise",
        media=task.media,
        media_kind=task.media_kind,
        id=f"{record.id}#c{candidate}",
    )


def prediction_row(key: str, record: PreferenceRecord, vote: int, t: Trajectory, candidate: int | None = None):
    """One judgment. With ``candidate``, a scalar judgment of that candidate alone (pairs are formed when scoring)."""
    row = {
        "key": key,
        "record_id": record.id,
        "vote": vote,
        "order": t.order,
        "raw": t.final_text,
        "verdict": t.verdict,
        "parse_failure": t.parse_failure,
        "stop_reason": t.stop_reason,
        "format_ok": t.format_ok,
        "tool_calls": len(t.tool_trace),
        "tool_errors": sum(not c["ok"] for c in t.tool_trace),
        "tools": [c["name"] for c in t.tool_trace],
        "prompt_tokens": t.prompt_tokens,
        "completion_tokens": t.completion_tokens,
        "latency_s": round(t.latency_s, 4),
    }
    if candidate is not None:
        row.update(
            candidate=candidate, order=[candidate], score=(t.verdict or {}).get("score"), verdict=None, correct=False
        )
    else:
        row["correct"] = check_verdict(record, t).correct
    return row


def trajectory_row(job: Job, row: dict[str, Any], t: Trajectory) -> dict[str, Any]:
    """One judged item for ``trajectories.jsonl``: the trajectory with its label, category and result."""
    rec = job.record
    return {
        "key": row["key"],
        "record_id": rec.id,
        "vote": row["vote"],
        "category": rec.category,
        "needs_tool": needs_tool(rec),
        "label": label_text(rec),
        "correct": row["correct"] if "candidate" not in row else None,
        "candidate": row.get("candidate"),
        "trajectory": t.to_dict(),
    }


def shard() -> tuple[int, int]:
    """(rank, world size) under ``accelerate launch`` / ``torchrun``; (0, 1) otherwise."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def prediction_files(path: str | os.PathLike) -> list[Path]:
    """``predictions.jsonl`` and the per-process ``predictions.rank<N>.jsonl`` of a sharded run."""
    p = Path(path)
    if p.is_dir():
        return sorted(p.glob("predictions*.jsonl"))
    return sorted(p.parent.glob(p.stem + ".rank*.jsonl")) + ([p] if p.is_file() else [])


def read_predictions(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All rows of a run (every shard), the last row per key winning; torn lines are skipped."""
    rows: dict[str, dict[str, Any]] = {}
    for f in prediction_files(path):
        with f.open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn last line after a crash
                rows[row["key"]] = row
    return list(rows.values())


def run_suite(
    suite: Suite,
    generator: Generator,
    out: str | os.PathLike,
    settings: RunSettings | None = None,
    data: str | None = None,
    input_path: str | None = None,
    media_root: str | None = None,
    engine_settings: EngineSettings | None = None,
    progress: bool = False,
    model_path: str | os.PathLike | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Judge ``suite`` into ``out``, resuming the predictions already there when ``out``'s provenance matches this
    run (same suite, model, settings and records: :class:`mmreward.runs.RunFolder`); ``force`` starts over."""
    settings = settings or RunSettings()
    if settings.reward and not hasattr(generator, "option_logprobs"):
        raise ValueError("--reward needs a judge whose token probabilities can be read (a local checkpoint)")
    out = Path(out)
    records, root = load_suite(suite, data, input_path, media_root)
    usable = [r for r in records if not r.metadata_only and r.has_media(root)]
    skipped = len(records) - len(usable)
    if settings.limit is not None:
        usable = usable[: settings.limit]
    if engine_settings is None:
        engine_settings = EngineSettings()
        if suite.world:
            from data_pipelines.synthetic.generate import WORLD_TOOLS, WORLD_VISUAL  # noqa: PLC0415

            engine_settings = EngineSettings(visual=WORLD_VISUAL, tools=WORLD_TOOLS)
    rank, world = shard()
    who, info = generator_identity(generator, model_path)
    identity = {
        "suite": suite.name,
        **who,
        "settings": {k: v for k, v in settings.__dict__.items() if k not in ("limit", "chunk", "votes")},
        "engine": settings_to_dict(engine_settings),
    }
    folder = RunFolder(out, "eval run", identity, RUN_OUTPUTS, info=info)
    # Every process checks and records (the same content, whichever lands first); under --force only the first
    # clears, and the others do not check a folder it is about to clear.
    if rank == 0 or not force:
        folder.open({r.id: record_digest(r) for r in usable}, force=force)
    out.mkdir(parents=True, exist_ok=True)
    pred_path = out / ("predictions.jsonl" if world == 1 else f"predictions.rank{rank}.jsonl")
    done = {r["key"] for r in read_predictions(out / "predictions.jsonl")}
    jobs = []
    for r in usable:
        resolved = r.resolved(root)
        for v in range(settings.votes):
            if settings.pointwise and r.task != "pointwise":
                for c in range(len(r.candidates)):
                    key = f"{r.id}|v{v}|c{c}"
                    jobs.append(Job(key, resolved, [0], key, pointwise_task(r, c, root), {"vote": v, "candidate": c}))
                continue
            for o in orders(r, settings.swap, settings.seed, v):
                key = f"{r.id}|v{v}|{''.join(map(str, o))}"
                jobs.append(Job(key, resolved, o, key, info={"vote": v}))
    # Each process takes its share of the full, deterministic job list, then skips what is already done (slicing
    # after filtering would let processes that start at different moments disagree on the shares).
    jobs = [j for j in jobs[rank::world] if j.key not in done]

    traj_path = out / pred_path.name.replace("predictions", "trajectories")
    engine = RolloutEngine(generator, settings=engine_settings)

    def write(pairs: list[tuple[Job, Trajectory]]) -> None:
        rows = [prediction_row(j.key, j.record, j.info["vote"], t, j.info.get("candidate")) for j, t in pairs]
        if settings.reward:
            for (j, t), row in zip(pairs, rows):
                row["reward"] = verdict_reward(generator, t, j.task or j.record.to_task(), engine)
        # Whole trajectories first (reasoning, tool calls, verdicts: what `mmreward view` shows), then the
        # predictions, whose presence marks a job done.
        append_jsonl(traj_path, [trajectory_row(j, row, t) for (j, t), row in zip(pairs, rows)])
        append_jsonl(pred_path, rows)

    def accuracy(results: list[tuple[Job, Trajectory]]) -> dict[str, str]:
        right = sum(check_verdict(j.record, t).correct for j, t in results if "candidate" not in j.info)
        return {"acc": f"{right / len(results):.3f}"}

    started = time.perf_counter()
    run_jobs(
        engine,
        jobs,
        tools_on=settings.tools,
        chunk=settings.chunk,
        sink=write,
        progress=f"eval {suite.name}" if progress else None,
        postfix=accuracy,
    )
    manifest = {
        "suite": suite.name,
        "items": len(usable),
        "skipped_without_media": skipped,
        "new_predictions": len(jobs),
        "reused_predictions": len(done),
        "settings": settings.__dict__,
        "seconds": round(time.perf_counter() - started, 2),
        "media_root": root,
    }
    manifest.update(rank=rank, world_size=world, model=info.get("model_path") or who["model"])
    atomic_write_text(out / ("run.json" if world == 1 else f"run.rank{rank}.json"), json.dumps(manifest, indent=2))
    return manifest


# What `eval run` writes into its folder (deleted by --force).
RUN_OUTPUTS = (
    "predictions*.jsonl",
    "trajectories*.jsonl",
    "run*.json",
    "metrics.json",
    "report.md",
    "accuracy.png",
    "calibration.png",
    "position.png",
)
