"""The judge server under load: requests/s and p50/p99 latency at several concurrencies, dynamic batching on vs
off, against ``mmreward serve`` in its own process on loopback (as people run it), plus the engine's own batched
throughput on the same requests without HTTP (so the server's overhead shows), and where a request's time goes
(queue, engine, the rest of the server, HTTP and the client). One run, JSON out.

    python scripts/bench/bench_server.py [--model DIR] [--requests 64] [--concurrency 1 8 32]

Without ``--model`` it builds the tiny model. Requests are pairwise judgments of synthetic-world image pairs
(real PNGs sent as base64 data URLs), sampled at temperature 1 with ``min_tokens = max_tokens`` so every
request does the same work: a first turn of ``--max-new-tokens`` tokens, about a thinking judge's reasoning (a
random-weight model's turn never parses, so it ends there). Goals: at concurrency 32, batching on >= 4x the
requests/s of batching off, and the server >= 0.9x the raw engine's throughput.

It also runs a Pref-GRPO-shaped workload: groups of 6 generated images, each judged as its 15 pairs, sent once as
``/v1/rewards`` calls (one per group, the groups concurrently) and once as per-pair chat requests the way
Pref-GRPO's client sends them (its think template, 16 threads), on the same server and the same work per pair.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import statistics
import subprocess
import sys
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


class ServeProcess:
    """``mmreward serve`` in its own process, as people run it: clients elsewhere, the model on the server's own
    worker thread. Yields the base URL once /health answers."""

    def __init__(self, model: str, args, max_batch: int) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.argv = [
            sys.executable, "-m", "mmreward.cli", "serve", "--model", model, "--port", str(self.port),
            "--max-batch", str(max_batch), "--batch-wait-ms", str(args.batch_wait_ms), "--max-queue", "1024",
            "--max-new-tokens", str(args.max_new_tokens), "--max-turns", str(args.max_turns), "--log-level", "warning",
        ]  # fmt: skip

    def __enter__(self) -> str:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    return url
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mmreward serve did not start: {self.proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.5)

    def __exit__(self, *exc) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


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
    server: list[dict] = []
    errors = 0

    async with httpx.AsyncClient(base_url=url, timeout=600) as client:

        async def one(k: int) -> None:
            nonlocal errors
            async with sem:
                start = time.perf_counter()
                r = await client.post("/v1/judge", json={**bodies[k % len(bodies)], **options})
                latencies.append(time.perf_counter() - start)
                errors += r.status_code != 200
                if r.status_code == 200:
                    server.append(r.json().get("timings", {}))

        start = time.perf_counter()
        await asyncio.gather(*(one(k) for k in range(n)))
        wall = time.perf_counter() - start
    lat = sorted(latencies)
    out = {
        "requests": n,
        "errors": errors,
        "wall_s": round(wall, 3),
        "requests_per_s": round(n / wall, 3),
        "p50_s": round(statistics.median(lat), 4),
        "p99_s": round(lat[min(len(lat) - 1, int(0.99 * len(lat)))], 4),
    }
    if server:
        # Where a request's time went, on average: waiting for its batch, in the engine, in the server outside
        # both (validation, media decoding, JSON), and outside the server (HTTP, the client).
        queue_s = statistics.mean(t["queue_s"] for t in server)
        compute_s = statistics.mean(t["compute_s"] for t in server)
        total_s = statistics.mean(t["total_s"] for t in server)
        out["time_per_request_s"] = {
            "queue": round(queue_s, 4),
            "engine": round(compute_s, 4),
            "server_other": round(total_s - queue_s - compute_s, 4),
            "http_and_client": round(statistics.mean(latencies) - total_s, 4),
        }
        out["mean_batch_tasks"] = round(statistics.mean(t["batch_tasks"] for t in server), 2)
    return out


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


async def pref_grpo(url: str, bodies: list[dict], groups: int, options: dict) -> dict:
    """Groups of 6 images judged as 15 pairs: /v1/rewards per group vs one chat request per pair (16 at a time)."""
    import itertools

    images = [c for b in bodies for c in b["candidates"]]
    group_items = [[images[(6 * g + k) % len(images)] for k in range(6)] for g in range(groups)]
    prompt = bodies[0]["prompt"]
    judge_options = {k: options[k] for k in ("temperature", "seed", "tools", "max_tokens", "min_tokens")}
    think = (
        "You are an objective and precise evaluator for image quality comparison. The caption for the generated "
        f"images is: 「{prompt}」. Reason inside <think> and </think>, then answer inside <answer> and </answer> with "
        "only one of:\n- Image 1 is better\n- Image 2 is better\n<think>...</think>\n<answer>Image 1 is better</answer>"
    )
    out = {}
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        start = time.perf_counter()
        replies = await asyncio.gather(
            *(
                client.post(
                    "/v1/rewards",
                    json={"prompt": prompt, "items": items, "mode": "pairwise_winrate", **judge_options},
                )
                for items in group_items
            )
        )
        wall = time.perf_counter() - start
        out["rewards_endpoint"] = {
            "calls": groups,
            "pairs": 15 * groups,
            "errors": sum(r.status_code != 200 for r in replies),
            "wall_s": round(wall, 3),
            "pairs_per_s": round(15 * groups / wall, 3),
        }
        sem = asyncio.Semaphore(16)
        errors = 0

        async def pair(a: str, b: str) -> None:
            nonlocal errors
            content = [{"type": "image_url", "image_url": {"url": u}} for u in (a, b)]
            content.append({"type": "text", "text": think})
            body = {
                "model": "mmreward-judge",
                "messages": [{"role": "user", "content": content}],
                "temperature": options["temperature"],
                "seed": options["seed"],
                "max_tokens": 4096,
                "mmreward": {"min_tokens": options["min_tokens"], "tools": options["tools"]},
            }
            async with sem:
                r = await client.post("/v1/chat/completions", json=body)
                errors += r.status_code != 200

        start = time.perf_counter()
        await asyncio.gather(*(pair(a, b) for items in group_items for a, b in itertools.combinations(items, 2)))
        wall = time.perf_counter() - start
        out["per_pair_chat"] = {
            "calls": 15 * groups,
            "pairs": 15 * groups,
            "errors": errors,
            "wall_s": round(wall, 3),
            "pairs_per_s": round(15 * groups / wall, 3),
        }
    out["rewards_vs_per_pair_chat"] = round(
        out["rewards_endpoint"]["pairs_per_s"] / out["per_pair_chat"]["pairs_per_s"], 3
    )
    return out


def cache_reuse(model_dir: str, bodies: list[dict], args) -> dict:
    """Tool-turn pairwise judgments per second at the top concurrency, batched cache reuse on vs off."""
    from scripted_turns import ToolTurns

    from mmreward.generators import SamplingSettings, TransformersGenerator
    from mmreward.judge import Judge
    from mmreward.modeling import load_model
    from mmreward.rollout import RolloutEngine
    from mmreward.server import BackgroundServer, ServerSettings
    from mmreward.settings import resolve_engine_settings

    model, processor = load_model(model_dir)
    c = max(args.concurrency)
    n = args.max_new_tokens
    options = {"temperature": 0.0, "tools": True, "max_tokens": n, "min_tokens": n}
    out = {}
    for name, reuse in (("reencode", False), ("reuse_cache", True)):
        gen = ToolTurns(TransformersGenerator(model, processor, SamplingSettings(n), reuse_cache=reuse))
        engine = RolloutEngine(gen, settings=resolve_engine_settings(model_dir, processor, max_turns=4, batch_size=c))
        # A wait long enough that each wave of c requests is judged as one batch, in both modes alike.
        settings = ServerSettings(port=0, max_batch=c, batch_wait_ms=100.0, max_queue=1024)
        with BackgroundServer(Judge(engine), settings) as srv:
            asyncio.run(load(srv.url, bodies, c, min(8, c), options))  # warm-up
            out[name] = asyncio.run(load(srv.url, bodies, c, c * 2, options))
        # The same judgments straight into the engine (no HTTP), one batch of c at a time.
        from mmreward.judge import JudgeSettings
        from mmreward.media import load_image
        from mmreward.protocol import JudgeTask

        tasks = [
            JudgeTask(b["prompt"], [load_image(x) for x in b["candidates"]], id=f"e{k}") for k, b in enumerate(bodies)
        ]
        gen.sampling = SamplingSettings(n, min_new_tokens=n)
        start = time.perf_counter()
        for _ in range(2):
            Judge(engine).judge(tasks[:c], settings=[JudgeSettings(tools=True)] * len(tasks[:c]))
        out[name]["engine_judgments_per_s"] = round(2 * len(tasks[:c]) / (time.perf_counter() - start), 3)
    out["reuse_vs_reencode"] = round(out["reuse_cache"]["requests_per_s"] / out["reencode"]["requests_per_s"], 3)
    out["reuse_vs_reencode_engine"] = round(
        out["reuse_cache"]["engine_judgments_per_s"] / out["reencode"]["engine_judgments_per_s"], 3
    )
    out["work"] = f"pairwise image judgment: 2 crop turns + a verdict, {n} tokens a turn, concurrency {c}"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="checkpoint folder (default: build the tiny model)")
    ap.add_argument("--requests", type=int, default=64, help="requests per (setting, concurrency)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument(
        "--max-new-tokens", type=int, default=192, help="tokens per turn (every request makes exactly this)"
    )
    ap.add_argument("--max-turns", type=int, default=2)
    ap.add_argument("--batch-wait-ms", type=float, default=30.0, help="the server's quiet period (its default)")
    ap.add_argument("--pref-groups", type=int, default=4, help="groups of 6 in the Pref-GRPO-shaped workload")
    ap.add_argument("--skip-cache", action="store_true", help="skip the cache reuse on/off comparison")
    args = ap.parse_args()

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        model, bodies = build(Path(tmp), args.model, 32)
        judge = make_judge(model, args)
        options = request_options(args)
        raw_engine(judge, bodies, min(8, args.requests), args)  # warm-up (allocator, kernels)
        raw = raw_engine(judge, bodies, args.requests, args)
        results: dict[str, dict] = {}
        for name, max_batch in (("batching_on", max(args.concurrency)), ("batching_off", 1)):
            with ServeProcess(model, args, max_batch) as url:
                asyncio.run(load(url, bodies, max(args.concurrency), min(8, args.requests), options))  # warm-up
                results[name] = {}
                for c in args.concurrency:
                    n = args.requests if c > 1 or max_batch == 1 else max(8, args.requests // 4)
                    if c == 1:
                        n = max(8, args.requests // 4)  # sequential requests: fewer are enough for a stable rate
                    results[name][f"c{c}"] = asyncio.run(load(url, bodies, c, n, options))
                if max_batch > 1:
                    pref = asyncio.run(pref_grpo(url, bodies, args.pref_groups, options))
        # The raw engine again, after the server: the machine's drift hits both sides of the ratio alike.
        again = raw_engine(judge, bodies, args.requests, args)
        raw = {**raw, "wall_s": round(raw["wall_s"] + again["wall_s"], 3), "requests": 2 * args.requests}
        raw["requests_per_s"] = round(raw["requests"] / raw["wall_s"], 3)
        del judge
        reuse = None if args.skip_cache else cache_reuse(model, bodies, args)
    top = f"c{max(args.concurrency)}"
    on, off = results["batching_on"][top]["requests_per_s"], results["batching_off"][top]["requests_per_s"]
    report = {
        "model": args.model or "tiny (built here)",
        "work_per_request": f"pairwise image judgment, tools on, <= {args.max_turns} turns x {args.max_new_tokens} tokens",
        "raw_engine": raw,
        "server": results,
        f"batching_speedup_at_{top}": round(on / off, 2),
        f"server_vs_raw_engine_at_{top}": round(on / raw["requests_per_s"], 3),
        "pref_grpo_group_of_6": pref,
        "tool_turns_cache_reuse": reuse,
        "goals": {"batching_speedup": ">= 4", "server_vs_raw_engine": ">= 0.9", "reuse_vs_reencode": ">= 1.5"},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
