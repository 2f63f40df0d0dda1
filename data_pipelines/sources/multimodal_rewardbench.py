"""Multimodal RewardBench (facebookresearch): pairs of VLM answers across six areas.

Input: the release JSON (``ID, Text, Image, Output1, Output2, Better, Category``) or a predictions file in
the official format (``ID, Image, Label, output, Meta.Category``), which carries labels but not the answers:
those become metadata-only records (enough for counts and for scoring predictions). Categories are split as
``scripts/2_get_accuracy.py`` does: safety -> safety/bias (ID starts with "pairs") or safety/toxicity;
reasoning -> reasoning/math (ID starts with "math") or reasoning/coding.
"""

from __future__ import annotations

from pathlib import Path

from data_pipelines.sources.base import Conversion, SourceError, load_rows, make, media_present, register, require


def official_category(category: str, item_id: str) -> str:
    if category.startswith("safety"):
        return "safety/bias" if item_id.startswith("pairs") else "safety/toxicity"
    if category.startswith("reasoning"):
        return "reasoning/math" if item_id.startswith("math") else "reasoning/coding"
    return category


@register("multimodal_rewardbench", "Multimodal RewardBench release JSON or official predictions JSONL")
def convert(path: Path, media_root: str | None = None) -> Conversion:
    rows = load_rows(path)
    root = media_root if media_root is not None else str(path.parent)
    records, notes = [], []
    for n, row in enumerate(rows):
        rid = str(row.get("ID", ""))
        if not rid:
            raise SourceError(f"{path}: item {n} has no 'ID'")
        if "Output1" in row:
            require(row, ("Output1", "Output2", "Better", "Category"), f"{path}: item {rid}")
            label = 1 if row["Better"] == "Output2" else 0
            category = row["Category"]
            prompt, candidates, only = row.get("Text") or "", [row["Output1"], row["Output2"]], False
        elif "Label" in row:
            label = 1 if row["Label"] == "B" else 0
            category = (row.get("Meta") or {}).get("Category", "")
            prompt, candidates, only = "", [], True
        else:
            raise SourceError(
                f"{path}: item {rid}: neither the release format (Output1/Output2/Better) nor a predictions line (Label)"
            )
        image = row.get("Image") or ""
        only = only or not media_present([image], root) or not prompt
        records.append(
            make(
                id=rid,
                task="pairwise",
                modality="answer",
                prompt=prompt or f"(prompt of {rid} is not in this file)",
                candidates=candidates
                or [f"(Output1 of {rid} not in this file)", f"(Output2 of {rid} not in this file)"],
                media=[image] if image else [],
                media_kind="image",
                preferred=label,
                category=official_category(category, rid),
                subset=category,
                source="multimodal_rewardbench",
                metadata={"raw_category": category},
                metadata_only=only,
            )
        )
    if any("Label" in r for r in rows):
        notes.append("predictions file: answers are not included, records are metadata-only")
    return Conversion("multimodal_rewardbench", records, root, notes)
