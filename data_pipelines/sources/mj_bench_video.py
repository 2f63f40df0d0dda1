"""MJ-Bench-Video (aiming-lab/MJ-Video): video pairs with an overall preference and five aspect preferences.

Input: ``test.json``. Preferences are "Video 1 better" / "Video 2 better" (also "Video 1 Better": normalised),
"Same" or "Hard to judge". Records are multi-dimensional over Alignment, Safety, Fineness, Coherence &
Consistency and Bias: "Same" is a tie, "Hard to judge" leaves the dimension unlabelled (listed in
``metadata["undecided"]``). The overall label follows ``overall_preference``: the official overall eval keeps
only decisive pairs (118 of 1,085). Category is the normalised overall preference; per-criterion 0/1/2 labels
and scores stay in metadata.
"""

from __future__ import annotations

from pathlib import Path

from data_pipelines.sources.base import (
    Conversion,
    SourceError,
    literal,
    load_rows,
    make,
    media_present,
    register,
    require,
)

ASPECTS = ("Alignment", "Safety", "Fineness", "Coherence & Consistency", "Bias")


def normalise(value: str) -> str:
    v = " ".join(str(value).strip().lower().split())
    if v not in ("video 1 better", "video 2 better", "same", "hard to judge"):
        raise SourceError(f"unknown MJ-Bench-Video preference {value!r}")
    return v


def label(value: str) -> int | None | str:
    v = normalise(value)
    return {"video 1 better": 0, "video 2 better": 1, "same": None}.get(v, "undecided")


@register("mj_bench_video", "MJ-Bench-Video test.json (overall and per-aspect preferences)")
def convert(path: Path, media_root: str | None = None) -> Conversion:
    rows = load_rows(path)
    root = media_root if media_root is not None else str(path.parent)
    records = []
    for n, row in enumerate(rows):
        require(
            row,
            ("caption", "video_0_path", "video_1_path", "overall_preference", "category_preference"),
            f"{path}: item {n}",
        )
        rid = f"mjv-{n}"
        cats = literal(row["category_preference"], "category_preference", rid)
        dims, undecided = {}, []
        for aspect in ASPECTS:
            if aspect in cats:
                lab = label(cats[aspect])
                if lab == "undecided":
                    undecided.append(aspect)
                else:
                    dims[aspect] = lab
        overall = label(row["overall_preference"])
        files = [row["video_0_path"], row["video_1_path"]]
        common = dict(
            id=rid,
            modality="video",
            prompt=row["caption"],
            candidates=files,
            allow_tie=True,
            category=normalise(row["overall_preference"]),
            source="mj_bench_video",
            metadata={
                "overall_preference": row["overall_preference"],
                "undecided": undecided,
                "overall_undecided": overall == "undecided",
                "video_0_label": literal(row.get("video_0_label", {}), "video_0_label", rid),
                "video_1_label": literal(row.get("video_1_label", {}), "video_1_label", rid),
                "video_0_overall_score": literal(row.get("video_0_overall_score", {}), "video_0_overall_score", rid),
                "video_1_overall_score": literal(row.get("video_1_overall_score", {}), "video_1_overall_score", rid),
                "discard": str(row.get("discard", "False")) == "True",
            },
            metadata_only=not media_present(files, root),
        )
        # "Hard to judge" overall: no overall label (multi records allow that when dimensions are labelled).
        preferred = overall if isinstance(overall, int) else None
        tie = overall is None
        if dims:
            records.append(make(task="multi", preferred=preferred, tie=tie, dimension_labels=dims, **common))
        else:
            records.append(make(task="pairwise", preferred=preferred, tie=tie or overall == "undecided", **common))
    return Conversion("mj_bench_video", records, root)
