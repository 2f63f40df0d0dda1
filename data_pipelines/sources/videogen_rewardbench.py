"""VideoGen-RewardBench (KwaiVGI/VideoAlign): text-to-video pairs labelled on VQ, MQ, TA and Overall.

Input: the eval CSV (``path_A, path_B, A_model, B_model, prompt, VQ, MQ, TA, Overall, fps_A, num_frames_A,
...``) or VideoAlign's training CSV (the same without ``Overall`` and the model columns). Labels are ``A``,
``B`` or ``same`` (a tie). Records are multi-dimensional over VQ/MQ/TA; the overall label is ``Overall`` when
present (otherwise the record carries dimension labels only). Paths are relative to the CSV's folder unless a
media root is given (``./`` prefixes are normalised).
"""

from __future__ import annotations

from pathlib import Path

from data_pipelines.sources.base import Conversion, SourceError, load_rows, make, media_present, register, require

DIMENSIONS = ("VQ", "MQ", "TA")
LABELS = {"A": 0, "B": 1, "same": None}


def _label(value, where: str):
    v = str(value).strip()
    if v not in LABELS:
        raise SourceError(f"{where}: label {value!r} must be A, B or same")
    return LABELS[v]


@register(
    "videogen_rewardbench", "VideoGen-RewardBench / VideoAlign CSV (path_A, path_B, prompt, VQ, MQ, TA[, Overall])"
)
def convert(path: Path, media_root: str | None = None) -> Conversion:
    rows = load_rows(path)
    root = media_root if media_root is not None else str(path.parent)
    records = []
    for n, row in enumerate(rows):
        where = f"{path}: row {n + 1}"
        require(row, ("path_A", "path_B", "prompt", *DIMENSIONS), where)
        files = [str(row["path_A"]).removeprefix("./"), str(row["path_B"]).removeprefix("./")]
        dims = {d: _label(row[d], where) for d in DIMENSIONS}
        has_overall = "Overall" in row and row["Overall"] not in (None, "")
        overall = _label(row["Overall"], where) if has_overall else None
        meta = {
            k: row[k] for k in ("A_model", "B_model", "fps_A", "num_frames_A", "fps_B", "num_frames_B") if k in row
        }
        meta["raw_labels"] = {d: row[d] for d in (*DIMENSIONS, "Overall") if d in row}
        records.append(
            make(
                id=f"videogen-{n}",
                task="multi",
                modality="video",
                prompt=row["prompt"],
                candidates=files,
                preferred=overall,
                tie=has_overall and overall is None,
                dimension_labels=dims,
                allow_tie=True,
                category=f"{row['A_model']} vs {row['B_model']}" if "A_model" in row else "videoalign",
                source="videogen_rewardbench",
                metadata=meta,
                metadata_only=not media_present(files, root),
            )
        )
    return Conversion("videogen_rewardbench", records, root)
