"""``mmreward eval ...``: run a judge on a suite, score predictions (ours and official), compare two runs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub) -> dict:
    from eval.suites import SUITES  # noqa: PLC0415
    from mmreward.cli import add_model_options, add_reuse_cache_option  # noqa: PLC0415

    p = sub.add_parser(
        "eval",
        help="evaluate judges: run a suite, score predictions, compare runs",
        description="Suites: " + "; ".join(f"{k} ({v.description})" for k, v in SUITES.items()),
    )
    _add_view(sub)
    esub = p.add_subparsers(dest="eval_command", metavar="EVAL_COMMAND")
    esub.required = True
    r = esub.add_parser(
        "run",
        help="judge a suite with a checkpoint; writes predictions.jsonl, metrics, report",
        description="Judge every item of a suite that has its media on disk with a local checkpoint, then score it "
        "(ours and the benchmark's official rule) into metrics.json and report.md. Resumable: a re-run with the same "
        "suite, model, settings and records continues where it stopped; anything else in the same --out is refused "
        "unless --force. Exits 1 when no item could be judged.",
    )
    r.add_argument("--suite", required=True, choices=list(SUITES), help="the suite (`mmreward eval suites`)")
    r.add_argument("--model", required=True, help="local checkpoint folder (full model or adapter)")
    r.add_argument("--out", required=True, help="run folder to write (predictions, run.json, metrics, report)")
    r.add_argument(
        "--data",
        help="benchmarks folder (default $MMREWARD_BENCHMARKS, else ../shared/benchmarks), or the world folder",
    )
    r.add_argument("--input", help="the suite's file, if not at its usual place under --data")
    r.add_argument("--media-root", help="folder the items' media paths are relative to (default: the suite's)")
    r.add_argument("--limit", type=int, help="judge only the first N items with media (default: all)")
    r.add_argument(
        "--swap",
        choices=["random", "both", "none"],
        default="random",
        help="presented orders: random (one seeded order per item), both (each item twice, swapped), none",
    )
    r.add_argument("--votes", type=int, default=1, help="independent judgments per order (official k-run tables)")
    r.add_argument("--tools", choices=["on", "off"], default="on", help="let the judge crop and select frames")
    r.add_argument("--seed", type=int, default=0, help="order seed")
    r.add_argument(
        "--pointwise",
        action="store_true",
        help="score each candidate 1-10 on its own; pairs are formed from score differences (scalar judge)",
    )
    r.add_argument(
        "--reward",
        action="store_true",
        help="also read the judge's continuous reward (P(better); the expected score with --pointwise): the report "
        "gets a reliability diagram, the calibration error and the accuracy of abstaining below a confidence",
    )
    r.add_argument(
        "--threshold",
        type=float,
        default=0.0,
        help="a scalar judge (--pointwise) under MJ-Bench's rule: a score difference at or below this is a tie",
    )
    r.add_argument("--max-new-tokens", type=int, default=256, help="per assistant turn")
    r.add_argument("--batch-size", type=int, default=8, help="trajectories generated together")
    add_reuse_cache_option(r)
    add_model_options(r)
    r.add_argument("--force", action="store_true", help="delete another run's work in --out and start over")
    s = esub.add_parser(
        "score",
        help="score a predictions file (ours, or a benchmark's own format)",
        description="Score an `eval run` folder (or its predictions file) against its suite, or a benchmark's own "
        "prediction file (GenAI-Bench, Multimodal RewardBench) with its official rule. Prints the report; writes "
        "metrics.json and report.md into --out, or back into the run folder when scoring an `eval run` folder. "
        "Nothing is written beside a benchmark's files.",
    )
    s.add_argument("--suite", required=True, choices=list(SUITES), help="the suite the predictions belong to")
    s.add_argument("--predictions", required=True, help="a predictions file, or a run folder (all shards)")
    s.add_argument(
        "--threshold",
        type=float,
        default=0.0,
        help="a scalar judge (--pointwise) under MJ-Bench's rule: a score difference at or below this is a tie",
    )
    s.add_argument("--data", help="benchmarks folder, or the world folder (as for `eval run`)")
    s.add_argument("--input", help="the suite's file, if not at its usual place under --data")
    s.add_argument(
        "--out",
        help="folder for metrics.json/report.md (default: the run folder for an `eval run` folder, else nothing "
        "is written)",
    )
    s.add_argument("--json", action="store_true", help="print the metrics as JSON")
    c = esub.add_parser(
        "compare",
        help="two runs' metrics side by side",
        description="Print two runs' metrics (accuracy, macro, parse failures, tool calls, position bias, per "
        "category) side by side as a Markdown table.",
    )
    c.add_argument("a", help="a run folder (or its metrics.json)")
    c.add_argument("b", help="another run folder (or its metrics.json)")
    pr = esub.add_parser(
        "probe",
        help="reward-hacking probes: perturbations a sound judge must not prefer (robustness table)",
        description="Judge pairs in which one candidate is perturbed in a way a sound judge must not reward: the "
        "prompt's words written into the worse image, over-saturation and over-sharpening, another prompt's image, a "
        "candidate against its own copy, a frozen or looped clip against a moving one, a longer or more confident "
        "wrong answer. Every pair is judged in both orders. Writes probes.json and probes.md: per probe, the rate at "
        "which the perturbed candidate wins, with a 95%% interval and the unperturbed baseline.",
    )
    pr.add_argument(
        "--model", required=True, help="local checkpoint folder, or 'oracle' (the world's rule-based judge)"
    )
    pr.add_argument("--out", required=True, help="folder for probes.json, probes.md and the perturbed media")
    pr.add_argument("--data", help="the synthetic world folder (its test split is the default source of pairs)")
    pr.add_argument("--records", help="records file to draw pairs from instead (images, videos or answers with media)")
    pr.add_argument("--suite", choices=list(SUITES), help="draw pairs from a suite instead (real benchmark pairs)")
    pr.add_argument("--media-root", help="folder the records' media paths are relative to")
    pr.add_argument("--limit", type=int, default=16, help="source pairs per probe")
    pr.add_argument("--probes", nargs="+", help="which probes (default: all that the pairs allow)")
    pr.add_argument("--tools", choices=["on", "off"], default="on", help="let the judge crop and select frames")
    pr.add_argument("--max-new-tokens", type=int, default=256, help="per assistant turn")
    pr.add_argument("--batch-size", type=int, default=8, help="trajectories generated together")
    add_model_options(pr)
    esub.add_parser("suites", help="list the suites", description="List the suites with what each holds and scores.")
    return {"eval": run, "view": _view}


def run(args: argparse.Namespace) -> int:
    handlers = {"run": _run, "score": _score, "compare": _compare, "suites": _suites, "probe": _probe}
    return handlers[args.eval_command](args)


def _suites(args) -> int:
    from eval.suites import SUITES  # noqa: PLC0415

    for k, v in SUITES.items():
        print(f"{k:30s} {v.description}")
    return 0


def _run(args) -> int:
    from eval.run import RunSettings, read_predictions, run_suite  # noqa: PLC0415
    from eval.score import score_predictions, write_report  # noqa: PLC0415
    from eval.suites import get_suite, load_suite  # noqa: PLC0415
    from mmreward.cli import check_model_dir, model_settings  # noqa: PLC0415
    from mmreward.errors import RunFailure  # noqa: PLC0415
    from mmreward.generators import SamplingSettings, TransformersGenerator  # noqa: PLC0415
    from mmreward.modeling import load_model  # noqa: PLC0415
    from mmreward.settings import resolve_engine_settings  # noqa: PLC0415

    suite = get_suite(args.suite)
    check_model_dir(args.model)
    records, root = load_suite(suite, args.data, args.input, args.media_root)
    if not any(not r.metadata_only and r.has_media(root) for r in records):
        raise RunFailure(
            f"suite {suite.name}: none of its {len(records)} items has its media on disk under {root}, so nothing "
            "can be judged; give --data (or --media-root) where the media are"
        )
    model, processor = load_model(args.model, model_settings(args))
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
        reward=args.reward,
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
        model_path=args.model,
        force=args.force,
    )
    from eval.run import shard  # noqa: PLC0415

    rank, world = shard()
    if world > 1:
        print(
            f"[rank {rank}/{world}] wrote {manifest['new_predictions']} predictions; score with `mmreward eval score "
            f"--suite {suite.name} --predictions {args.out}` once every process is done"
        )
        return 0
    covered = [r.id for r in records if not r.metadata_only and r.has_media(root)]
    if args.limit is not None:  # score what this run covers, not what a larger earlier --limit left there
        covered = covered[: args.limit]
    covered = set(covered)
    rows = [r for r in read_predictions(Path(args.out)) if r["record_id"] in covered]
    if not rows:
        print(json.dumps(manifest, indent=2))
        raise RunFailure("no judgment was made or found in " + args.out)
    metrics = score_predictions(suite, rows, records, args.threshold)
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
    from eval.score import check_native_suite, score_native, score_predictions, write_report  # noqa: PLC0415
    from eval.suites import get_suite, load_suite  # noqa: PLC0415
    from mmreward.errors import InputError  # noqa: PLC0415
    from mmreward.runs import PROVENANCE  # noqa: PLC0415

    suite = get_suite(args.suite)
    pred = Path(args.predictions)
    if not pred.exists():
        raise InputError(f"--predictions {pred}: no such predictions file or run folder")
    run_dir = pred if pred.is_dir() else pred.parent
    ours = (run_dir / PROVENANCE).is_file() or (run_dir / "run.json").is_file()
    metrics = score_native(pred) if pred.is_file() else None
    if metrics is not None:
        check_native_suite(metrics, suite, pred)
    else:
        rows = read_predictions(args.predictions)
        if not rows:
            raise InputError(f"--predictions {pred}: no prediction rows (an `eval run` folder or predictions file)")
        recorded = _recorded_suite(run_dir)
        if recorded and recorded != suite.name:
            raise InputError(f"--predictions {pred} holds an `eval run` of {recorded}; use --suite {recorded}")
        records, _ = load_suite(suite, args.data, args.input)
        metrics = score_predictions(suite, rows, records, args.threshold)
    metrics["suite"] = suite.name
    out = args.out or (str(run_dir) if ours else None)
    if out is not None:
        write_report(metrics, out)
        text = Path(out, "report.md").read_text()
    else:
        import tempfile  # noqa: PLC0415

        with tempfile.TemporaryDirectory() as tmp:
            write_report(metrics, tmp)
            text = Path(tmp, "report.md").read_text()
    if args.json:
        print(json.dumps(metrics, indent=2, default=str))
    else:
        print(text)
    if out is None:
        print("(nothing written: add --out DIR to keep metrics.json and report.md)", file=sys.stderr)
    return 0


def _recorded_suite(run_dir: Path) -> str | None:
    for name in ("provenance.json", "run.json"):  # mmreward.runs.PROVENANCE, then an older run's summary
        try:
            d = json.loads((run_dir / name).read_text())
        except (OSError, json.JSONDecodeError):
            continue
        suite = d.get("identity", {}).get("suite") if name == "provenance.json" else d.get("suite")
        if suite:
            return suite
    return None


def _compare(args) -> int:
    from eval.score import compare  # noqa: PLC0415
    from mmreward.errors import InputError  # noqa: PLC0415

    def load(p):
        p = Path(p)
        f = p / "metrics.json" if p.is_dir() else p
        if not f.is_file():
            raise InputError(
                f"{p}: no metrics.json there; give an `eval run` folder that finished (or score it first with "
                "`mmreward eval score --predictions FOLDER --suite ...`)"
            )
        try:
            return json.loads(f.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(f"{f}:{exc.lineno}: not valid JSON ({exc.msg})") from None

    print(compare(load(args.a), load(args.b)))
    return 0


def _add_view(sub) -> None:
    v = sub.add_parser(
        "view",
        help="a static HTML site of what a judge did: every turn, crop box, selected frame and verdict",
        description="Build a self-contained HTML site (opens offline in any browser) from an eval run, a distillation "
        "or rejection-sampling folder, a GRPO output folder (completions/), a folder holding several of these (each "
        "becomes a stage), or a trajectories .jsonl file. The index has a summary (accuracy by category and stage, "
        "tool-call rate) and filters (category, right/wrong, needs-tool, parse failure, stop reason, orders that "
        "disagree); each item's page shows its presented orders side by side.",
    )
    v.add_argument("path", metavar="PATH", help="what to show (see above)")
    v.add_argument("--out", required=True, help="folder for the site (index.html, items/, thumbs/)")
    v.add_argument(
        "--records",
        action="append",
        default=[],
        help="records file(s) for labels and categories of distillation and rejection folders (eval runs carry "
        "their own); repeatable",
    )
    v.add_argument("--media-root", help="folder the trajectories' media paths are relative to, if not the cwd")
    v.add_argument("--limit", type=int, help="show only the first N items")


def _view(args) -> int:
    from eval.view import build_site, load_items, read_record_files  # noqa: PLC0415
    from mmreward.errors import InputError, RunFailure  # noqa: PLC0415

    out = Path(args.out)
    if out.is_file():
        raise InputError(f"--out {out} is a file; give a folder for the site")
    if out.is_dir() and any(out.iterdir()) and not (out / "view.json").is_file():
        raise InputError(f"--out {out} holds other files; give an empty or new folder (or an earlier view's)")
    items = load_items(args.path, read_record_files(args.records))
    if args.limit is not None:
        keep = list(dict.fromkeys((i.stage, i.group) for i in items))[: args.limit]
        items = [i for i in items if (i.stage, i.group) in set(keep)]
    if not items:
        raise RunFailure(f"{args.path}: no trajectories in it yet")
    for old in (out / "items").glob("*.html") if (out / "items").is_dir() else []:
        old.unlink()  # pages of an earlier, larger view
    result = build_site(items, out, args.media_root, progress=True)
    (out / "view.json").write_text(json.dumps(result, indent=2))
    s = result["summary"]
    acc = s["overall"]["accuracy"]
    print(
        f"{result['pages']} items ({s['trajectories']} trajectories); accuracy "
        f"{'-' if acc is None else f'{acc:.3f}'}; tool-call rate {s['tool_call_rate']:.3f}; thumbnails "
        f"{result['thumbnails_made']} new, {result['thumbnails_reused']} reused"
        + (f"; {result['without_media']} without media (try --media-root)" if result["without_media"] else "")
    )
    print(f"open {out / 'index.html'}")
    return 0


def _probe(args) -> int:
    from data_pipelines.records import read_records  # noqa: PLC0415
    from eval.probe import PROBES, build_probes, run_probes, write_probe_report  # noqa: PLC0415
    from eval.suites import get_suite, load_suite  # noqa: PLC0415
    from mmreward.cli import check_model_dir, model_settings  # noqa: PLC0415
    from mmreward.errors import InputError, RunFailure, flag_error  # noqa: PLC0415
    from mmreward.settings import EngineSettings  # noqa: PLC0415

    unknown = sorted(set(args.probes or []) - set(PROBES))
    if unknown:
        raise flag_error("--probes", " ".join(unknown), "unknown probe(s)", f"choose from {', '.join(PROBES)}")
    if sum(x is not None for x in (args.data, args.records, args.suite)) != 1:
        raise InputError("give exactly one source of pairs: --data WORLD, --records FILE or --suite NAME")
    world = False
    if args.suite:
        suite = get_suite(args.suite)
        records, root = load_suite(suite, None, None, args.media_root)
        world = suite.world
    else:
        path = Path(args.records) if args.records else Path(args.data) / "test.jsonl"
        if not path.is_file():
            raise InputError(
                f"{path}: no such records file" + ("" if args.records else " (is --data a world folder?)")
            )
        records, root = read_records(path), args.media_root or str(path.parent)
        world = all(isinstance(r.metadata, dict) and "world" in r.metadata for r in records)
    out = Path(args.out)
    items = build_probes(records, root, out, args.limit, args.probes or PROBES)
    if not items:
        raise RunFailure("no pair to probe: the records need pairwise image, video or answer items with a label")
    engine = EngineSettings()
    visual = {}
    if world:
        from data_pipelines.synthetic.generate import WORLD_TOOLS, WORLD_VISUAL  # noqa: PLC0415

        visual = {"visual": WORLD_VISUAL, "tools": WORLD_TOOLS}
        engine = EngineSettings(**visual)
    if args.model == "oracle":
        from data_pipelines.synthetic.oracle import OracleTeacher  # noqa: PLC0415

        if not world:
            raise flag_error("--model", "oracle", "the oracle judges only the synthetic world's items", "use --data")
        gen = OracleTeacher({i.record.id: i.record for i in items})
        title = "oracle"
    else:
        from mmreward.generators import SamplingSettings, TransformersGenerator  # noqa: PLC0415
        from mmreward.modeling import load_model  # noqa: PLC0415
        from mmreward.settings import resolve_engine_settings  # noqa: PLC0415

        check_model_dir(args.model)
        model, processor = load_model(args.model, model_settings(args))
        gen = TransformersGenerator(model, processor, SamplingSettings(max_new_tokens=args.max_new_tokens))
        engine = resolve_engine_settings(args.model, processor, batch_size=args.batch_size, **visual)
        title = str(args.model)
    table = run_probes(gen, items, engine, tools=args.tools == "on", chunk=max(16, args.batch_size), progress=True)
    paths = write_probe_report(table, out, title)
    print(Path(paths["markdown"]).read_text())
    failed = [p for p, row in table.items() if not row["passes"]]
    print(
        f"{len(table) - len(failed)} of {len(table)} probes passed"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 0
