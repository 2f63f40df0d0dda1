"""The eval suites: which data, which converter, which protocol settings and which official scorer.

Public suites read the benchmark files (``--data`` or ``$MMREWARD_BENCHMARKS``, default ``../shared/benchmarks``);
items whose media is not on disk are skipped and counted. The synthetic suites read a world folder written by
``mmreward data synth`` (``--data``) and use the world's visual and tool settings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from data_pipelines.records import PreferenceRecord, read_records


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    source: str  # converter name, or "world"
    path: str  # relative to the data folder
    scorer: str  # official scoring family: vlrb | mmrb | genai | mjbench | mjvideo | videogen | mmrlhf | none
    options: dict = field(default_factory=dict)
    world: bool = False
    needs_tool_only: bool = False
    # The prompt variant: every suite is judged with the protocol's own templates (mmreward/templates), whose answer
    # forms the shared parser reads; the official rules are then applied to the raw text and to the parsed verdict.
    prompt: str = "protocol"


SUITES: dict[str, Suite] = {
    s.name: s
    for s in [
        Suite(
            "vl_rewardbench",
            "VL-RewardBench, 1,250 answer pairs (general/hallucination/reasoning)",
            "vl_rewardbench",
            "vl_rewardbench/vl_rewardbench_1250.json",
            "vlrb",
        ),
        Suite(
            "multimodal_rewardbench",
            "Multimodal RewardBench (release JSON or predictions file)",
            "multimodal_rewardbench",
            "multimodal_rewardbench/example_predictions.jsonl",
            "mmrb",
        ),
        Suite(
            "mm_rlhf",
            "MM-RLHF-RewardBench, 170 pairs over 46 prompts (Acc, Acc+)",
            "mm_rlhf",
            "mm_rlhf_rewardbench/mm_reward_bench.jsonl",
            "mmrlhf",
        ),
        Suite(
            "genai_bench_image_generation",
            "GenAI-Bench image generation, 4-way votes",
            "genai_bench",
            "genai_bench/image_generation_test_v1_random_predictions.jsonl",
            "genai",
            {"task": "image_generation"},
        ),
        Suite(
            "genai_bench_image_edition",
            "GenAI-Bench image editing, 4-way votes",
            "genai_bench",
            "genai_bench/image_edition_test_v1_random_predictions.jsonl",
            "genai",
            {"task": "image_edition"},
        ),
        Suite(
            "genai_bench_video_generation",
            "GenAI-Bench video generation, 4-way votes",
            "genai_bench",
            "genai_bench/video_generation_test_v1_random_predictions.jsonl",
            "genai",
            {"task": "video_generation"},
        ),
        Suite("mj_bench_alignment", "MJ-Bench alignment subsets", "mj_bench", "mj_bench/alignment", "mjbench"),
        Suite(
            "mj_bench_quality",
            "MJ-Bench quality (objects) with the 4 image pairs on disk",
            "mj_bench",
            "mj_bench/quality_objects_indoor_sample/captions_objects_all100.json",
            "mjbench",
        ),
        Suite(
            "mj_bench_video",
            "MJ-Bench-Video overall and per-aspect preferences",
            "mj_bench_video",
            "mj_bench_video/test.json",
            "mjvideo",
        ),
        Suite(
            "videogen_rewardbench",
            "VideoGen-RewardBench (VQ/MQ/TA/Overall, w/ and w/o ties)",
            "videogen_rewardbench",
            "videogen_rewardbench/videoalign_train_example.csv",
            "videogen",
        ),
        Suite("synthetic_val", "synthetic world, val split", "world", "val.jsonl", "none", world=True),
        Suite("synthetic_test", "synthetic world, test split", "world", "test.jsonl", "none", world=True),
        Suite(
            "synthetic_compositional",
            "synthetic world, held-out attribute combinations",
            "world",
            "compositional.jsonl",
            "none",
            world=True,
        ),
        Suite(
            "synthetic_needs_tool",
            "synthetic world, test items that cannot be judged from the overview",
            "world",
            "test.jsonl",
            "none",
            world=True,
            needs_tool_only=True,
        ),
    ]
}


def benchmarks_dir() -> Path:
    env = os.environ.get("MMREWARD_BENCHMARKS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "benchmarks"


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; choose one of: {', '.join(SUITES)}")
    return SUITES[name]


def load_suite(
    suite: Suite, data: str | os.PathLike | None = None, input_path: str | None = None, media_root: str | None = None
) -> tuple[list[PreferenceRecord], str | None]:
    """The suite's records and their media root. ``data``: the benchmarks folder, or the world folder for the
    synthetic suites; ``input_path`` overrides the suite's file."""
    if suite.world:
        if data is None:
            raise ValueError(f"suite {suite.name} needs --data pointing at a world folder (mmreward data synth --out)")
        path = Path(input_path) if input_path else Path(data) / suite.path
        records = read_records(path)
        if suite.needs_tool_only:
            records = [r for r in records if r.metadata.get("world", {}).get("needs_tool")]
        return records, str(media_root or Path(data))
    from data_pipelines.sources import convert  # noqa: PLC0415

    path = Path(input_path) if input_path else Path(data or benchmarks_dir()) / suite.path
    conversion = convert(suite.source, path, media_root=media_root, **suite.options)
    return conversion.records, conversion.media_root
