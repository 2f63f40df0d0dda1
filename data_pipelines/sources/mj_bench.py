"""MJ-Bench (text-to-image judges): the alignment subsets and the quality image pairs.

Inputs:

* an alignment folder (``alignment/<subset>/<subset>_test.json``; the per-source files beside them are
  subsets of the combined file and are skipped) or one alignment JSON: items ``id, source, caption, image0,
  image1, label`` where ``label`` is the index of the preferred image. Category ``alignment/<subset>``.
* a quality captions file (``caption, image_0, image_1, label_0``): ``label_0`` 1 prefers image_0, 0.5 is a
  tie, 0 prefers image_1 (``get_label`` in ``utils/rm_utils.py``). Category ``quality/<...>`` from the folder
  name; images are looked up in ``images/`` beside the file unless a media root is given.
"""

from __future__ import annotations

from pathlib import Path

from data_pipelines.sources.base import Conversion, SourceError, load_rows, make, media_present, register, require


def _alignment(path: Path, subset: str, root: str | None) -> list:
    out = []
    for n, row in enumerate(load_rows(path)):
        require(row, ("caption", "image0", "image1", "label"), f"{path}: item {n} (an MJ-Bench alignment item)")
        if row["label"] not in (0, 1):
            raise SourceError(f"{path}: item {n}: label must be 0 or 1, got {row['label']!r}")
        files = [row["image0"], row["image1"]]
        out.append(
            make(
                id=f"alignment/{subset}/{row.get('id', n)}",
                task="pairwise",
                modality="image",
                prompt=row["caption"],
                candidates=files,
                preferred=int(row["label"]),
                category=f"alignment/{subset}",
                subset=row.get("source", ""),
                source="mj_bench",
                metadata={"raw_id": row.get("id")},
                metadata_only=not media_present(files, root),
            )
        )
    return out


def _quality(path: Path, root: str | None) -> list:
    group = path.parent.name.replace("_sample", "").removeprefix("quality_")
    root = root if root is not None else str(path.parent / "images")
    out = []
    for n, row in enumerate(load_rows(path)):
        require(row, ("caption", "image_0", "image_1", "label_0"), f"{path}: item {n} (an MJ-Bench quality item)")
        label = float(row["label_0"])
        if label not in (0.0, 0.5, 1.0):
            raise SourceError(f"{path}: item {n}: label_0 must be 0, 0.5 or 1, got {row['label_0']!r}")
        files = [row["image_0"], row["image_1"]]
        out.append(
            make(
                id=f"quality/{group}/{n}",
                task="pairwise",
                modality="image",
                prompt=row["caption"],
                candidates=files,
                preferred=None if label == 0.5 else (0 if label == 1.0 else 1),
                tie=label == 0.5,
                category=f"quality/{group}",
                source="mj_bench",
                metadata={"label_0": label},
                metadata_only=not media_present(files, root),
            )
        )
    return out, root


@register("mj_bench", "MJ-Bench alignment folder/JSON, or a quality captions JSON with images/")
def convert(path: Path, media_root: str | None = None) -> Conversion:
    if path.is_dir():
        files = sorted(path.glob("*/*_test.json"))
        files = [f for f in files if f.stem == f"{f.parent.name}_test"]
        if not files:
            raise SourceError(f"{path}: no <subset>/<subset>_test.json files (expected MJ-Bench's alignment folder)")
        records = [r for f in files for r in _alignment(f, f.parent.name, media_root)]
        return Conversion("mj_bench", records, media_root)
    rows = load_rows(path)
    if rows and "label_0" in rows[0]:
        records, root = _quality(path, media_root)
        return Conversion("mj_bench", records, root)
    subset = path.parent.name if path.stem.endswith("_test") else path.stem
    return Conversion("mj_bench", _alignment(path, subset, media_root), media_root)
