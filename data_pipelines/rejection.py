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
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from data_pipelines.distill import _append, read_cache
from data_pipelines.labels import chance_accuracy, check_verdict, first_choices
from data_pipelines.records import PreferenceRecord, presented_orders, write_jsonl, write_records
from mmreward.generators import Generator
from mmreward.rollout import RolloutEngine
from mmreward.settings import EngineSettings
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


def _needs_tool(r: PreferenceRecord) -> str:
    w = r.metadata.get("world") if isinstance(r.metadata, dict) else None
    return str(w.get("needs_tool")) if isinstance(w, dict) and "needs_tool" in w else "unknown"


def _assistant_text(t: Trajectory) -> str:
    return "\n".join(m["content"][0]["text"] for m in t.messages if m["role"] == "assistant")


def score_samples(records: list[PreferenceRecord], samples: dict[str, list[Trajectory]]) -> dict[str, Any]:
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
        for key in ("all", f"category={r.category}", f"needs_tool={_needs_tool(r)}"):
            g = groups[key]
            g["acc"].extend(oks)
            g["any"].append(any(oks))
            g["chance"].append(chance_accuracy(r))
            g["tools"].extend(bool(t.tool_trace) for t in trajs)
            g["fail"].extend(t.verdict is None for t in trajs)
            g["first"].extend(first_choices(t.verdict for t in trajs))
        stop.update(t.stop_reason for t in trajs)

    def mean(xs: list) -> float:
        return round(sum(xs) / len(xs), 4) if xs else 0.0

    table = {
        k: {
            "items": len(g["any"]),
            "samples": len(g["acc"]),
            "pass@1": mean(g["acc"]),
            "pass@k": mean(g["any"]),
            "tool_call_rate": mean(g["tools"]),
            "parse_failure_rate": mean(g["fail"]),
            "chance": mean(g["chance"]),  # pass@1 of a uniformly random valid verdict on these items
            "first_is_better": mean(g["first"]) if g["first"] else None,
        }
        for k, g in sorted(groups.items())
    }
    return {"groups": table, "stop_reasons": dict(stop)}


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
) -> dict[str, Any]:
    settings = settings or RejectionSettings()
    engine_settings = engine_settings or EngineSettings()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    cache_path = out / "samples.jsonl"
    done = read_cache(cache_path)
    sampling = getattr(generator, "sampling", None)
    mid = json.dumps({"model": model_id, "sampling": asdict(sampling) if sampling is not None else {}}, sort_keys=True)
    usable = [r for r in records if not r.metadata_only]
    skipped = len(records) - len(usable)
    if settings.limit is not None:
        usable = usable[: settings.limit]
    resolved = {r.id: r.resolved(media_root) for r in usable}
    jobs = []
    for r in usable:
        for j in range(settings.k):
            order = sample_order(r, j, settings.seed)
            jobs.append((sample_key(r, j, order, mid, settings.tools), r, j, order))
    pending = [job for job in jobs if job[0] not in done]
    engine = RolloutEngine(generator, settings=engine_settings)
    bar = None
    if progress:
        from tqdm.auto import tqdm  # noqa: PLC0415

        bar = tqdm(total=len(jobs), initial=len(jobs) - len(pending), desc="rejection sampling", unit="sample")
    for i in range(0, len(pending), settings.chunk):
        chunk = pending[i : i + settings.chunk]
        trajs = engine.run(
            [resolved[r.id].to_task() for _, r, _, _ in chunk],
            orders=[o for *_, o in chunk],
            tools_on=settings.tools,
            keys=[f"{r.id}|s{j}" for _, r, j, _ in chunk],
        )
        entries = []
        for (key, r, j, order), t in zip(chunk, trajs):
            status = "failed" if t.stop_reason == "generation_error" else "done"
            entry = {
                "key": key,
                "record_id": r.id,
                "sample": j,
                "order": order,
                "status": status,
                "trajectory": t.to_dict(),
            }
            entries.append(entry)
            if status == "done":
                done[key] = entry
        _append(cache_path, entries)
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()

    samples: dict[str, list[Trajectory]] = defaultdict(list)
    for key, r, _, _ in jobs:
        if key in done:
            samples[r.id].append(Trajectory.from_dict(done[key]["trajectory"]))
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
            for key in (f"category={r.category}", f"needs_tool={_needs_tool(r)}", "all"):
                accept_by[key][0] += int(good)
                accept_by[key][1] += 1
        if trajs and all(oks):
            always_right += 1
            if settings.drop_always_right:
                continue
        pool.append(r)
    write_jsonl(out / "accepted.jsonl", accepted)
    write_records(pool, out / "grpo_pool.jsonl")
    report = score_samples(usable, samples)
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
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "manifest.json").write_text(
        json.dumps({"model": json.loads(mid), "settings": asdict(settings), "report": report}, indent=2)
    )
    return report


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
    trajs = engine.run(
        [r.resolved(media_root).to_task() for r in usable],
        orders=[sample_order(r, 0, seed) for r in usable],
        tools_on=tools,
        keys=[f"{r.id}|eval" for r in usable],
    )
    report = score_samples(usable, {r.id: [t] for r, t in zip(usable, trajs)})
    report["accuracy"] = report["groups"]["all"]["pass@1"] if usable else 0.0
    report["chance"] = report["groups"]["all"]["chance"] if usable else 0.0
    report["items"] = len(usable)
    return report
