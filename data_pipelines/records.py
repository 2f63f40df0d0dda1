"""Preference records: one type for every source (public benchmarks, the synthetic world, user data).

A :class:`PreferenceRecord` holds what a judging item is (task kind, modality, prompt or question,
candidates, the media a question is about), its human label (preferred candidate, tie, per-dimension
labels or a score), and where it came from (category, subset, source, free metadata). Media are
references (paths relative to a media root, or absolute); a record can be metadata-only when a
benchmark's media is not on disk, and :func:`media_report` counts those so a run can say how many items
it could not judge.

Files are JSONL or Parquet (through ``datasets``), written atomically.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from dataclasses import MISSING, asdict, dataclass, field
from pathlib import Path
from typing import Any

from mmreward.protocol import JudgeTask

TASK_KINDS = ("pairwise", "pointwise", "multi")
MODALITIES = ("image", "video", "answer")


class RecordError(ValueError):
    """A malformed record; the message names the record and the field."""


@dataclass
class PreferenceRecord:
    """One judging item with its label.

    Label fields, by task kind:

    * pairwise / multi: ``preferred`` is the index of the better candidate, or ``None`` with ``tie=True``;
      multi also has ``dimension_labels`` (dimension -> index or ``None`` for a tie), and may leave the overall
      label out (``preferred=None, tie=False``) when the source labels dimensions only;
    * pointwise: ``score`` (1-10 unless the source says otherwise), optional ``dimension_labels`` scores.
    """

    id: str
    task: str
    modality: str
    prompt: str
    candidates: list[str]
    media: list[str] = field(default_factory=list)
    media_kind: str = "image"
    preferred: int | None = None
    tie: bool = False
    score: float | None = None
    dimension_labels: dict[str, Any] = field(default_factory=dict)
    allow_tie: bool = False
    category: str = ""
    subset: str = ""
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    metadata_only: bool = False  # the media is not on disk: the record is kept for counts and scoring rules

    def __post_init__(self) -> None:
        self.validate()

    def _fail(self, fld: str, message: str) -> RecordError:
        return RecordError(f"record {self.id!r}: field {fld!r}: {message}")

    def validate(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise RecordError(f"record {self.id!r}: field 'id': must be a non-empty string")
        if self.task not in TASK_KINDS:
            raise self._fail("task", f"must be one of {TASK_KINDS}, got {self.task!r}")
        if self.modality not in MODALITIES:
            raise self._fail("modality", f"must be one of {MODALITIES}, got {self.modality!r}")
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise self._fail("prompt", "must be a non-empty string")
        want = 1 if self.task == "pointwise" else 2
        if not isinstance(self.candidates, list) or len(self.candidates) != want:
            raise self._fail("candidates", f"a {self.task} record needs {want} candidate(s)")
        if not all(isinstance(c, str) and c for c in self.candidates):
            raise self._fail("candidates", "every candidate must be a non-empty string (a media path or an answer)")
        if self.modality == "answer" and self.media_kind not in ("image", "video"):
            raise self._fail("media_kind", "must be image or video")
        if self.task == "pointwise":
            if self.score is None or not isinstance(self.score, (int, float)):
                raise self._fail("score", "a pointwise record needs a numeric score")
        else:
            if self.tie:
                if self.preferred is not None:
                    raise self._fail("preferred", "must be null when tie is true")
            elif self.preferred is None and self.task == "multi" and self.dimension_labels:
                pass  # a multi-dimensional record may carry per-dimension labels only (no overall label)
            elif self.preferred not in (0, 1):
                raise self._fail("preferred", f"must be 0 or 1 (or set tie=true), got {self.preferred!r}")
            for dim, label in self.dimension_labels.items():
                if label not in (0, 1, None):
                    raise self._fail("dimension_labels", f"{dim!r} must be 0, 1 or null (tie), got {label!r}")
        if self.task == "multi" and not self.dimension_labels:
            raise self._fail("dimension_labels", "a multi-dimensional record needs per-dimension labels")

    # ------------------------------------------------------------------------------------------------------------
    def media_paths(self, media_root: str | os.PathLike | None = None) -> list[Path]:
        """Every media file the record needs, resolved against ``media_root``."""
        refs = list(self.media) + (list(self.candidates) if self.modality != "answer" else [])
        return [resolve_media(r, media_root) for r in refs]

    def has_media(self, media_root: str | os.PathLike | None = None) -> bool:
        return not self.metadata_only and all(p.is_file() for p in self.media_paths(media_root))

    def to_task(self, media_root: str | os.PathLike | None = None) -> JudgeTask:
        """The judging task for the engine (labels are not part of it)."""
        if self.metadata_only:
            raise RecordError(f"record {self.id!r}: metadata-only (its media is not on disk); it cannot be judged")

        def resolve(refs: list[str]) -> list[str]:
            return [str(resolve_media(r, media_root)) for r in refs]

        dims = list(self.dimension_labels) if self.task == "multi" else []
        return JudgeTask(
            prompt=self.prompt,
            candidates=self.candidates if self.modality == "answer" else resolve(self.candidates),
            modality=self.modality,
            kind=self.task,
            media=resolve(self.media),
            media_kind=self.media_kind,
            dimensions=dims,
            allow_tie=self.allow_tie,
            id=self.id,
        )

    def resolved(self, media_root: str | os.PathLike | None) -> PreferenceRecord:
        """The record with its media paths resolved against ``media_root`` (usable from any working folder)."""
        if media_root is None:
            return self
        task = self.to_task(media_root)
        d = self.to_dict()
        if self.modality != "answer":
            d["candidates"] = list(task.candidates)
        d["media"] = list(task.media)
        return PreferenceRecord.from_dict(d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "") -> PreferenceRecord:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - known)
        rid = d.get("id", "?")
        if unknown:
            raise RecordError(f"{where}record {rid!r}: unknown field(s) {unknown}")
        required = [
            n for n, f in cls.__dataclass_fields__.items() if f.default is MISSING and f.default_factory is MISSING
        ]
        missing = [n for n in required if n not in d]
        if missing:
            raise RecordError(
                f"{where}record {rid!r}: missing field(s) {', '.join(missing)} (a record needs {', '.join(required)})"
            )
        try:
            return cls(**d)
        except TypeError as exc:
            raise RecordError(f"{where}record {rid!r}: {exc}") from None
        except RecordError as exc:
            raise RecordError(f"{where}{exc}") from None


def presented_orders(record: PreferenceRecord, swap: str, seed: int, salt: str = "") -> list[list[int]]:
    """The orders a record's candidates are shown in: ``none`` (as stored), ``both``, or ``random`` (one order,
    seeded by the record id and ``salt``, so a resumed run shows every item exactly as the first run did)."""
    if record.task == "pointwise" or swap == "none":
        return [list(range(len(record.candidates)))]
    if swap == "both":
        return [[0, 1], [1, 0]]
    rng = random.Random(f"{seed}/{record.id}{salt}")
    return [[0, 1] if rng.random() < 0.5 else [1, 0]]


def resolve_media(ref: str, media_root: str | os.PathLike | None) -> Path:
    path = Path(ref)
    return path if path.is_absolute() or media_root is None else Path(media_root) / path


def write_records(records: list[PreferenceRecord], path: str | os.PathLike) -> Path:
    """Write ``.jsonl`` or ``.parquet`` atomically (a crash never leaves a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if path.suffix == ".jsonl":
        with tmp.open("w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")
    elif path.suffix == ".parquet":
        from datasets import Dataset  # noqa: PLC0415

        rows = [_flatten(r.to_dict()) for r in records]
        Dataset.from_list(rows).to_parquet(str(tmp))
    else:
        raise ValueError(f"{path}: use a .jsonl or .parquet file name")
    os.replace(tmp, path)
    return path


def write_jsonl(path: str | os.PathLike, rows: list[dict[str, Any]]) -> None:
    """Write dict rows as JSON lines, atomically (a temporary file, then a rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def read_records(path: str | os.PathLike) -> list[PreferenceRecord]:
    """Read records from ``.jsonl`` or ``.parquet``; errors name the file, line and record."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such records file")
    if path.suffix == ".jsonl":
        out = []
        with path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    d = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise RecordError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
                if not isinstance(d, dict):
                    raise RecordError(f"{path}:{lineno}: a record must be a JSON object, not {type(d).__name__}")
                out.append(PreferenceRecord.from_dict(d, where=f"{path}:{lineno}: "))
        return out
    if path.suffix == ".parquet":
        from datasets import Dataset  # noqa: PLC0415

        ds = Dataset.from_parquet(str(path))
        return [PreferenceRecord.from_dict(_unflatten(row), where=f"{path}[{i}]: ") for i, row in enumerate(ds)]
    raise ValueError(f"{path}: use a .jsonl or .parquet file name")


# Free-form dicts have no fixed Arrow schema; Parquet stores them as JSON strings.
_JSON_FIELDS = ("dimension_labels", "metadata")


def _flatten(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (json.dumps(v) if k in _JSON_FIELDS else v) for k, v in d.items()}


def _unflatten(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (json.loads(v) if k in _JSON_FIELDS and isinstance(v, str) else v) for k, v in d.items()}


def media_report(records: list[PreferenceRecord], media_root: str | os.PathLike | None = None) -> dict[str, Any]:
    """Counts of records with and without their media on disk, overall and per category."""
    present = Counter()
    missing = Counter()
    for r in records:
        (present if r.has_media(media_root) else missing)[r.category or "-"] += 1
    return {
        "total": len(records),
        "with_media": sum(present.values()),
        "without_media": sum(missing.values()),
        "without_media_by_category": dict(sorted(missing.items())),
    }
