"""One driver for judging records: distillation, rejection sampling, the training stages' evaluations, ``eval run``
and the oracle's accuracy all go through it.

A caller plans :class:`Job` s (a record in a presented order, under a key; orders come from
:func:`data_pipelines.records.presented_orders`), and :func:`run_jobs` sends them through the engine in chunks.
What a chunk produced goes to the caller's sink at once (an append-only :class:`JobCache`, a predictions file), so an
interrupted run loses at most one chunk and resumes by skipping the keys it already has. :func:`tally` and
:func:`mean_by_group` count results by group, once for everyone.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_pipelines.labels import chance_accuracy, check_verdict, first_choices
from data_pipelines.records import PreferenceRecord
from mmreward.protocol import JudgeTask
from mmreward.rollout import RolloutEngine
from mmreward.trajectory import Trajectory


@dataclass
class Job:
    key: str  # identifies the judgment (cache and predictions key)
    record: PreferenceRecord  # with its media resolved
    order: list[int]  # presented order
    name: str  # the trajectory's id in the engine
    task: JudgeTask | None = None  # default: the record's own task
    info: dict[str, Any] = field(default_factory=dict)  # the caller's bookkeeping (sample index, vote, candidate)


Sink = Callable[[list[tuple[Job, Trajectory]]], None]


def run_jobs(
    engine: RolloutEngine,
    jobs: list[Job],
    tools_on: bool = True,
    chunk: int = 16,
    sink: Sink | None = None,
    progress: str | None = None,
    done_already: int = 0,
    postfix: Callable[[list[tuple[Job, Trajectory]]], dict[str, str]] | None = None,
) -> list[tuple[Job, Trajectory]]:
    """Judge ``jobs`` ``chunk`` at a time; each chunk's results go to ``sink`` before the next starts. With
    ``progress`` (the bar's label), a progress bar that starts at ``done_already`` (jobs a cache already had)."""
    bar = None
    if progress:
        from tqdm.auto import tqdm  # noqa: PLC0415

        bar = tqdm(total=len(jobs) + done_already, initial=done_already, desc=progress, unit="judgment")
    results: list[tuple[Job, Trajectory]] = []
    for i in range(0, len(jobs), chunk):
        part = jobs[i : i + chunk]
        trajs = engine.run(
            [j.task if j.task is not None else j.record.to_task() for j in part],
            orders=[j.order for j in part],
            tools_on=tools_on,
            keys=[j.name for j in part],
        )
        pairs = list(zip(part, trajs, strict=True))
        if sink is not None:
            sink(pairs)
        results.extend(pairs)
        if bar is not None:
            bar.update(len(part))
            if postfix is not None:
                bar.set_postfix(postfix(results))
    if bar is not None:
        bar.close()
    return results


class JobCache:
    """An append-only JSONL of finished judgments, ``{"key", "status", "trajectory", ...}`` per line. A torn last
    line (a crash mid-write) is skipped; a failed entry is remembered as an error and run again next time."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.errors: dict[str, str] = {}
        self.done = self._read()

    def _read(self) -> dict[str, dict[str, Any]]:
        done: dict[str, dict[str, Any]] = {}
        if not self.path.is_file():
            return done
        with self.path.open(encoding="utf-8") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if entry.get("status") == "done":
                    done[entry["key"]] = entry
                    self.errors.pop(entry["key"], None)
                else:
                    self.errors[entry["key"]] = entry["trajectory"].get("error") or "failed"
        return done

    def __contains__(self, key: str) -> bool:
        return key in self.done

    def trajectory(self, key: str) -> Trajectory:
        return Trajectory.from_dict(self.done[key]["trajectory"])

    def sink(self, **fields_of: Callable[[Job], Any]) -> Sink:
        """A sink that appends each result (``fields_of``: extra columns from the job) and fsyncs per chunk."""

        def write(pairs: list[tuple[Job, Trajectory]]) -> None:
            entries = []
            for job, t in pairs:
                status = "failed" if t.stop_reason == "generation_error" else "done"
                entry = {"key": job.key, "record_id": job.record.id}
                entry.update({name: get(job) for name, get in fields_of.items()})
                entry.update(status=status, trajectory=t.to_dict())
                entries.append(entry)
                if status == "done":
                    self.done[job.key] = entry
                else:
                    self.errors[job.key] = t.error or "failed"
            append_jsonl(self.path, entries)

        return write


def append_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def needs_tool(r: PreferenceRecord) -> str:
    w = r.metadata.get("world") if isinstance(r.metadata, dict) else None
    return str(w.get("needs_tool")) if isinstance(w, dict) and "needs_tool" in w else "unknown"


def tally(records: list[PreferenceRecord], samples: dict[str, list[Trajectory]]) -> dict[str, Any]:
    """pass@1, pass@k and rates, overall, by category and by needs-tool. ``first_is_better`` is the share of
    decided pairwise verdicts that name the candidate shown first: about 0.5 for a judge that reads the content
    (orders are random), near 0 or 1 for one that answers by position, whose pass@1 then only matches chance."""
    by_id = {r.id: r for r in records}
    groups: dict[str, dict[str, list]] = defaultdict(
        lambda: {"acc": [], "any": [], "tools": [], "fail": [], "chance": [], "first": []}
    )
    stop = Counter()
    for rid, trajs in samples.items():
        r = by_id[rid]
        oks = [check_verdict(r, t).correct for t in trajs]
        for key in ("all", f"category={r.category}", f"needs_tool={needs_tool(r)}"):
            g = groups[key]
            g["acc"].extend(oks)
            g["any"].append(any(oks))
            g["chance"].append(chance_accuracy(r))
            g["tools"].extend(bool(t.tool_trace) for t in trajs)
            g["fail"].extend(t.verdict is None for t in trajs)
            g["first"].extend(first_choices(t.verdict for t in trajs))
        stop.update(t.stop_reason for t in trajs)

    table = {
        k: {
            "items": len(g["any"]),
            "samples": len(g["acc"]),
            "pass@1": _mean(g["acc"]),
            "pass@k": _mean(g["any"]),
            "tool_call_rate": _mean(g["tools"]),
            "parse_failure_rate": _mean(g["fail"]),
            "chance": _mean(g["chance"]),  # pass@1 of a uniformly random valid verdict on these items
            "first_is_better": _mean(g["first"]) if g["first"] else None,
        }
        for k, g in sorted(groups.items())
    }
    return {"groups": table, "stop_reasons": dict(stop)}


def mean_by_group(values: Iterable[tuple[Iterable[str], float]]) -> tuple[dict[str, float], dict[str, int]]:
    """(mean, count) per group of ``(groups, value)`` pairs: a value counts in every group it names."""
    groups: dict[str, list[float]] = defaultdict(list)
    for names, value in values:
        for g in names:
            groups[g].append(float(value))
    return {k: _mean(v) for k, v in sorted(groups.items())}, {k: len(v) for k, v in sorted(groups.items())}


def _mean(xs: list) -> float:
    return round(sum(xs) / len(xs), 4) if xs else 0.0
