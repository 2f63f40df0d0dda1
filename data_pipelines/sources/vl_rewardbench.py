"""VL-RewardBench (1,250 pairs of VLM answers; general / hallucination / reasoning).

Input: the JSON list of items (``id, query, response[2], image, human_ranking, ...``), as in the benchmark's
data.json copies. ``human_ranking[i]`` is response i's rank (0 = better). Grouping follows the official
``cal.py`` after commit 91b241e (SCORING.md section 1): general 183, hallucination 749, reasoning 318. Items are
keyed like cal.py (``id + query + sorted responses``); the 25 repeated ids get a key-derived suffix.
"""

from __future__ import annotations

import hashlib
import re
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

FINE = {
    "RLAIF": "rlaif-v",
    "RLHF": "rlhf-v",
    "mathverse": "reasoning_tasks",
    "mmmu": "reasoning_tasks",
    "wildvision": "wildvision-battle",
    "hallucination": "povid",
}
GROUPS = {
    "vlfeedback": "general",
    "wildvision-battle": "general",
    "povid": "hallucination",
    "rlaif-v": "hallucination",
    "rlhf-v": "hallucination",
    "reasoning_tasks": "reasoning",
}


def fine_group(item_id: str) -> str:
    """cal.py's source mapping: the id prefix up to the first '_' or '-'."""
    prefix = re.split(r"[_-]", item_id, maxsplit=1)[0]
    return FINE.get(prefix, "vlfeedback")


def official_key(item_id: str, query: str, responses: list[str]) -> str:
    return item_id + query + "\t".join(sorted(responses))


@register("vl_rewardbench", "VL-RewardBench JSON (id, query, response, image, human_ranking)")
def convert(path: Path, media_root: str | None = None) -> Conversion:
    rows = load_rows(path)
    root = media_root if media_root is not None else str(path.parent)
    ids = [r.get("id") for r in rows]
    repeated = {i for i in ids if ids.count(i) > 1}
    records = []
    for n, row in enumerate(rows):
        where = f"{path}: item {n}"
        require(row, ("id", "query", "response", "image", "human_ranking"), where)
        rid = str(row["id"])
        responses = literal(row["response"], "response", rid)
        ranking = literal(row["human_ranking"], "human_ranking", rid)
        if not isinstance(responses, list) or len(responses) != 2 or sorted(ranking) != [0, 1]:
            raise SourceError(f"{where} ({rid}): need two responses and human_ranking as a permutation of [0, 1]")
        key = official_key(rid, row["query"], responses)
        uid = rid if rid not in repeated else f"{rid}~{hashlib.sha1(key.encode()).hexdigest()[:8]}"
        fine = fine_group(rid)
        image = row["image"] if isinstance(row["image"], str) else (row["image"] or {}).get("path", "")
        records.append(
            make(
                id=uid,
                task="pairwise",
                modality="answer",
                prompt=row["query"],
                candidates=[str(x) for x in responses],
                media=[image],
                media_kind="image",
                preferred=ranking.index(0),
                category=GROUPS[fine],
                subset=fine,
                source="vl_rewardbench",
                metadata={
                    "raw_id": rid,
                    "official_key_sha1": hashlib.sha1(key.encode()).hexdigest(),
                    "query_source": row.get("query_source", ""),
                    "models": literal(row.get("models", []), "models", rid),
                    "judge": row.get("judge", ""),
                    "ground_truth": row.get("ground_truth", ""),
                },
                metadata_only=not media_present([image], root),
            )
        )
    notes = [] if records and not all(r.metadata_only for r in records) else ["images not on disk: metadata only"]
    return Conversion("vl_rewardbench", records, root, notes)
