"""Rejection sampling (stage 2): sample K trajectories per item from the current checkpoint, keep the right ones.

For each record the engine samples ``k`` trajectories (tools on, each in its own presented order), in batches and
resumably (an append-only ``samples.jsonl`` cache like distillation's). A sample is *accepted* when its verdict
matches the label on every labelled dimension and it is strictly well-formed; duplicates (the same assistant
turns) are dropped and at most ``max_accept_per_item`` are kept per item. Outputs in ``out/``:

* ``accepted.jsonl``: trajectories for RFT (SFT on the model's own correct traces);
* ``grpo_pool.jsonl``: the records GRPO should train on: every item the model does not always get right (items
  with no correct sample and mixed ones; the mixed ones are where GRPO's group advantages are non-zero), plus the
  always-right ones unless ``drop_always_right``;
* ``report.json``: pass@1 (mean sample accuracy), pass@k, accept rate by category and by needs-tool, tool-call
  rate, parse failures and stop reasons.

:func:`judge_records` is the greedy, one-sample version used to report a checkpoint's accuracy.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from data_pipelines.batch import Job, JobCache, needs_tool, run_jobs, tally
from data_pipelines.labels import check_verdict
from data_pipelines.records import PreferenceRecord, presented_orders, write_jsonl, write_records
from mmreward.generators import Generator
from mmreward.rollout import RolloutEngine
from mmreward.runs import RunFolder, atomic_write_text, generator_identity, record_digest
from mmreward.settings import EngineSettings, settings_to_dict
from mmreward.trajectory import Trajectory


@dataclass
class RejectionSettings:
    k: int = 4
    tools: bool = True
    max_accept_per_item: int = 2
    drop_always_right: bool = True
    chunk: int = 32
    seed: int = 0
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.k < 1 or self.max_accept_per_item < 1 or self.chunk < 1:
            raise ValueError("k, max_accept_per_item and chunk must be at least 1")


def sample_order(record: PreferenceRecord, j: int, seed: int) -> list[int]:
    """Sample ``j``'s presented order: random, seeded by the record and the sample index."""
    return presented_orders(record, "random", seed, f"/{j}")[0]


def _assistant_text(t: Trajectory) -> str:
    return "\n".join(m["content"][0]["text"] for m in t.messages if m["role"] == "assistant")


def sample_key(record: PreferenceRecord, j: int, order: list[int], model_id: str, tools: bool) -> str:
    item = json.dumps([record.id, record.prompt, record.candidates, record.media, j, order, tools, model_id])
    return hashlib.sha256(item.encode()).hexdigest()


def rejection_sample(
    records: list[PreferenceRecord],
    generator: Generator,
    out: str | os.PathLike,
    settings: RejectionSettings | None = None,
    engine_settings: EngineSettings | None = None,
    media_root: str | os.PathLike | None = None,
    model_id: str = "model",
    progress: bool = False,
    force: bool = False,
) -> dict[str, Any]:
    """Sample, accept and report (see the module's doc). ``model_id``: the checkpoint folder, hashed into
    ``out``'s provenance; ``out`` resumes only the same model's samples with these settings on these records, and
    anything else there is refused unless ``force``, which deletes it first."""
    settings = settings or RejectionSettings()
    engine_settings = engine_settings or EngineSettings()
    out = Path(out)
    started = time.perf_counter()
    usable = [r for r in records if not r.metadata_only]
    skipped = len(records) - len(usable)
    if settings.limit is not None:
        usable = usable[: settings.limit]
    who, info = generator_identity(generator, model_id if Path(model_id).is_dir() else None)
    if model_id != "model" and not info:
        who["model"] = model_id
    identity = {
        **who,
        "settings": {k: v for k, v in asdict(settings).items() if k not in ("limit", "chunk")},
        "engine": settings_to_dict(engine_settings),
    }
    RunFolder(out, "data reject", identity, REJECT_OUTPUTS, info=info).open(
        {r.id: record_digest(r) for r in usable}, force=force
    )
    cache = JobCache(out / "samples.jsonl")
    sampling = getattr(generator, "sampling", None)
    mid = json.dumps({"model": model_id, "sampling": asdict(sampling) if sampling is not None else {}}, sort_keys=True)
    jobs = []
    for r in usable:
        resolved = r.resolved(media_root)
        for j in range(settings.k):
            order = sample_order(r, j, settings.seed)
            key = sample_key(r, j, order, mid, settings.tools)
            jobs.append(Job(key, resolved, order, f"{r.id}|s{j}", info={"sample": j}))
    pending = [job for job in jobs if job.key not in cache]
    run_jobs(
        RolloutEngine(generator, settings=engine_settings),
        pending,
        tools_on=settings.tools,
        chunk=settings.chunk,
        sink=cache.sink(sample=lambda job: job.info["sample"], order=lambda job: job.order),
        progress="rejection sampling" if progress else None,
        done_already=len(jobs) - len(pending),
    )

    samples: dict[str, list[Trajectory]] = defaultdict(list)
    for job in jobs:
        if job.key in cache:
            samples[job.record.id].append(cache.trajectory(job.key))
    accepted, pool = [], []
    accept_by = defaultdict(lambda: [0, 0])
    always_right = 0
    for r in usable:
        trajs = samples.get(r.id, [])
        oks = [check_verdict(r, t).correct for t in trajs]
        seen, kept = set(), 0
        for t, ok in zip(trajs, oks):
            good = ok and t.format_ok
            text = _assistant_text(t)
            if good and text not in seen and kept < settings.max_accept_per_item:
                accepted.append(t.to_dict())
                seen.add(text)
                kept += 1
            for key in (f"category={r.category}", f"needs_tool={needs_tool(r)}", "all"):
                accept_by[key][0] += int(good)
                accept_by[key][1] += 1
        if trajs and all(oks):
            always_right += 1
            if settings.drop_always_right:
                continue
        pool.append(r)
    write_jsonl(out / "accepted.jsonl", accepted)
    write_records(pool, out / "grpo_pool.jsonl")
    report = tally(usable, samples)
    report.update(
        {
            "items": len(usable),
            "skipped_without_media": skipped,
            "k": settings.k,
            "accepted": len(accepted),
            "accept_rate": {k: round(a / n, 4) for k, (a, n) in sorted(accept_by.items())},
            "grpo_pool": len(pool),
            "always_right": always_right,
            "reused_from_cache": len(jobs) - len(pending),
            "seconds": round(time.perf_counter() - started, 2),
        }
    )
    atomic_write_text(out / "report.json", json.dumps(report, indent=2))
    atomic_write_text(
        out / "manifest.json",
        json.dumps({"model": json.loads(mid), "settings": asdict(settings), "report": report}, indent=2),
    )
    return report


# What `data reject` writes into its folder (deleted by --force).
REJECT_OUTPUTS = ("samples.jsonl", "accepted.jsonl", "grpo_pool.jsonl", "report.json", "manifest.json")


def judge_records(
    records: list[PreferenceRecord],
    generator: Generator,
    engine_settings: EngineSettings | None = None,
    media_root: str | os.PathLike | None = None,
    tools: bool = True,
    seed: int = 0,
    limit: int | None = None,
) -> dict[str, Any]:
    """One sample per item in a seeded random order: accuracy (= pass@1) by category and needs-tool."""
    usable = [r for r in records if not r.metadata_only][:limit]
    engine = RolloutEngine(generator, settings=engine_settings or EngineSettings())
    jobs = [Job(f"{r.id}|eval", r.resolved(media_root), sample_order(r, 0, seed), f"{r.id}|eval") for r in usable]
    results = run_jobs(engine, jobs, tools_on=tools, chunk=max(1, len(jobs)))
    report = tally(usable, {job.record.id: [t] for job, t in results})
    report["accuracy"] = report["groups"]["all"]["pass@1"] if usable else 0.0
    report["chance"] = report["groups"]["all"]["chance"] if usable else 0.0
    report["items"] = len(usable)
    return report
