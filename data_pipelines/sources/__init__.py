"""Converters from public benchmark formats (and any column-mapped preference set) to PreferenceRecords.

Each converter keeps the benchmark's own category labels and grouping (``../shared/benchmarks/SCORING.md``)
so eval can reproduce the official numbers, and marks records whose media is not on disk as metadata-only.

    from data_pipelines.sources import convert
    result = convert("vl_rewardbench", "vl_rewardbench_1250.json", media_root="/data/vlrb")
    result.records, result.summary()
"""

from __future__ import annotations

import os
from pathlib import Path

from data_pipelines.sources.base import SOURCES, Conversion, SourceError, label_name

__all__ = ["Conversion", "SourceError", "available", "convert", "label_name"]


def convert(
    source: str, input: str | os.PathLike, media_root: str | os.PathLike | None = None, **options
) -> Conversion:
    """Convert ``input`` (a file or folder in ``source``'s format) to records."""
    _load_all()
    if source not in SOURCES:
        raise SourceError(f"unknown source {source!r}; choose one of: {', '.join(sorted(SOURCES))}")
    fn, _ = SOURCES[source]
    return fn(Path(input), media_root=None if media_root is None else str(media_root), **options)


def _load_all() -> None:
    from data_pipelines.sources import (  # noqa: F401, PLC0415
        genai_bench,
        generic,
        mj_bench,
        mj_bench_video,
        mm_rlhf,
        multimodal_rewardbench,
        videogen_rewardbench,
        vl_rewardbench,
    )


def available() -> dict[str, str]:
    _load_all()
    return {k: doc for k, (_, doc) in sorted(SOURCES.items())}
