"""``mmreward eval ...``: run a judge on a suite, score predictions (ours and official), compare two runs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub) -> dict:
    from eval.suites import SUITES  # noqa: PLC0415

    p = sub.add_parser(
        "eval",
        help="evaluate judges: run a suite, score predictions, compare runs",
        description="Suites: " + "; ".join(f"{k} ({v.description})" for k, v in SUITES.items()),
    )
    esub = p.add_subparsers(dest="eval_command", metavar="EVAL_COMMAND")
    esub.required = True
    r = esub.add_parser("run", help="judge a suite with a checkpoint; writes predictions.jsonl, metrics, report")
    r.add_argument("--suite", required=True, choices=list(SUITES))
    r.add_argument("--model", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--data", help="benchmarks folder (default ../shared/benchmarks) or the world folder")
    r.add_argument("--input", help="the suite's file, if not at its usual place under --data")
    r.add_argument("--media-root")
    r.add_argument("--limit", type=int)
    r.add_argument("--swap", choices=["random", "both", "none"], default="random")
    r.add_argument("--votes", type=int, default=1)
    r.add_argument("--tools", choices=["on", "off"], default="on")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument(
        "--pointwise",
        action="store_true",
        help="score each candidate 1-10 on its own; pairs are formed from score differences (scalar judge)",
    )
    r.add_argument("--max-new-tokens", type=int, default=256)
    r.add_argument("--batch-size", type=int, default=8)
    r.add_argument(
        "--reuse-cache",
        action="store_true",
        help="keep each trajectory's KV cache between tool turns, batched: a turn encodes only what it appended (same tokens; about 1.4x the judgments/s on tool-turn work, scripts/bench/bench_server.py)",
    )
    r.add_argument("--device", default="auto")
    s = esub.add_parser("score", help="score a predictions file (ours, or a benchmark's own format)")
    s.add_argument("--suite", required=True, choices=list(SUITES))
    s.add_argument("--predictions", required=True, help="a predictions file, or a run folder (all shards)")
    s.add_argument("--data")
    s.add_argument("--input")
    s.add_argument("--out", help="where metrics.json/report.md go (default: beside the predictions)")
    s.add_argument("--json", action="store_true")
    c = esub.add_parser("compare", help="two runs' metrics side by side")
    c.add_argument("a")
    c.add_argument("b")
    esub.add_parser("suites", help="list the suites")
    return {"eval": run}


def run(args: argparse.Namespace) -> int:
    return {"run": _run, "score": _score, "compare": _compare, "suites": _suites}[args.eval_command](args)


def _suites(args) -> int:
    from eval.suites import SUITES  # noqa: PLC0415

    for k, v in SUITES.items():
        print(f"{k:30s} {v.description}")
    return 0


def _run(args) -> int:
    from eval.run import RunSettings, read_predictions, run_suite  # noqa: PLC0415
    from eval.score import score_predictions, write_report  # noqa: PLC0415
    from eval.suites import get_suite, load_suite  # noqa: PLC0415
    from mmreward.generators import SamplingSettings, TransformersGenerator  # noqa: PLC0415
    from mmreward.modeling import ModelSettings, load_model  # noqa: PLC0415
    from mmreward.settings import resolve_engine_settings  # noqa: PLC0415

    suite = get_suite(args.suite)
    model, processor = load_model(args.model, ModelSettings(device=args.device))
    gen = TransformersGenerator(
        model, processor, SamplingSettings(max_new_tokens=args.max_new_tokens), reuse_cache=args.reuse_cache
    )
    world = {}
    if suite.world:  # the synthetic world's suites are judged with its settings, whatever the checkpoint recorded
        from data_pipelines.synthetic.generate import WORLD_TOOLS, WORLD_VISUAL  # noqa: PLC0415

        world = {"visual": WORLD_VISUAL, "tools": WORLD_TOOLS}
    engine = resolve_engine_settings(args.model, processor, batch_size=args.batch_size, **world)
    settings = RunSettings(
        swap=args.swap,
        votes=args.votes,
        tools=args.tools == "on",
        seed=args.seed,
        limit=args.limit,
        chunk=max(16, args.batch_size),
        pointwise=args.pointwise,
    )
    manifest = run_suite(
        suite,
        gen,
        args.out,
        settings,
        data=args.data,
        input_path=args.input,
        media_root=args.media_root,
        engine_settings=engine,
        progress=True,
    )
    from eval.run import shard  # noqa: PLC0415

    rank, world = shard()
    if world > 1:
        print(
            f"[rank {rank}/{world}] wrote {manifest['new_predictions']} predictions; score with `mmreward eval score "
            f"--suite {suite.name} --predictions {args.out}` once every process is done"
        )
        return 0
    records, _ = load_suite(suite, args.data, args.input, args.media_root)
    rows = read_predictions(Path(args.out))
    if not rows:
        print(json.dumps(manifest, indent=2))
        print("no item of this suite has its media on disk; nothing was judged")
        return 0
    metrics = score_predictions(suite, rows, records)
    metrics["run"] = manifest
    paths = write_report(metrics, args.out)
    o = metrics["ours"]
    print(
        f"{suite.name}: accuracy {o['accuracy']:.3f} (95% CI {o['ci95'][0]:.3f}-{o['ci95'][1]:.3f}) over {o['n']} "
        f"judgments; parse failures {o['parse_failure_rate']:.3f}; tool calls {o['tool_call_rate']:.3f}; "
        f"skipped without media {manifest['skipped_without_media']}"
    )
    print(f"report: {paths['report']}")
    return 0


def _score(args) -> int:
    from eval.run import read_predictions  # noqa: PLC0415
    from eval.score import score_native, score_predictions, write_report  # noqa: PLC0415
    from eval.suites import get_suite, load_suite  # noqa: PLC0415

    suite = get_suite(args.suite)
    pred = Path(args.predictions)
    if not pred.exists():
        raise FileNotFoundError(f"{pred}: no such predictions file or run folder")
    metrics = score_native(pred) if pred.is_file() else None
    if metrics is None:
        records, _ = load_suite(suite, args.data, args.input)
        metrics = score_predictions(suite, read_predictions(args.predictions), records)
    metrics["suite"] = suite.name
    out = args.out or str(pred if pred.is_dir() else pred.parent)
    write_report(metrics, out)
    if args.json:
        print(json.dumps(metrics, indent=2, default=str))
    else:
        print(Path(out, "report.md").read_text())
    return 0


def _compare(args) -> int:
    from eval.score import compare  # noqa: PLC0415

    def load(p):
        p = Path(p)
        return json.loads((p / "metrics.json" if p.is_dir() else p).read_text())

    print(compare(load(args.a), load(args.b)))
    return 0
