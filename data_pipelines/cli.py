"""``mmreward data ...``: convert public benchmarks, generate the synthetic world, distill a teacher, count.

Registered into the ``mmreward`` command line through the ``mmreward.commands`` entry point, so the core
library does not import this layer.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from pathlib import Path


def register(sub) -> dict:
    from mmreward.cli import add_model_options, add_reuse_cache_option  # noqa: PLC0415

    p = sub.add_parser(
        "data",
        help="data pipelines: convert benchmarks, synthesize the world, distill a teacher, stats",
        description="Build PreferenceRecord files (JSONL/Parquet) from public benchmarks or the synthetic world, "
        "distill reference trajectories from a teacher, sample the model's own (rejection sampling), and count what "
        "a file holds. Every command that writes a folder records what made it (manifest.json) and resumes only "
        "matching work; --force starts over.",
    )
    dsub = p.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    dsub.required = True

    c = dsub.add_parser(
        "convert",
        help="convert a benchmark file/folder to records",
        description="Convert a public benchmark (or any preference set, with --source generic and "
        "--map) to PreferenceRecords. Prints counts per category and label. Sources: " + ", ".join(_sources()),
    )
    c.add_argument("--source", required=True, choices=_sources(), help="the converter (`mmreward data sources`)")
    c.add_argument("--input", required=True, help="the benchmark's file or folder")
    c.add_argument(
        "--output", required=True, help="records file to write (.jsonl or .parquet); never the input itself"
    )
    c.add_argument("--media-root", help="folder the media paths are relative to (default: beside the input)")
    c.add_argument("--task", help="genai_bench: image_generation | image_edition | video_generation")
    c.add_argument("--map", help="generic: field=column pairs, comma separated, or a YAML/JSON mapping file")
    c.add_argument(
        "--modality", default="image", choices=["image", "video", "answer"], help="generic: what the candidates are"
    )
    c.add_argument(
        "--media-kind", default="image", choices=["image", "video"], help="generic: what answers' media are"
    )
    c.add_argument(
        "--label-values", help='generic: JSON mapping of label values, e.g. \'{"1": 0, "0": 1, "0.5": "tie"}\''
    )
    c.add_argument("--name", default="generic", help="generic: the source name written into records")
    c.add_argument("--force", action="store_true", help="replace an existing --output that differs")
    c.add_argument("--json", action="store_true", help="print the summary as JSON")

    s = dsub.add_parser(
        "synth",
        help="generate the synthetic visual preference world",
        description="Write train/val/test/compositional records with PNG/MP4 media, seeded and deterministic. --n is "
        "the train size; val, test and compositional get a tenth each. A folder that already holds this exact world "
        "is left as it is; one that holds another world (or other files) is refused unless --force.",
    )
    s.add_argument("--out", required=True, help="the world folder to write")
    s.add_argument("--n", type=int, default=1000, help="train items")
    s.add_argument("--seed", type=int, default=0, help="the world's seed")
    s.add_argument(
        "--kinds",
        nargs="+",
        default=None,
        choices=["image", "answer", "video", "multi", "pointwise"],
        help="item kinds to draw (default: all)",
    )
    s.add_argument("--workers", type=int, default=1, help="worker processes")
    s.add_argument("--force", action="store_true", help="delete the folder's old world and write this one")
    add_world_arguments(s)

    d = dsub.add_parser(
        "distill",
        help="distill verified trajectories from a teacher",
        description="Run a teacher (an OpenAI-compatible URL, or 'oracle' for the synthetic world's "
        "rule-based teacher) through the protocol with our tools; keep trajectories whose verdict "
        "matches the label and whose format is strict. Resumable: a re-run with the same teacher and settings skips "
        "finished work; another teacher or other settings in the same --out are refused unless --force. Exits 1 "
        "when the teacher answered nothing.",
    )
    d.add_argument("--records", required=True, help="records file (.jsonl/.parquet) to distill on")
    d.add_argument("--teacher", required=True, help="'oracle' or a base URL such as http://127.0.0.1:8000/v1")
    d.add_argument("--out", required=True, help="output folder (kept/rejected/failed.jsonl, summary, cache)")
    d.add_argument("--media-root", help="default: the records file's folder")
    d.add_argument("--model", default="teacher", help="model name sent to the endpoint")
    d.add_argument("--api-key", help="default: $OPENAI_API_KEY, else EMPTY")
    d.add_argument(
        "--swap",
        choices=["none", "both", "random"],
        default="both",
        help="presented orders the teacher sees: both (each item twice, swapped), random (one), none (as stored)",
    )
    d.add_argument("--tools", choices=["on", "off"], default="on", help="let the teacher crop and select frames")
    d.add_argument(
        "--crop-policy",
        choices=["zoom", "each"],
        default="zoom",
        help="oracle only: crop only where the overview is too small (zoom), or look at every candidate in turn and "
        "describe each view right after it (each: what the tiny default can learn)",
    )
    d.add_argument("--limit", type=int, help="distill only the first N records (default: all)")
    d.add_argument("--concurrency", type=int, default=8, help="requests in flight to an endpoint teacher")
    d.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    d.add_argument("--retries", type=int, default=4, help="retries per request (429, 5xx, timeouts, dropped links)")
    d.add_argument("--backoff", type=float, default=1.0, help="first retry wait in seconds (doubles)")
    d.add_argument("--temperature", type=float, default=0.7, help="teacher's sampling temperature")
    d.add_argument("--max-tokens", type=int, default=1024, help="teacher's tokens per turn")
    d.add_argument("--chunk", type=int, default=16, help="trajectories per cache flush")
    d.add_argument("--require-consistent", action="store_true", help="keep only items right in both orders")
    d.add_argument("--max-per-item", type=int, help="keep at most N trajectories per item (default: no cap)")
    d.add_argument(
        "--world",
        action="store_true",
        help="use the synthetic world's visual/tool settings (default with --teacher oracle)",
    )
    d.add_argument("--seed", type=int, default=0, help="order and oracle seed")
    d.add_argument("--force", action="store_true", help="start over in an --out that holds another run's work")

    j = dsub.add_parser(
        "reject",
        help="rejection sampling: K samples per item from a checkpoint, keep the right ones",
        description="Sample K trajectories per record from a checkpoint (tools on), accept those whose "
        "verdict matches the label and whose format is strict (at most --max-accept per item, no "
        "duplicates), and write accepted.jsonl (for RFT), grpo_pool.jsonl (items the model does not "
        "always get right) and report.json (pass@1, pass@k, accept rates). Resumable with the same checkpoint and "
        "settings; another checkpoint or other settings in the same --out are refused unless --force.",
    )
    j.add_argument("--model", required=True, help="checkpoint folder (full model or adapter)")
    j.add_argument("--records", required=True, help="records file (.jsonl/.parquet) to sample on")
    j.add_argument("--out", required=True, help="output folder (accepted.jsonl, grpo_pool.jsonl, report.json)")
    j.add_argument("--media-root", help="default: the records file's folder")
    j.add_argument("--k", type=int, default=4, help="samples per item")
    j.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    j.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass")
    j.add_argument("--max-new-tokens", type=int, default=224, help="per assistant turn")
    j.add_argument("--batch-size", type=int, default=16, help="trajectories generated together")
    add_reuse_cache_option(j)
    j.add_argument("--tools", choices=["on", "off"], default="on", help="let the model crop and select frames")
    j.add_argument("--max-accept", type=int, default=2, help="accepted trajectories per item")
    j.add_argument("--keep-always-right", action="store_true", help="keep items right in all K samples in the pool")
    j.add_argument("--limit", type=int, help="sample only the first N records (default: all)")
    j.add_argument("--world", action="store_true", help="use the synthetic world's visual/tool settings")
    add_model_options(j)
    j.add_argument("--seed", type=int, default=0, help="sampling and order seed")
    j.add_argument("--force", action="store_true", help="start over in an --out that holds another run's work")

    t = dsub.add_parser(
        "stats",
        help="counts by task, category, label, needs-tool; media present/missing",
        description="Count what a records file holds: task kinds and modalities, categories, labels, items that "
        "need a tool (synthetic world), and how many have their media on disk.",
    )
    t.add_argument("path", help="a records file (.jsonl/.parquet)")
    t.add_argument("--media-root", help="default: the file's folder")
    t.add_argument("--json", action="store_true", help="print the counts as JSON")

    dsub.add_parser(
        "sources", help="list the converters", description="List the converters `data convert --source` takes."
    )
    return {"data": run}


def _sources() -> list[str]:
    from data_pipelines.sources import available  # noqa: PLC0415

    return list(available())


def run(args: argparse.Namespace) -> int:
    return {
        "convert": _convert,
        "synth": _synth,
        "distill": _distill,
        "reject": _reject,
        "stats": _stats,
        "sources": _list,
    }[args.data_command](args)


def _list(args) -> int:
    from data_pipelines.sources import available  # noqa: PLC0415

    for name, doc in available().items():
        print(f"{name:24s} {doc}")
    return 0


def print_table(title: str, counts: dict) -> None:
    print(title)
    for k, v in counts.items():
        print(f"  {k:40s} {v}")


def _convert(args) -> int:
    from data_pipelines.sources import convert  # noqa: PLC0415
    from mmreward.errors import flag_error  # noqa: PLC0415
    from mmreward.runs import refuse_overwrite  # noqa: PLC0415

    options = {}
    if args.source == "genai_bench" and args.task:
        options["task"] = args.task
    if args.source == "generic":
        options.update(mapping=args.map, modality=args.modality, media_kind=args.media_kind, name=args.name)
        if args.label_values:
            try:
                options["label_values"] = json.loads(args.label_values)
            except json.JSONDecodeError as exc:
                raise flag_error(
                    "--label-values",
                    repr(args.label_values),
                    f"not valid JSON ({exc.msg} at character {exc.pos})",
                    'write a JSON object such as \'{"1": 0, "0": 1, "0.5": "tie"}\'',
                ) from None
            if not isinstance(options["label_values"], dict):
                raise flag_error("--label-values", repr(args.label_values), "must be a JSON object (value -> label)")
    refuse_overwrite(args.output, [args.input], "--output")
    if Path(args.output).suffix not in (".jsonl", ".parquet"):
        raise flag_error("--output", args.output, "use a .jsonl or .parquet file name")
    result = convert(args.source, args.input, media_root=args.media_root, **options)
    status = write_new_records(result.records, args.output, force=args.force)
    summary = result.summary()
    summary["output"] = str(args.output)
    summary["output_status"] = status
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{summary['records']} records from {args.source} -> {args.output} ({status})")
    print_table("by category:", summary["by_category"])
    print_table("by label:", summary["by_label"])
    if summary["by_subset"]:
        print_table("by subset:", summary["by_subset"])
    print(f"media on disk: {summary['with_media']}; metadata only: {summary['metadata_only']}")
    for note in summary["notes"]:
        print(f"note: {note}")
    return 0


def write_new_records(records, output: str, force: bool = False) -> str:
    """Write records to ``output`` unless that would silently replace different content: an existing file is
    replaced only with ``force`` or when it would come out identical. Returns written / unchanged / replaced."""
    import filecmp  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    from data_pipelines.records import write_records  # noqa: PLC0415
    from mmreward.errors import flag_error  # noqa: PLC0415

    out = Path(output)
    if not out.exists():
        write_records(records, out)
        return "written"
    if out.is_dir():
        raise flag_error("--output", output, "is a folder", "give a .jsonl or .parquet file name")
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        fresh = write_records(records, Path(tmp) / out.name)
        if filecmp.cmp(fresh, out, shallow=False):
            return "unchanged"
        if not force:
            raise flag_error(
                "--output", output, "exists and differs from what this conversion writes", "add --force to replace it"
            )
        os.replace(fresh, out)
    return "replaced"


def add_world_arguments(p) -> None:
    """The synthetic world's scene options (``WorldConfig``), shared by every command that draws scenes."""
    p.add_argument("--canvas", type=int, default=448, help="image side in pixels")
    p.add_argument(
        "--object-size",
        type=float,
        nargs=2,
        default=(0.02, 0.035),
        metavar=("MIN", "MAX"),
        help="object side as a fraction of the canvas",
    )
    p.add_argument("--objects", type=int, nargs=2, default=(1, 3), metavar=("MIN", "MAX"), help="objects per scene")
    p.add_argument("--clip-frames", type=int, default=12, help="frames per video clip")
    p.add_argument(
        "--glitch-frames",
        type=int,
        nargs=2,
        default=(1, 2),
        metavar=("MIN", "MAX"),
        help="defective frames in a flawed clip",
    )


def world_config(args):
    """The ``WorldConfig`` of :func:`add_world_arguments`' options."""
    from data_pipelines.synthetic.generate import WorldConfig  # noqa: PLC0415

    return WorldConfig(
        canvas=args.canvas,
        object_size=tuple(args.object_size),
        n_objects=tuple(args.objects),
        clip_frames=args.clip_frames,
        glitch_frames=tuple(args.glitch_frames),
    )


def _synth(args) -> int:
    from data_pipelines.synthetic.generate import generate_world  # noqa: PLC0415

    m = generate_world(
        args.out,
        n=args.n,
        seed=args.seed,
        kinds=args.kinds,
        cfg=world_config(args),
        workers=args.workers,
        progress=True,
        force=args.force,
    )
    total = sum(m["splits"].values())
    if m.get("reused"):
        print(f"{args.out} already holds this world ({total} items); nothing to do (--force rewrites it)")
        return 0
    print(f"{total} items in {m['seconds']}s ({m['items_per_minute']} items/min) -> {args.out}")
    print_table("items per split (needs a tool):", {s: f"{n} ({m['needs_tool'][s]})" for s, n in m["splits"].items()})
    return 0


def _distill(args) -> int:
    from data_pipelines.distill import DistillSettings, OpenAITeacher, TeacherSettings, distill  # noqa: PLC0415
    from data_pipelines.records import read_records  # noqa: PLC0415
    from mmreward.settings import EngineSettings  # noqa: PLC0415

    records = read_records(args.records)
    media_root = args.media_root or str(Path(args.records).parent)
    engine = EngineSettings()
    if args.teacher == "oracle" or args.world:
        from data_pipelines.synthetic.generate import WORLD_TOOLS, WORLD_VISUAL  # noqa: PLC0415

        engine = EngineSettings(visual=WORLD_VISUAL, tools=WORLD_TOOLS)
    if args.teacher == "oracle":
        from data_pipelines.synthetic.oracle import OracleTeacher  # noqa: PLC0415

        teacher = OracleTeacher({r.id: r for r in records}, seed=args.seed, crop_policy=args.crop_policy)
    else:
        if args.crop_policy != "zoom":
            raise ValueError("--crop-policy is a policy of the oracle teacher; drop it for an endpoint teacher")
        if not args.teacher.startswith(("http://", "https://")):
            raise ValueError(f"--teacher must be 'oracle' or an http(s) base URL, not {args.teacher!r}")
        teacher = OpenAITeacher(
            TeacherSettings(
                base_url=args.teacher,
                model=args.model,
                api_key=args.api_key,
                temperature=args.temperature,
                max_tokens=args.max_tokens,
                concurrency=args.concurrency,
                timeout_s=args.timeout,
                retries=args.retries,
                backoff_s=args.backoff,
            )
        )
        engine.batch_size = max(engine.batch_size, args.concurrency)
    settings = DistillSettings(
        swap=args.swap,
        tools=args.tools == "on",
        chunk=args.chunk,
        require_consistent=args.require_consistent,
        max_per_item=args.max_per_item,
        limit=args.limit,
        seed=args.seed,
        engine=engine,
    )
    summary = distill(records, teacher, args.out, settings, media_root=media_root, progress=True, force=args.force)
    print(json.dumps(summary, indent=2))
    return 0


def _reject(args) -> int:
    from data_pipelines.records import read_records  # noqa: PLC0415
    from data_pipelines.rejection import RejectionSettings, rejection_sample  # noqa: PLC0415
    from mmreward.cli import check_model_dir, model_settings  # noqa: PLC0415
    from mmreward.generators import SamplingSettings, TransformersGenerator  # noqa: PLC0415
    from mmreward.modeling import load_model  # noqa: PLC0415
    from mmreward.settings import resolve_engine_settings  # noqa: PLC0415

    records = read_records(args.records)
    world = {}
    if args.world:
        from data_pipelines.synthetic.generate import WORLD_TOOLS, WORLD_VISUAL  # noqa: PLC0415

        world = {"visual": WORLD_VISUAL, "tools": WORLD_TOOLS}
    check_model_dir(args.model)
    model, processor = load_model(args.model, model_settings(args))
    engine = resolve_engine_settings(args.model, processor, batch_size=args.batch_size, **world)
    sampling = SamplingSettings(
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p, seed=args.seed
    )
    generator = TransformersGenerator(model, processor, sampling, reuse_cache=args.reuse_cache)
    settings = RejectionSettings(
        k=args.k,
        tools=args.tools == "on",
        max_accept_per_item=args.max_accept,
        drop_always_right=not args.keep_always_right,
        seed=args.seed,
        limit=args.limit,
        chunk=max(args.batch_size, 16),
    )
    report = rejection_sample(
        records,
        generator,
        args.out,
        settings,
        engine,
        media_root=args.media_root or str(Path(args.records).parent),
        model_id=str(Path(args.model).resolve()),
        progress=True,
        force=args.force,
    )
    print(
        json.dumps({k: v for k, v in report.items() if k != "groups"} | {"all": report["groups"].get("all")}, indent=2)
    )
    return 0


def _stats(args) -> int:
    from data_pipelines.records import media_report, read_records  # noqa: PLC0415
    from data_pipelines.sources import label_name  # noqa: PLC0415

    records = read_records(args.path)
    root = args.media_root or str(Path(args.path).parent)
    needs = Counter(
        str(r.metadata["world"]["needs_tool"]) for r in records if isinstance(r.metadata.get("world"), dict)
    )
    out = {
        "records": len(records),
        "by_task": dict(Counter(f"{r.task}/{r.modality}" for r in records)),
        "by_category": dict(sorted(Counter(r.category for r in records).items())),
        "by_label": dict(sorted(Counter(label_name(r) for r in records).items())),
        "needs_tool": dict(needs) if needs else None,
        "media": media_report(records, root),
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{args.path}: {len(records)} records")
    for k in ("by_task", "by_category", "by_label", "needs_tool"):
        if out[k]:
            print_table(k.replace("_", " ") + ":", out[k])
    m = out["media"]
    print(f"media: {m['with_media']} with media on disk, {m['without_media']} without")
    return 0
