"""Any JSONL/CSV/Parquet preference set, driven by a column mapping (no code needed).

``mapping`` maps record fields to column names. One of these label layouts is required:

* ``chosen`` + ``rejected``: candidate 0 is the chosen one (shuffle at eval time);
* ``candidate_0`` + ``candidate_1`` + ``label``: ``label`` values are read through ``label_values``
  (default: 0/1, A/B, left/right -> 0/1; tie/same/0.5 -> tie);
* ``candidates`` (a list column of two) + ``label`` (an index, or a list such as HPDv2's
  ``human_preference``, where the largest entry wins and equal entries are a tie);
* ``candidate`` + ``score``: a pointwise item.

Also: ``prompt`` (required), ``id``, ``media`` (the image/video a question is about, for ``modality=answer``),
``category``, ``subset``. Unmapped scalar columns are kept in ``metadata``. Examples:

    # Pick-a-Pic v2
    prompt=caption candidate_0=jpg_0 candidate_1=jpg_1 label=label_0  label_values: {1: 0, 0: 1, 0.5: tie}
    # HPDv2
    prompt=prompt candidates=image_path label=human_preference
    # VideoFeedback-style scores
    prompt=text candidate=video_path score=visual_quality   (modality=video)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from data_pipelines.sources.base import Conversion, SourceError, load_rows, make, media_present, register

DEFAULT_LABELS: dict[Any, Any] = {
    0: 0,
    1: 1,
    "0": 0,
    "1": 1,
    "A": 0,
    "B": 1,
    "a": 0,
    "b": 1,
    "left": 0,
    "right": 1,
    "tie": "tie",
    "same": "tie",
    0.5: "tie",
    "0.5": "tie",
}
FIELDS = {
    "id",
    "prompt",
    "chosen",
    "rejected",
    "candidate_0",
    "candidate_1",
    "candidates",
    "label",
    "candidate",
    "score",
    "media",
    "category",
    "subset",
}


def parse_mapping(spec: str | dict[str, str] | None) -> dict[str, str]:
    """``{"prompt": "caption", ...}``, a JSON/YAML file path, or ``"prompt=caption,chosen=a"``."""
    if spec is None:
        raise SourceError(
            "the generic converter needs a column mapping, e.g. prompt=caption,chosen=img_a,rejected=img_b"
        )
    if isinstance(spec, dict):
        mapping = dict(spec)
    elif Path(spec).is_file():
        import yaml  # noqa: PLC0415

        mapping = yaml.safe_load(Path(spec).read_text())
    else:
        mapping = {}
        for part in spec.replace(" ", ",").split(","):
            if not part:
                continue
            key, sep, value = part.partition("=")
            if not sep:
                raise SourceError(f"mapping entry {part!r} is not field=column")
            mapping[key.strip()] = value.strip()
    unknown = sorted(set(mapping) - FIELDS - {"label_values"})
    if unknown:
        raise SourceError(f"unknown mapping field(s) {unknown}; known: {sorted(FIELDS)}")
    if "prompt" not in mapping:
        raise SourceError("the mapping needs prompt=<column>")
    layouts = [
        ("chosen", "rejected"),
        ("candidate_0", "candidate_1", "label"),
        ("candidates", "label"),
        ("candidate", "score"),
    ]
    if not any(all(k in mapping for k in lay) for lay in layouts):
        raise SourceError(f"the mapping needs one label layout: {[' + '.join(lay) for lay in layouts]}")
    return mapping


def _read_label(value: Any, table: dict[Any, Any], where: str) -> int | None:
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise SourceError(f"{where}: a list label needs two entries, got {value!r}")
        a, b = (float(v) for v in value)
        return None if a == b else (0 if a > b else 1)
    for key in (value, str(value)):
        if key in table:
            got = table[key]
            return None if got == "tie" else int(got)
    if isinstance(value, float) and value.is_integer() and int(value) in table:
        got = table[int(value)]
        return None if got == "tie" else int(got)
    raise SourceError(f"{where}: label value {value!r} is not in label_values {sorted(map(str, table))}")


@register("generic", "any JSONL/CSV/Parquet preference set, via a column mapping")
def convert(
    path: Path,
    media_root: str | None = None,
    mapping: str | dict[str, str] | None = None,
    modality: str = "image",
    media_kind: str = "image",
    label_values: dict[Any, Any] | str | None = None,
    name: str = "generic",
) -> Conversion:
    m = parse_mapping(mapping)
    table = dict(DEFAULT_LABELS)
    extra = label_values if label_values is not None else m.pop("label_values", None)
    if isinstance(extra, str):
        extra = json.loads(extra)
    if extra:
        table = {}
        for k, v in extra.items():
            table[k] = v
            table[str(k)] = v
    rows = load_rows(path)
    root = media_root if media_root is not None else str(path.parent)
    used = set(m.values())
    records = []
    for n, row in enumerate(rows):
        where = f"{path}: row {n + 1}"
        missing = [c for c in m.values() if c not in row]
        if missing:
            raise SourceError(f"{where}: column(s) {missing} not found; columns are {sorted(row)}")
        rid = str(row[m["id"]]) if "id" in m else f"{name}-{n}"
        meta = {k: v for k, v in row.items() if k not in used and isinstance(v, (str, int, float, bool, type(None)))}
        common = {
            "id": rid,
            "modality": modality,
            "prompt": str(row[m["prompt"]]),
            "media": [row[m["media"]]] if "media" in m and row[m["media"]] else [],
            "media_kind": media_kind,
            "category": str(row[m["category"]]) if "category" in m else "",
            "subset": str(row[m["subset"]]) if "subset" in m else "",
            "source": name,
            "metadata": meta,
        }
        if "candidate" in m:
            cands = [str(row[m["candidate"]])]
            rec = dict(task="pointwise", candidates=cands, score=float(row[m["score"]]))
        else:
            if "chosen" in m:
                cands, preferred = [row[m["chosen"]], row[m["rejected"]]], 0
            elif "candidates" in m:
                cands = list(row[m["candidates"]])
                if len(cands) != 2:
                    raise SourceError(f"{where}: column {m['candidates']!r} must hold two candidates")
                preferred = _read_label(row[m["label"]], table, where)
            else:
                cands = [row[m["candidate_0"]], row[m["candidate_1"]]]
                preferred = _read_label(row[m["label"]], table, where)
            rec = dict(
                task="pairwise",
                candidates=[str(c) for c in cands],
                preferred=preferred,
                tie=preferred is None,
                allow_tie=preferred is None,
            )
        refs = (rec["candidates"] if modality != "answer" else []) + common["media"]
        records.append(make(**common, **rec, metadata_only=not media_present(refs, root)))
    return Conversion(name, records, root)
