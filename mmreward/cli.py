"""``mmreward``: one command line for every stage and tool.

    mmreward init-tiny OUT_DIR [--arch qwen2_5_vl|qwen3_vl] [sizes...]   build the offline tiny judge
    mmreward init-tiny OUT_DIR --like qwen2_5_vl|qwen3_vl               a tiny checkpoint shaped like a real release
    mmreward check-model DIR                                             readiness per stage, and what to fix
    mmreward merge ADAPTER OUT                                           full checkpoint of a LoRA stage chain
    mmreward judge --model DIR --prompt TEXT --image A --image B         judge two images
    mmreward judge --model DIR --prompt TEXT --video A --video B         judge two videos
    mmreward judge --model DIR --question Q --answer A1 --answer A2 --image X   judge two answers
    mmreward serve --model DIR [--port 8000] [--max-batch 16] [--token-file F]   the judge API (OpenAI-compatible)
    mmreward data convert|synth|distill|reject|stats|sources ...         records, the synthetic world, teachers
    mmreward train sft|rft|grpo --config RECIPE.yaml [overrides]         training stages (train/recipes/)
    mmreward pipeline --recipe tiny-cpu --out runs/quickstart [--fast]    every stage end to end, with a report
    mmreward tiny vision|see|curriculum ...                              the embedded default's own steps
    mmreward eval run|score|compare|suites ...                           benchmarks, official scoring, reports

Run ``mmreward COMMAND --help`` for each command's options.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import fields

from mmreward.tools import Budget

logger = logging.getLogger("mmreward")


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, with each option's default after its help unless the help already names one (or the
    default is empty)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or not action.option_strings or action.default in (None, False, [], ()):
            return text
        if action.default is argparse.SUPPRESS:
            return text
        return text + " (default: %(default)s)"


class RawHelpFormatter(argparse.RawDescriptionHelpFormatter, HelpFormatter):
    """For the top-level command, whose epilog is a preformatted command list."""


def add_model_options(p: argparse.ArgumentParser, dtype: bool = True) -> None:
    """``--device``, ``--dtype``, ``--attn-implementation``: how a command loads a checkpoint."""
    p.add_argument(
        "--device", default="auto", help="auto (a CUDA GPU when there is one, else cpu), cpu, cuda or cuda:N"
    )
    if dtype:
        p.add_argument(
            "--dtype",
            default="auto",
            choices=["auto", "float32", "bfloat16", "float16"],
            help="weights' dtype; auto: bfloat16 on a GPU, float32 on CPU",
        )
        p.add_argument(
            "--attn-implementation",
            default=None,
            choices=["sdpa", "eager", "flash_attention_2"],
            help="attention kernel (default: sdpa); flash_attention_2 needs a CUDA GPU and the flash-attn package",
        )


def check_model_dir(path: str | None, flag: str = "--model") -> None:
    """A checkpoint flag names a folder holding a model or an adapter; said in the flag's terms before loading."""
    from pathlib import Path  # noqa: PLC0415

    from mmreward.errors import flag_error  # noqa: PLC0415

    if path is None:
        return
    p = Path(path)
    if not p.is_dir():
        raise flag_error(flag, path, "no such folder", "give a checkpoint folder (mmreward init-tiny makes one)")
    if not (p / "config.json").is_file() and not (p / "adapter_config.json").is_file():
        raise flag_error(
            flag, path, "not a checkpoint folder (no config.json or adapter_config.json)", "give a checkpoint folder"
        )


def add_reuse_cache_option(p: argparse.ArgumentParser) -> None:
    """``--reuse-cache/--no-reuse-cache`` for every command that judges with a local checkpoint."""
    p.add_argument(
        "--reuse-cache",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep each trajectory's KV cache between tool turns, batched, so a turn encodes only what it appended "
        "(the same tokens, faster on tool-turn work: scripts/bench/bench_eval.py); --no-reuse-cache re-encodes "
        "every turn",
    )


def model_settings(args: argparse.Namespace):
    """The :class:`ModelSettings` of :func:`add_model_options`' flags, checked here so a wrong value is refused in
    the CLI's spelling before any model is loaded."""
    import importlib.util  # noqa: PLC0415

    from mmreward.errors import flag_error  # noqa: PLC0415
    from mmreward.modeling import ModelSettings  # noqa: PLC0415

    device = args.device
    if device != "auto" and device != "cpu" and not device.startswith("cuda") and device != "mps":
        raise flag_error("--device", device, "not a device", "use auto, cpu, cuda or cuda:N")
    if device.startswith("cuda"):
        import torch  # noqa: PLC0415

        if not torch.cuda.is_available():
            raise flag_error("--device", device, "no CUDA GPU is available on this machine", "use --device cpu")
    attn = getattr(args, "attn_implementation", None)
    if attn == "flash_attention_2":
        import torch  # noqa: PLC0415

        if device == "cpu" or not torch.cuda.is_available():
            raise flag_error(
                "--attn-implementation", attn, "needs a CUDA GPU", "use --attn-implementation sdpa on this machine"
            )
        if importlib.util.find_spec("flash_attn") is None:
            raise flag_error(
                "--attn-implementation",
                attn,
                "the flash-attn package is not installed",
                "install the GPU stack (scripts/setup.sh --gpu) or use --attn-implementation sdpa",
            )
    return ModelSettings(dtype=getattr(args, "dtype", "auto"), device=device, attn_implementation=attn)


def _add_init_tiny(sub) -> None:
    from mmreward.tiny import TinySizes  # noqa: PLC0415

    p = sub.add_parser(
        "init-tiny",
        help="build a tiny random-weight Qwen-VL judge offline (seconds)",
        description="Build a tiny Qwen-VL model of the real architecture with a locally trained tokenizer, the real "
        "Qwen processors and a tool-calling chat template, fully offline. Sizes are options, so the same command "
        "builds a larger model for experiments.",
    )
    p.add_argument("out_dir", help="folder to create (must not exist or be empty)")
    p.add_argument(
        "--arch", choices=["qwen2_5_vl", "qwen3_vl"], default="qwen2_5_vl", help="model family (default %(default)s)"
    )
    p.add_argument(
        "--like",
        choices=["qwen2_5_vl", "qwen3_vl"],
        help="instead: a checkpoint shaped like the real Qwen2.5-VL-7B / Qwen3-VL-8B release (real config fields, "
        "token ids, processor settings, generation config and stock chat template; tiny random weights). For "
        "testing the real path; the sizes options do not apply",
    )
    p.add_argument("--seed", type=int, default=0, help="weight initialisation seed (default %(default)s)")
    for f in fields(TinySizes):
        what = _TINY_SIZE_HELP.get(f.name, f.name.replace("_", " "))
        p.add_argument(f"--{f.name.replace('_', '-')}", type=int, default=f.default, help=what)


_TINY_SIZE_HELP = {
    "hidden_size": "language model width",
    "num_layers": "language model layers",
    "num_heads": "attention heads (hidden size must divide by it)",
    "num_kv_heads": "key/value heads (grouped-query attention)",
    "intermediate_size": "language model MLP width",
    "vision_hidden_size": "vision tower width",
    "vision_depth": "vision tower layers",
    "vision_heads": "vision tower attention heads",
    "vision_intermediate_size": "vision tower MLP width",
    "vocab_size": "tokenizer vocabulary, trained locally",
    "max_position_embeddings": "longest context in tokens",
    "min_pixels": "processor's smallest image, in pixels",
    "max_pixels": "processor's largest image, in pixels",
}


def _add_merge(sub) -> None:
    p = sub.add_parser(
        "merge",
        help="write the full checkpoint behind a LoRA adapter (its whole stage chain merged)",
        description="Merge a LoRA adapter folder, and every adapter its base chain names (RFT's names SFT's, which "
        "names the model), into a full Hugging Face checkpoint with its processor, chat template and judge settings. "
        "This is what vLLM serves (`trl vllm-serve --model OUT`, `vllm serve OUT`) and what a ZeRO-3 run starts from.",
    )
    p.add_argument("adapter", help="a LoRA adapter folder written by `mmreward train sft|rft|grpo`")
    p.add_argument("out", help="folder to write (must not exist or be empty)")
    p.add_argument("--base-model", help="the chain's base checkpoint, when the recorded path is not reachable here")


def _add_check_model(sub) -> None:
    p = sub.add_parser(
        "check-model",
        help="is a checkpoint ready for judge, SFT, GRPO with tools, serve and the vLLM backend? (what to fix if not)",
        description="Check a checkpoint folder (full or LoRA adapter) the way the stages read it: config and adapter "
        "chain, special tokens and vision token ids, the processor's pixel budgets, the chat template (TRL's tool, "
        "prefix-preservation and tool-call-parsing checks, on disk and as loaded) and the recorded judge settings. "
        "Prints one row per stage and exits 1 when any stage is not ready.",
    )
    p.add_argument("model", help="checkpoint or adapter folder")
    p.add_argument("--base-model", help="the adapter chain's base checkpoint, when the recorded path is not reachable")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def _add_judge(sub) -> None:
    p = sub.add_parser(
        "judge",
        help="judge two images, two videos or two answers (or score one) with a model",
        description="Run the thinking judge on one item and print its reasoning, tool calls and verdict. "
        "Give two --image (or two --video) for generated media; or --question with two --answer and the "
        "--image/--video the question is about. One candidate with --pointwise gives a 1-10 score.",
    )
    p.add_argument("--model", required=True, help="local checkpoint folder (or PEFT adapter folder)")
    p.add_argument("--prompt", help="the generation prompt the candidates were made from")
    p.add_argument("--question", help="a question about --image/--video; candidates are --answer texts")
    p.add_argument("--image", action="append", default=[], help="image path (repeat)")
    p.add_argument("--video", action="append", default=[], help="video path (repeat)")
    p.add_argument("--answer", action="append", default=[], help="answer text (repeat)")
    p.add_argument("--pointwise", action="store_true", help="score a single candidate from 1 to 10")
    p.add_argument("--dimension", action="append", default=[], help="judge per dimension too (repeat)")
    p.add_argument("--allow-tie", action="store_true", help="let the judge call a tie")
    p.add_argument(
        "--swap",
        choices=["none", "both", "random"],
        default="none",
        help="presented orders: none (as given), both (judge twice, candidates swapped, and combine), random (one "
        "seeded order)",
    )
    p.add_argument("--votes", type=int, default=1, help="independent judgments per order, combined by majority")
    p.add_argument("--no-tools", action="store_true", help="answer from the overview only")
    p.add_argument("--reward", action="store_true", help="also compute the continuous reward from verdict logits")
    p.add_argument("--max-new-tokens", type=int, default=256, help="per turn")
    p.add_argument("--max-turns", type=int, default=6, help="assistant turns per judgment, tool turns included")
    p.add_argument("--max-tool-calls", type=int, default=4, help="tool calls per judgment")
    p.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (0: greedy)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass")
    p.add_argument(
        "--repetition-penalty", type=float, default=1.0,
        help="1.0 (none) as GRPO trains; set explicitly, so the checkpoint's generation config does not apply",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="sampling and order seed")
    p.add_argument(
        "--overview-frames", type=int, default=None, help="default: the checkpoint's recorded settings, else 8"
    )
    add_model_options(p)
    add_reuse_cache_option(p)
    p.add_argument("--json", action="store_true", help="print the judgment with its trajectory records as JSON")


def _add_serve(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a judge over HTTP: /v1/judge, /v1/rewards, OpenAI-compatible /v1/chat/completions",
        description="Serve the thinking judge for generators' RL loops and any OpenAI client. Concurrent requests "
        "are batched into one model worker; inputs are held to hard limits; local files and URLs are never read "
        "for a client unless allowed here. Binds to loopback unless --host says otherwise. Stop with Ctrl-C or "
        "SIGTERM: in-flight requests finish first.",
    )
    p.add_argument("--model", help="local checkpoint folder (needed for the transformers backend)")
    p.add_argument(
        "--backend",
        choices=["transformers", "vllm"],
        default="transformers",
        help="who generates: the checkpoint in this process (transformers), or a vLLM server this one drives "
        "(vllm: give --vllm-url and --vllm-model; --model then only supplies the processor and settings)",
    )
    p.add_argument("--vllm-url", help="vllm backend: the vLLM server's OpenAI base URL, e.g. http://127.0.0.1:8001/v1")
    p.add_argument("--vllm-model", help="vllm backend: the model name vLLM serves")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    p.add_argument("--port", type=int, default=8000, help="TCP port to listen on")
    p.add_argument("--model-name", default="mmreward-judge", help="the id clients pass as `model`")
    p.add_argument(
        "--served-model-name",
        action="append",
        default=[],
        metavar="NAME[=PROFILE]",
        help="another name clients may pass as `model`, optionally with the reply profile its clients parse "
        "(final_score, dimension_scores, think_answer, winner_json, pair_score, overall_judgment, mmreward); "
        "repeat for several, e.g. --served-model-name UnifiedReward-7b-v1.5=final_score "
        "--served-model-name UnifiedReward",
    )
    p.add_argument(
        "--passthrough",
        action="append",
        default=[],
        metavar="NAME",
        help="a served name whose chat requests go to the vllm backend untouched (someone else's judge behind "
        "vLLM, e.g. UnifiedReward-Think), still under this server's auth, limits, queue and metrics",
    )
    p.add_argument("--token-file", help="file holding the bearer token (or set MMREWARD_API_TOKEN)")
    p.add_argument("--token", help="bearer token (visible in `ps`; prefer --token-file or MMREWARD_API_TOKEN)")
    p.add_argument("--max-batch", type=int, default=16, help="tasks per batched engine call (1 = no batching)")
    p.add_argument(
        "--batch-wait-ms", type=float, default=30.0, help="gather a batch until no request has come for this long"
    )
    p.add_argument(
        "--batch-max-wait-ms", type=float, default=200.0, help="... or for at most this long after the first request"
    )
    p.add_argument("--max-queue", type=int, default=256, help="queued requests before 503 + Retry-After")
    p.add_argument(
        "--threads",
        type=int,
        help="CPU threads the model runs on (default: as many as torch uses; on a GPU this changes little)",
    )
    p.add_argument("--request-timeout", type=float, default=300.0, help="seconds before a request gets 504")
    p.add_argument("--allow-local-root", action="append", default=[], help="a folder requests may name files in")
    p.add_argument("--allow-url-host", action="append", default=[], help="a host whose URLs may be fetched")
    p.add_argument("--allow-private-urls", action="store_true", help="let allowed hosts resolve to private IPs")
    p.add_argument("--max-body-mb", type=float, default=64.0, help="largest request body, in MiB (413 above)")
    p.add_argument(
        "--max-images", type=int, default=64, help="images per request, video frames sent as images included"
    )
    p.add_argument(
        "--max-image-pixels", type=int, default=16_777_216, help="largest image, read from its header (bombs refused)"
    )
    p.add_argument("--max-video-seconds", type=float, default=120.0, help="longest video a request may send")
    p.add_argument("--max-new-tokens", type=int, default=256, help="per turn, unless a request asks otherwise")
    p.add_argument("--max-turns", type=int, default=6, help="assistant turns per judgment, tool turns included")
    p.add_argument("--max-tool-calls", type=int, default=4, help="tool calls per judgment")
    p.add_argument(
        "--overview-frames", type=int, default=None, help="default: the checkpoint's recorded settings, else 8"
    )
    add_model_options(p)
    add_reuse_cache_option(p)
    p.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"], help="the server's log level"
    )
    p.add_argument(
        "--docs",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="publish the OpenAPI schema at /openapi.json and its pages at /docs and /redoc (--no-docs: 404)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmreward",
        description="mmreward: train, evaluate and serve thinking multimodal reward models (judges that reason, "
        "look closer with tools, and give a verdict).",
        formatter_class=RawHelpFormatter,
        epilog=__doc__
        + "\nExit codes: 0 done; 2 a usage or input error (nothing was started; the message names the flag, "
        "file or line); 1 a runtime failure (the work failed, or did nothing).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_init_tiny(sub)
    _add_check_model(sub)
    _add_merge(sub)
    _add_judge(sub)
    _add_serve(sub)
    COMMANDS.update(_plugins(sub))
    for p in walk_parsers(parser):  # defaults shown under every command, preformatted descriptions kept as written
        if p.formatter_class is argparse.RawDescriptionHelpFormatter:
            p.formatter_class = RawHelpFormatter
        elif p.formatter_class is argparse.HelpFormatter:
            p.formatter_class = HelpFormatter
    return parser


def walk_parsers(parser: argparse.ArgumentParser):
    """``parser`` and every subcommand's parser below it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                yield from walk_parsers(child)


def _plugins(sub) -> dict:
    """Commands of the other layers (data, train, eval), registered through the ``mmreward.commands`` entry
    point group so this core package never imports them."""
    from importlib.metadata import entry_points  # noqa: PLC0415

    handlers = {}
    for ep in sorted(entry_points(group="mmreward.commands"), key=lambda e: e.name):
        handlers.update(ep.load()(sub))
    return handlers


def cmd_init_tiny(args: argparse.Namespace) -> int:
    from mmreward.tiny import TinySizes, init_tiny  # noqa: PLC0415

    if args.like:
        from mmreward.release_like import RELEASES, init_like  # noqa: PLC0415

        start = time.perf_counter()
        out = init_like(args.out_dir, args.like, seed=args.seed)
        name = RELEASES[args.like]["name"]
        print(f"wrote a tiny checkpoint shaped like {name} to {out} in {time.perf_counter() - start:.1f}s")
        return 0

    sizes = TinySizes(**{f.name: getattr(args, f.name) for f in fields(TinySizes)})
    start = time.perf_counter()
    out = init_tiny(args.out_dir, args.arch, sizes, seed=args.seed)
    print(f"wrote {args.arch} tiny judge to {out} in {time.perf_counter() - start:.1f}s")
    return 0


def _task_from_args(args: argparse.Namespace):
    """The judging task the flags describe; every count and combination is checked here, before a model loads."""
    from mmreward.errors import InputError  # noqa: PLC0415
    from mmreward.protocol import JudgeTask  # noqa: PLC0415

    n_wanted = 1 if args.pointwise else 2
    what = "to score one candidate" if args.pointwise else "for a pair"
    kind = "pointwise" if args.pointwise else ("multi" if args.dimension else "pairwise")
    if args.prompt and args.question:
        raise InputError(
            "--prompt and --question together: give --prompt for generated images/videos, or --question with "
            "--answer texts about an --image/--video, not both"
        )
    if args.question:
        if len(args.answer) != n_wanted:
            raise InputError(
                f"--question needs {n_wanted} --answer value(s) {what}, got {len(args.answer)}"
                + ("; to score one answer, add --pointwise" if len(args.answer) == 1 and not args.pointwise else "")
            )
        if bool(args.image) == bool(args.video):
            raise InputError("--question needs the --image(s) or the --video(s) it is about (one kind, not both)")
        media, media_kind = (args.image, "image") if args.image else (args.video, "video")
        _check_media_files(media, media_kind)
        return JudgeTask(
            prompt=args.question,
            candidates=args.answer,
            modality="answer",
            kind=kind,
            media=media,
            media_kind=media_kind,
            dimensions=args.dimension,
            allow_tie=args.allow_tie,
            id="cli",
        )
    if args.answer:
        raise InputError("--answer needs --question (the question the answers reply to)")
    if not args.prompt:
        raise InputError("give --prompt (for generated images/videos) or --question with --answer texts")
    if bool(args.image) == bool(args.video):
        raise InputError("give --image twice or --video twice (one kind, not both)")
    candidates, modality = (args.image, "image") if args.image else (args.video, "video")
    if len(candidates) != n_wanted:
        hint = "; to score one, add --pointwise" if len(candidates) == 1 and not args.pointwise else ""
        raise InputError(f"need {n_wanted} --{modality} value(s) {what}, got {len(candidates)}{hint}")
    _check_media_files(candidates, modality)
    return JudgeTask(
        prompt=args.prompt,
        candidates=candidates,
        modality=modality,
        kind=kind,
        dimensions=args.dimension,
        allow_tie=args.allow_tie,
        id="cli",
    )


def _check_media_files(paths: list[str], kind: str) -> None:
    """Open every input file as the engine will, so a missing or broken file is an input error before the model
    loads (not a 'parse failure' after it)."""
    from mmreward.errors import InputError  # noqa: PLC0415
    from mmreward.media import MediaError, check_image_file, check_video_file  # noqa: PLC0415

    for path in paths:
        try:
            (check_image_file if kind == "image" else check_video_file)(path)
        except MediaError as exc:
            problem = str(exc).removeprefix(f"{path}: ")
            raise InputError(f"--{kind} {path}: {problem}") from None


def cmd_judge(args: argparse.Namespace) -> int:
    from mmreward.generators import SamplingSettings  # noqa: PLC0415
    from mmreward.judge import Judge, JudgeSettings  # noqa: PLC0415
    from mmreward.settings import resolve_engine_settings  # noqa: PLC0415

    task = _task_from_args(args)
    check_model_dir(args.model)
    model = model_settings(args)
    from transformers.utils import logging as hf_logging  # noqa: PLC0415

    hf_logging.disable_progress_bar()
    start = time.perf_counter()
    engine = resolve_engine_settings(
        args.model,
        overview_frames=args.overview_frames,
        max_turns=args.max_turns,
        budget=Budget(max_tool_calls=args.max_tool_calls),
    )
    judge = Judge.from_pretrained(
        args.model,
        JudgeSettings(swap=args.swap, votes=args.votes, tools=not args.no_tools, reward=args.reward, seed=args.seed),
        engine,
        SamplingSettings(
            args.max_new_tokens, args.temperature, args.top_p, args.seed, repetition_penalty=args.repetition_penalty
        ),
        model,
        reuse_cache=args.reuse_cache,
    )
    loaded = time.perf_counter()
    judgment = judge.judge([task])[0]
    elapsed = time.perf_counter() - loaded
    if args.json:
        out = judgment.to_dict()
        out["timing"] = {"load_s": round(loaded - start, 3), "judge_s": round(elapsed, 3)}
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0
    for traj in judgment.trajectories:
        print(f"=== presented order {traj.order} ({traj.num_turns} turns, stop: {traj.stop_reason})")
        for m in traj.messages[2:]:
            if m["role"] == "assistant":
                print(f"[assistant] {m['content'][0]['text']}")
            else:
                texts = " ".join(p.get("text", "") for p in m["content"] if p.get("type") == "text")
                imgs = [p["ref"] for p in m["content"] if p.get("type") == "image"]
                print(f"[tool] {texts} {imgs if imgs else ''}")
        if traj.parse_failure:
            print(f"[parse failure] {traj.parse_failure}")
    verdict = {"outcome": judgment.outcome, "preferred_candidate": judgment.preferred, "score": judgment.score}
    if judgment.dimensions:
        verdict["dimensions"] = judgment.dimensions
    if judgment.agreement is not None:
        verdict["orders_agree"] = judgment.agreement
    if judgment.reward is not None:
        verdict["reward"] = round(judgment.reward, 4)
    print(f"verdict: {json.dumps(verdict)}  ({elapsed:.2f}s)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import os  # noqa: PLC0415
    from dataclasses import replace  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    from mmreward.errors import flag_error  # noqa: PLC0415
    from mmreward.server import (  # noqa: PLC0415
        BackendSettings,
        RequestLimits,
        ServerSettings,
        bind_socket,
        build_judge,
        serve,
    )

    engine_threads = None
    if args.backend == "transformers" and _on_cpu(args.device):
        import torch  # noqa: PLC0415

        if args.threads is not None and args.threads < 1:
            raise flag_error("--threads", args.threads, "must be at least 1")
        # The model runs on the batcher's thread alone; this thread (HTTP, media decoding) stays at one so that
        # no second OpenMP pool of workers competes with the model's (ServerSettings.engine_threads).
        engine_threads = args.threads or torch.get_num_threads()
        torch.set_num_threads(1)
    token = args.token
    if args.token_file:
        try:
            token = Path(args.token_file).read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise flag_error(
                "--token-file", args.token_file, f"cannot read it ({getattr(exc, 'strerror', None) or exc})"
            ) from None
        if not token:
            raise flag_error("--token-file", args.token_file, "the file is empty", "write the bearer token into it")
    token = token or os.environ.get("MMREWARD_API_TOKEN") or None
    if args.backend == "transformers":
        if not args.model:
            raise flag_error("--model", None, "the transformers backend needs a checkpoint folder")
        check_model_dir(args.model)
    elif not (args.vllm_url and args.vllm_model):
        raise flag_error("--backend", "vllm", "needs --vllm-url and --vllm-model (the vLLM server and its model name)")
    model_settings(args)
    limits = replace(
        RequestLimits(),
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        max_images=args.max_images,
        max_image_pixels=args.max_image_pixels,
        max_video_seconds=args.max_video_seconds,
    )
    aliases = {}
    for spec in args.served_model_name:
        name, _, profile = spec.partition("=")
        aliases[name.strip()] = profile.strip() or None
    settings = ServerSettings(
        host=args.host,
        port=args.port,
        model_name=args.model_name,
        aliases=aliases,
        passthrough=args.passthrough,
        token=token,
        max_batch=args.max_batch,
        batch_wait_ms=args.batch_wait_ms,
        batch_max_wait_ms=args.batch_max_wait_ms,
        max_queue=args.max_queue,
        request_timeout_s=args.request_timeout,
        allow_local_roots=args.allow_local_root,
        allow_url_hosts=args.allow_url_host,
        allow_private_urls=args.allow_private_urls,
        limits=limits,
        docs=args.docs,
        engine_threads=engine_threads,
    )
    backend = BackendSettings(
        backend=args.backend,
        model=args.model,
        vllm_url=args.vllm_url,
        vllm_model=args.vllm_model,
        device=args.device,
        dtype=args.dtype,
        attn_implementation=args.attn_implementation,
        max_new_tokens=args.max_new_tokens,
        max_turns=args.max_turns,
        max_tool_calls=args.max_tool_calls,
        overview_frames=args.overview_frames,
        engine_batch=max(8, 2 * args.max_batch),
        reuse_cache=args.reuse_cache,
    )
    if args.host not in ("127.0.0.1", "localhost", "::1") and token is None:
        logger.warning("serving on %s without a bearer token: anyone who can reach it can use the model", args.host)
    sock = bind_socket(args.host, args.port)  # a port in use is an input error before minutes of model loading
    judge = build_judge(backend)
    print(
        f"serving {args.model or args.vllm_url} as {args.model_name!r} on http://{args.host}:{args.port}"
        + (f" (API schema: http://{args.host}:{args.port}/docs)" if args.docs else ""),
        flush=True,
    )
    serve(judge, settings, log_level=args.log_level, sock=sock)
    return 0


def _on_cpu(device: str) -> bool:
    if device == "auto":
        import torch  # noqa: PLC0415

        return not torch.cuda.is_available()
    return device == "cpu"


def cmd_merge(args: argparse.Namespace) -> int:
    from mmreward.modeling import merge_checkpoint  # noqa: PLC0415

    start = time.perf_counter()
    out = merge_checkpoint(args.adapter, args.out, base_model=args.base_model)
    print(f"wrote the merged checkpoint of {args.adapter} to {out} in {time.perf_counter() - start:.1f}s")
    return 0


def cmd_check_model(args: argparse.Namespace) -> int:
    from mmreward.readiness import check_model  # noqa: PLC0415

    report = check_model(args.model, base_model=args.base_model)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.render())
    return 0 if report.ok else 1


COMMANDS: dict = {
    "init-tiny": cmd_init_tiny,
    "check-model": cmd_check_model,
    "merge": cmd_merge,
    "judge": cmd_judge,
    "serve": cmd_serve,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    handler = COMMANDS[args.command]
    if extra and not getattr(handler, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return run_handler(handler, args)


def run_handler(handler, args: argparse.Namespace) -> int:
    """Run a command; map errors onto :mod:`mmreward.errors`' exit codes (2: usage or input, 1: runtime failure),
    with a one-line message instead of a traceback (``-v`` adds the traceback)."""
    from mmreward.errors import EXIT_FAILURE, EXIT_INPUT, RunFailure  # noqa: PLC0415

    input_errors = (ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)
    try:
        return handler(args)
    except input_errors as exc:
        logger.debug("input error", exc_info=True)
        print(f"error: {_describe(exc)}", file=sys.stderr)
        return EXIT_INPUT
    except (RunFailure, OSError) as exc:
        logger.debug("runtime failure", exc_info=True)
        print(f"error: {_describe(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("interrupted; finished work is kept, and a re-run resumes it", file=sys.stderr)
        return 130


def _describe(exc: BaseException) -> str:
    """An OSError's text names its file (``[Errno 2] No such file or directory: 'x'`` says less than ``x: ...``)."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)


if __name__ == "__main__":
    sys.exit(main())
