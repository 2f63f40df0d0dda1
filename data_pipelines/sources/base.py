"""What every converter shares: the record helpers, the row loader and the registry they add themselves to."""

from __future__ import annotations

import ast
import json
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_pipelines.records import PreferenceRecord, RecordError


class SourceError(ValueError):
    """The input does not look like the source it was given as; the message says what was expected."""


@dataclass
class Conversion:
    source: str
    records: list[PreferenceRecord]
    media_root: str | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        recs = self.records
        labels = Counter(label_name(r) for r in recs)
        return {
            "source": self.source,
            "records": len(recs),
            "by_category": dict(sorted(Counter(r.category for r in recs).items())),
            "by_label": dict(sorted(labels.items())),
            "by_subset": dict(sorted(Counter(r.subset for r in recs if r.subset).items())),
            "with_media": sum(not r.metadata_only for r in recs),
            "metadata_only": sum(r.metadata_only for r in recs),
            "notes": self.notes,
        }


def label_name(r: PreferenceRecord) -> str:
    if r.task == "pointwise":
        return f"score {r.score:g}"
    if r.tie:
        return "tie"
    return "overall unlabelled" if r.preferred is None else f"candidate {r.preferred}"


# --------------------------------------------------------------------------------------------------------------------
# Shared helpers for converters


def literal(value: Any, what: str, rid: str) -> Any:
    """Some benchmark files store lists and dicts as Python literals in strings; parse those."""
    if isinstance(value, str):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise SourceError(f"item {rid!r}: field {what!r} is neither a list/dict nor a literal of one") from None
    return value


def load_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a .json (list), .jsonl, .csv or .parquet file."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".json":
        with path.open(encoding="utf-8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as exc:
                raise SourceError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        if isinstance(data, dict):
            for key in ("data", "items", "rows"):
                if isinstance(data.get(key), list):
                    return data[key]
            raise SourceError(f"{path}: a JSON object without a list of items under data/items/rows")
        return data
    if suffix == ".jsonl":
        rows = []
        with path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise SourceError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
        return rows
    if suffix == ".csv":
        import csv  # noqa: PLC0415

        with path.open(encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f))
    if suffix == ".parquet":
        import pyarrow.parquet as pq  # noqa: PLC0415  (installed with datasets)

        return pq.read_table(path).to_pylist()
    raise SourceError(f"{path}: unsupported file type {suffix!r}; use .json, .jsonl, .csv or .parquet")


def require(row: dict[str, Any], keys: tuple[str, ...], where: str) -> None:
    missing = [k for k in keys if k not in row]
    if missing:
        raise SourceError(f"{where}: missing field(s) {missing}; present: {sorted(row)[:12]}")


def media_present(refs: list[str], media_root: str | os.PathLike | None) -> bool:
    if not refs:
        return True
    if media_root is None:
        return all(Path(r).is_absolute() and Path(r).is_file() for r in refs)
    return all((Path(media_root) / r).is_file() for r in refs)


def make(**kw) -> PreferenceRecord:
    try:
        return PreferenceRecord(**kw)
    except RecordError as exc:
        raise SourceError(str(exc)) from None


# --------------------------------------------------------------------------------------------------------------------
# Registry

Converter = Callable[..., Conversion]
SOURCES: dict[str, tuple[Converter, str]] = {}


def register(name: str, doc: str) -> Callable[[Converter], Converter]:
    def deco(fn: Converter) -> Converter:
        SOURCES[name] = (fn, doc)
        return fn

    return deco
