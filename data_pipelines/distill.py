"""Teacher distillation: run a teacher through the judging protocol and keep the trajectories it gets right.

A teacher is any :class:`mmreward.generators.Generator`: the synthetic world's oracle, or :class:`OpenAITeacher`
(:class:`mmreward.remote.OpenAIGenerator`) for an OpenAI-compatible chat endpoint (GPT-4o, a vLLM server with
a large Qwen-VL). Either way the
:class:`mmreward.rollout.RolloutEngine` drives the conversation: it renders the prompt, runs *our* tools on the
teacher's tool calls (so API teachers produce tool trajectories too) and parses the verdict.

Robustness:

* The API teacher retries with backoff (see :mod:`mmreward.remote`).
* An append-only cache (``cache.jsonl``), flushed and fsynced after every few trajectories and keyed by
  (item, presented order, tools, prompt, teacher, sampling): after a crash or ``kill -9`` a re-run skips what is
  done. A half-written last line is ignored.
* Verification: a trajectory is kept when its verdict matches the label (every labelled dimension) and it is
  strictly well-formed; rejected ones go to ``rejected.jsonl`` with the reason; trajectories the teacher could
  not finish (errors after all retries) go to ``failed.jsonl`` and are retried on the next run.

Outputs in ``out/``: ``kept.jsonl`` (trajectories, the SFT input), ``rejected.jsonl``, ``failed.jsonl``,
``summary.json`` and ``manifest.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from data_pipelines.batch import Job, JobCache, run_jobs
from data_pipelines.labels import check_verdict
from data_pipelines.records import PreferenceRecord, presented_orders, write_jsonl
from mmreward.errors import RunFailure
from mmreward.generators import Generator
from mmreward.protocol import system_prompt, user_text
from mmreward.remote import OpenAIGenerator as OpenAITeacher
from mmreward.remote import RemoteSettings as TeacherSettings
from mmreward.rollout import RolloutEngine
from mmreward.runs import RunFolder, atomic_write_text, record_digest
from mmreward.settings import EngineSettings, settings_to_dict
from mmreward.trajectory import Trajectory

logger = logging.getLogger(__name__)

__all__ = ["DistillSettings", "OpenAITeacher", "TeacherSettings", "distill"]


# --------------------------------------------------------------------------------------------------------------------
# The distiller


@dataclass
class DistillSettings:
    swap: str = "both"  # none | both | random: which presented orders the teacher sees
    tools: bool = True
    chunk: int = 16  # trajectories per engine call; the cache is flushed after each
    require_consistent: bool = False  # with swap=both, keep an item's trajectories only if both orders are right
    max_per_item: int | None = None  # cap on kept trajectories per item
    limit: int | None = None
    seed: int = 0
    engine: EngineSettings = field(default_factory=EngineSettings)

    def __post_init__(self) -> None:
        if self.swap not in ("none", "both", "random"):
            raise ValueError(f"swap must be none, both or random, not {self.swap!r}")
        if self.chunk < 1:
            raise ValueError("chunk must be at least 1")


def teacher_id(teacher: Generator) -> str:
    name = getattr(teacher, "name", type(teacher).__name__)
    s = getattr(teacher, "settings", None)
    sampling = s.sampling() if hasattr(s, "sampling") else {}
    return json.dumps({"teacher": name, "sampling": sampling}, sort_keys=True)


def cache_key(record: PreferenceRecord, order: list[int], tools: bool, teacher: str, engine: EngineSettings) -> str:
    """(item, prompt, teacher, sampling): the item's content, the text the teacher is shown, and who answers."""
    task = record.to_task()
    n = len(task.candidates) if task.modality != "answer" else len(task.media)
    kind = task.visual_kind if task.modality != "answer" else task.media_kind
    names = [f"{kind}_{k + 1}" for k in range(n)]
    answers = [task.candidates[i] for i in order] if task.modality == "answer" else []
    prompt = system_prompt(task, tools, engine.budget) + "\n" + user_text(task, names, answers)
    item = json.dumps([record.id, record.candidates, record.media, order, tools], ensure_ascii=False)
    settings = json.dumps(
        [engine.max_turns, engine.budget.to_dict(), repr(engine.visual), repr(engine.tools)], sort_keys=True
    )
    return hashlib.sha256("\n".join([item, prompt, teacher, settings]).encode()).hexdigest()


def distill(
    records: list[PreferenceRecord],
    teacher: Generator,
    out: str | os.PathLike,
    settings: DistillSettings | None = None,
    media_root: str | os.PathLike | None = None,
    progress: bool = False,
    force: bool = False,
) -> dict[str, Any]:
    """Run ``teacher`` on every (record, order); write kept/rejected/failed files and return the summary.

    ``out`` resumes only this teacher's work with these settings on these records (its ``provenance.json``);
    anything else there is refused unless ``force``, which deletes it first. Raises :class:`RunFailure` when the
    teacher answered none of the requests (with where it was asked and why it failed)."""
    settings = settings or DistillSettings()
    out = Path(out)
    started = time.perf_counter()
    tid = teacher_id(teacher)
    usable = [r for r in records if not r.metadata_only]
    skipped_no_media = len(records) - len(usable)
    if settings.limit is not None:
        usable = usable[: settings.limit]
    where = getattr(getattr(teacher, "settings", None), "base_url", None)
    identity = {
        "teacher": json.loads(tid) | ({"url": where} if where else {}),
        "crop_policy": getattr(teacher, "crop_policy", None),
        "settings": {k: v for k, v in asdict(settings).items() if k not in ("engine", "limit", "chunk")},
        "engine": settings_to_dict(settings.engine),
    }
    RunFolder(out, "data distill", identity, DISTILL_OUTPUTS).open(
        {r.id: record_digest(r) for r in usable}, force=force
    )
    cache = JobCache(out / "cache.jsonl")
    engine = RolloutEngine(teacher, settings=settings.engine)

    by_id = {r.id: r for r in usable}
    jobs = []
    for r in usable:
        for order in presented_orders(r, settings.swap, settings.seed):
            rr = r.resolved(media_root)
            key = cache_key(rr, order, settings.tools, tid, settings.engine)
            jobs.append(Job(key, rr, order, f"{rr.id}|{''.join(map(str, order))}"))
    pending = [j for j in jobs if j.key not in cache]
    reused = len(jobs) - len(pending)
    run_jobs(
        engine,
        pending,
        tools_on=settings.tools,
        chunk=settings.chunk,
        sink=cache.sink(order=lambda job: job.order),
        progress="distill" if progress else None,
        done_already=reused,
    )

    # Verify against the labels and write the outputs.
    kept, rejected, failed = [], [], []
    per_item: dict[str, list[tuple[Trajectory, bool, str]]] = defaultdict(list)
    for job in jobs:
        rec, order = job.record, job.order
        if job.key not in cache:
            failed.append({"record_id": rec.id, "order": order, "error": cache.errors.get(job.key, "not run")})
            continue
        t = cache.trajectory(job.key)
        check = check_verdict(rec, t)
        if t.stop_reason != "answer":
            reason = t.stop_reason if t.stop_reason != "parse_failure" else "unparseable"
        elif not check.correct:
            reason = "wrong verdict" if not check.reason.startswith("wrong dimension") else "wrong dimension"
        elif not t.format_ok:
            reason = "not strict format"
        else:
            reason = "ok"
        per_item[rec.id].append((t, reason == "ok", reason))
    for rid, items in per_item.items():
        all_ok = all(ok for _, ok, _ in items)
        n_kept = 0
        for t, ok, reason in items:
            if ok and settings.require_consistent and settings.swap == "both" and not all_ok:
                ok, reason = False, "inconsistent across orders"
            if ok and settings.max_per_item is not None and n_kept >= settings.max_per_item:
                ok, reason = False, "over the per-item cap"
            if ok:
                kept.append(t.to_dict())
                n_kept += 1
            else:
                rejected.append({"reason": reason, "category": by_id[rid].category, **t.to_dict()})

    write_jsonl(out / "kept.jsonl", kept)
    write_jsonl(out / "rejected.jsonl", rejected)
    write_jsonl(out / "failed.jsonl", failed)
    cats = {r.id: r.category for r in usable}
    per_cat: dict[str, Counter] = defaultdict(Counter)
    for t in kept:
        per_cat[cats[t["id"].split("|")[0]]]["kept"] += 1
    for t in rejected:
        per_cat[t["category"]]["rejected"] += 1
    for f in failed:
        per_cat[cats[f["record_id"]]]["failed"] += 1
    summary = {
        "items": len(usable),
        "skipped_without_media": skipped_no_media,
        "trajectories": len(jobs),
        "reused_from_cache": reused,
        "kept": len(kept),
        "rejected": dict(Counter(r["reason"] for r in rejected)),
        "failed": dict(Counter(f["error"].split(" after ")[0] for f in failed)),
        "per_category": {k: dict(v) for k, v in sorted(per_cat.items())},
        "tool_calls_per_kept": round(sum(len(t["tool_trace"]) for t in kept) / max(1, len(kept)), 3),
        "seconds": round(time.perf_counter() - started, 2),
    }
    if hasattr(teacher, "stats"):
        summary["teacher_requests"] = dict(teacher.stats)
    manifest = {
        "teacher": json.loads(tid),
        "settings": {k: v for k, v in asdict(settings).items() if k != "engine"},
        "engine": settings_to_dict(settings.engine),
        "summary": summary,
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2))
    if jobs and len(failed) == len(jobs):
        causes = Counter(f["error"] for f in failed).most_common(1)[0][0]
        raise RunFailure(
            f"the teacher {where or json.loads(tid)['teacher']} answered none of {len(jobs)} requests ({causes}); "
            f"nothing was kept. Check that it is running and reachable (--teacher, --model, --api-key); a re-run "
            f"resumes here"
        )
    return summary


# What `data distill` writes into its folder (deleted by --force).
DISTILL_OUTPUTS = ("cache.jsonl", "kept.jsonl", "rejected.jsonl", "failed.jsonl", "summary.json", "manifest.json")
