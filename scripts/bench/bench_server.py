"""The judge server under load: requests/s and p50/p99 latency at several concurrencies, dynamic batching on vs
off, against a real uvicorn server on loopback, plus the engine's own batched throughput on the same requests
without HTTP (so the server's overhead shows). One run, JSON out.

    python scripts/bench/bench_server.py [--model DIR] [--requests 64] [--concurrency 1 8 32]

Without ``--model`` it builds the tiny model. Requests are pairwise judgments of synthetic-world image pairs
(real PNGs sent as base64 data URLs), sampled at temperature 1 with ``min_tokens = max_tokens`` so every
request does the same work: a first turn of ``--max-new-tokens`` tokens, about a thinking judge's reasoning (a
random-weight model's turn never parses, so it ends there). Goals (issue 7): at concurrency 32,
batching on >= 4x the requests/s of batching off, and the server >= 0.5x the raw engine's throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx


def build(tmp: Path, model_dir: str | None, n_pairs: int):
    from data_pipelines.records import read_records
    from data_pipelines.synthetic.generate import generate_world
    from mmreward.client import encode_media
    from mmreward.tiny import init_tiny

    model = model_dir or str(init_tiny(tmp / "model"))
    generate_world(tmp / "world", seed=0, splits={"test": 4 * n_pairs})
    records = [r for r in read_records(tmp / "world" / "test.jsonl") if r.task == "pairwise" and r.modality == "image"]
    bodies = []
    for r in records[:n_pairs]:
        bodies.append(
            {"prompt": r.prompt, "candidates": [encode_media(tmp / "world" / c) for c in r.candidates], "id": r.id}
        )
    return model, bodies


def make_judge(model: str, args):
    from mmreward.server import BackendSettings, build_judge

    return build_judge(
        BackendSettings(
            model=model,
            max_new_tokens=args.max_new_tokens,
            max_turns=args.max_turns,
            engine_batch=max(args.concurrency),
        )
    )


def request_options(args) -> dict:
    n = args.max_new_tokens
    return {"temperature": 1.0, "seed": 0, "tools": True, "max_tokens": n, "min_tokens": n}


async def load(url: str, bodies: list[dict], concurrency: int, n: int, options: dict) -> dict:
    sem = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    errors = 0

    async with httpx.AsyncClient(base_url=url, timeout=600) as client:

        async def one(k: int) -> None:
            nonlocal errors
            async with sem:
                start = time.perf_counter()
                r = await client.post("/v1/judge", json={**bodies[k % len(bodies)], **options})
                latencies.append(time.perf_counter() - start)
                errors += r.status_code != 200

        start = time.perf_counter()
        await asyncio.gather(*(one(k) for k in range(n)))
        wall = time.perf_counter() - start
    lat = sorted(latencies)
    return {
        "requests": n,
        "errors": errors,
        "wall_s": round(wall, 3),
        "requests_per_s": round(n / wall, 3),
        "p50_s": round(statistics.median(lat), 4),
        "p99_s": round(lat[min(len(lat) - 1, int(0.99 * len(lat)))], 4),
    }


def raw_engine(judge, bodies: list[dict], n: int, args) -> dict:
    """The same requests straight into one batched ``Judge.judge`` call per ``max(concurrency)`` tasks."""
    from mmreward.generators import SamplingSettings
    from mmreward.judge import JudgeSettings
    from mmreward.media import load_image
    from mmreward.protocol import JudgeTask

    tasks = []
    for k in range(n):
        b = bodies[k % len(bodies)]
        tasks.append(JudgeTask(b["prompt"], [load_image(c) for c in b["candidates"]], id=f"{b['id']}-{k}"))
    n_tok = args.max_new_tokens
    judge.engine.generator.sampling = SamplingSettings(n_tok, 1.0, 1.0, 0, min_new_tokens=n_tok)
    batch = max(args.concurrency)
    settings = JudgeSettings(tools=True)
    start = time.perf_counter()
    for i in range(0, n, batch):
        judge.judge(tasks[i : i + batch], settings=[settings] * len(tasks[i : i + batch]))
    wall = time.perf_counter() - start
    return {"requests": n, "wall_s": round(wall, 3), "requests_per_s": round(n / wall, 3), "batch": batch}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="checkpoint folder (default: build the tiny model)")
    ap.add_argument("--requests", type=int, default=64, help="requests per (setting, concurrency)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument(
        "--max-new-tokens", type=int, default=192, help="tokens per turn (every request makes exactly this)"
    )
    ap.add_argument("--max-turns", type=int, default=2)
    ap.add_argument("--batch-wait-ms", type=float, default=10.0)
    args = ap.parse_args()

    from transformers.utils import logging as hf_logging

    from mmreward.server import BackgroundServer, ServerSettings

    hf_logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        model, bodies = build(Path(tmp), args.model, 32)
        judge = make_judge(model, args)
        options = request_options(args)
        raw_engine(judge, bodies, min(8, args.requests), args)  # warm-up (allocator, kernels)
        raw = raw_engine(judge, bodies, args.requests, args)
        results: dict[str, dict] = {}
        for name, max_batch in (("batching_on", max(args.concurrency)), ("batching_off", 1)):
            settings = ServerSettings(port=0, max_batch=max_batch, batch_wait_ms=args.batch_wait_ms, max_queue=1024)
            with BackgroundServer(judge, settings) as srv:
                results[name] = {}
                for c in args.concurrency:
                    n = args.requests if c > 1 or max_batch == 1 else max(8, args.requests // 4)
                    if c == 1:
                        n = max(8, args.requests // 4)  # sequential requests: fewer are enough for a stable rate
                    results[name][f"c{c}"] = asyncio.run(load(srv.url, bodies, c, n, options))
    top = f"c{max(args.concurrency)}"
    on, off = results["batching_on"][top]["requests_per_s"], results["batching_off"][top]["requests_per_s"]
    report = {
        "model": args.model or "tiny (built here)",
        "work_per_request": f"pairwise image judgment, tools on, <= {args.max_turns} turns x {args.max_new_tokens} tokens",
        "raw_engine": raw,
        "server": results,
        f"batching_speedup_at_{top}": round(on / off, 2),
        f"server_vs_raw_engine_at_{top}": round(on / raw["requests_per_s"], 3),
        "goals": {"batching_speedup": ">= 4", "server_vs_raw_engine": ">= 0.5"},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
