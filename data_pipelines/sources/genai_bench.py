"""GenAI-Bench (TIGER-AI-Lab): image generation, image editing and video generation pairs with 4-way votes.

Inputs, all with ``vote_type``/``human_vote`` in {leftvote, rightvote, tievote, bothbad_vote}:

* HF rows: ``prompt, left_image, right_image`` (image_generation), ``source_prompt, target_prompt,
  instruct_prompt, source_image, left_output_image, right_output_image`` (image_edition), ``prompt,
  left_video, right_video`` (video_generation);
* the official prediction files (``idx, prompt?, response, model_vote, human_vote``): labels of the whole
  test_v1 split without media, converted to metadata-only records;
* the UnifiedReward 1,889-item video copy (``id, prompt, video_left, video_right, vote_type``, split ``test``).

Left is candidate 0 (shown as model A by the official code). leftvote/rightvote prefer 0/1; tievote and
bothbad_vote are ties, told apart by ``metadata["vote_type"]`` (the 4-way metric needs it).
"""

from __future__ import annotations

from pathlib import Path

from data_pipelines.sources.base import Conversion, SourceError, load_rows, make, media_present, register

TASKS = ("image_generation", "image_edition", "video_generation")
VOTES = {"leftvote": 0, "rightvote": 1, "tievote": None, "bothbad_vote": None}


def guess_task(path: Path, rows: list[dict]) -> str:
    for t in TASKS:
        if t in path.name:
            return t
    if rows and ("video_left" in rows[0] or "left_video" in rows[0]):
        return "video_generation"
    if rows and "source_image" in rows[0]:
        return "image_edition"
    raise SourceError(
        f"{path}: cannot tell the GenAI-Bench task; pass task=image_generation|image_edition|video_generation"
    )


@register("genai_bench", "GenAI-Bench rows, official prediction files, or the UnifiedReward video copy")
def convert(path: Path, media_root: str | None = None, task: str | None = None) -> Conversion:
    rows = load_rows(path)
    task = task or guess_task(path, rows)
    if task not in TASKS:
        raise SourceError(f"unknown GenAI-Bench task {task!r}; choose one of {TASKS}")
    root = media_root if media_root is not None else str(path.parent)
    modality = "video" if task == "video_generation" else "image"
    records, notes = [], []
    for n, row in enumerate(rows):
        vote = row.get("vote_type", row.get("human_vote"))
        if vote not in VOTES:
            raise SourceError(f"{path}: item {n}: vote {vote!r} is not one of {sorted(VOTES)}")
        rid = str(row.get("idx", row.get("id", n)))
        media: list[str] = []
        if task == "image_edition":
            prompt = row.get("instruct_prompt") or ""
            left, right = row.get("left_output_image"), row.get("right_output_image")
            if row.get("source_image"):
                media = [row["source_image"]]
        else:
            prompt = row.get("prompt") or ""
            left = row.get("left_image") or row.get("left_video") or row.get("video_left")
            right = row.get("right_image") or row.get("right_video") or row.get("video_right")
        only = not (left and right and prompt) or not media_present([left, right, *media], root)
        preferred = VOTES[vote]
        metadata = {"vote_type": vote, "task": task}
        if task == "image_edition":
            metadata.update({k: row[k] for k in ("source_prompt", "target_prompt") if k in row})
        if "model_vote" in row:
            metadata["file_model_vote"] = row["model_vote"]
        records.append(
            make(
                id=f"{task}-{rid}",
                task="pairwise",
                modality=modality,
                prompt=prompt or f"(prompt of {task} item {rid} is not in this file)",
                candidates=[left or f"{task}/{rid}/left", right or f"{task}/{rid}/right"],
                media=media,
                media_kind="image",
                preferred=preferred,
                tie=preferred is None,
                allow_tie=True,
                category=task,
                subset=vote,
                source="genai_bench",
                metadata=metadata,
                metadata_only=only,
            )
        )
    if any("response" in r for r in rows[:1]):
        notes.append("official prediction file: labels without media, records are metadata-only")
    return Conversion("genai_bench", records, root, notes)
