"""MM-RLHF-RewardBench (170 chosen/rejected pairs over 46 prompts).

Input: ``mm_reward_bench.jsonl`` (``id, image|video, prompt, chosen, rejected, ...``). Category is the first of
mcq / long / short / safety / video found in the media path (the official rule). Several pairs share an ``id``
(the prompt), which Acc+ groups by: it is kept as ``metadata["group"]``; record ids get ``#k`` suffixes.
Candidates are [chosen, rejected]; the official scripts always show chosen first, so shuffle at eval time.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from data_pipelines.sources.base import Conversion, SourceError, load_rows, make, media_present, register, require

KEYWORDS = ("mcq", "long", "short", "safety", "video")


def category_of(path: str) -> str:
    for k in KEYWORDS:
        if k in path:
            return k
    return "other"


@register("mm_rlhf", "MM-RLHF-RewardBench JSONL (id, image|video, prompt, chosen, rejected)")
def convert(path: Path, media_root: str | None = None) -> Conversion:
    rows = load_rows(path)
    root = media_root if media_root is not None else str(path.parent)
    seen: Counter = Counter()
    records = []
    for n, row in enumerate(rows):
        require(row, ("id", "prompt", "chosen", "rejected"), f"{path}: item {n}")
        media = row.get("image") or row.get("video")
        if not media:
            raise SourceError(f"{path}: item {n} ({row['id']}): needs an 'image' or 'video' path")
        kind = "video" if "video" in row and row["video"] else "image"
        group = str(row["id"])
        seen[group] += 1
        records.append(
            make(
                id=f"{group}#{seen[group]}",
                task="pairwise",
                modality="answer",
                prompt=row["prompt"],
                candidates=[row["chosen"] or " ", row["rejected"] or " "],
                media=[media],
                media_kind=kind,
                preferred=0,
                category=category_of(media),
                source="mm_rlhf",
                metadata={
                    "group": group,
                    "chosen_reason": row.get("chosen_reason", ""),
                    "rejected_reason": row.get("rejected_reason", ""),
                },
                metadata_only=not media_present([media], root),
            )
        )
    return Conversion("mm_rlhf", records, root)
