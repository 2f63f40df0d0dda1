"""One crop at a time: the judge's sentence about a candidate it looked at, learned without the pair around it.

A judge on the oracle's ``crop_policy="each"`` trajectories crops image_1, says what it sees and whether that matches the
prompt, then does the same for image_2. In a world pair exactly one candidate is faithful, so the second call
follows from the first: the tiny judge learns that ("not what I said about image_1") and makes its first call
from the prior, never from the pixels (``scripts/diagnose_judge.py``). A row here is one candidate's crop alone,
exactly as the judge gets it back from the tool (the same box, the same pixel budget), after the prompt, and the
answer is the oracle's sentence about it. Nothing but the pixels tells a match from a defect, so the only way
to learn the call is to look; mixed into SFT, these rows keep that pressure on.

Rows have the learning-to-see form (``mmreward_tiny.curriculum.questions``: ``view: "crop"``, a ``match`` flag as the
text-only comparison rows have), so the same dataset, trainer and evaluation (``compare_match_call``) read them.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm.auto import tqdm

from data_pipelines.records import read_records, write_jsonl
from data_pipelines.synthetic.generate import WORLD_TOOLS, WORLD_VISUAL, WorldConfig, build_item, plan_kinds
from data_pipelines.synthetic.oracle import each_box, evaluate_scene, finding
from data_pipelines.synthetic.perception import perceive
from data_pipelines.synthetic.world import Description
from mmreward.tools.crop import crop_view
from mmreward_tiny.curriculum.compare import QUESTION

IMAGE_KINDS = ("image", "multi", "pointwise")  # the world's kinds whose candidates the judge crops


def judge_crop(source: Image.Image) -> Image.Image:
    """The view the crop tool returns for the box the ``each`` oracle asks for on this candidate."""
    overview = WORLD_VISUAL.image_budget.fit(source)
    return crop_view(source, each_box(perceive(overview, min_area=1), overview), WORLD_TOOLS)


class _Pick:
    """The oracle's wording choice, seeded per row."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def pick(self, *options: str) -> str:
        return self.rng.choice(options)


def record_rows(rec, world_dir: Path, out: Path, split: str, seed: int = 0) -> list[dict[str, Any]]:
    """One row per candidate image of a world image item; each crop is saved under ``out/media``."""
    if rec.modality != "image" or rec.metadata.get("world") is None:
        return []
    desc = Description.from_dict(rec.metadata["world"]["description"])
    rows = []
    for j, cand in enumerate(rec.candidates):
        rng = random.Random(f"crops/{seed}/{rec.id}/{j}")
        view = judge_crop(Image.open(world_dir / cand).convert("RGB"))
        blobs = perceive(view, denoise=True)
        align, quality = evaluate_scene(desc, blobs)
        k = rng.choice((1, 2)) if len(rec.candidates) > 1 else 1
        where = f"obs_{k} (the crop of image_{k})"
        name = f"media/{rec.id}_{j}.png"
        view.save(out / name, optimize=False, compress_level=1)
        rows.append(
            {
                "id": f"crops-{rec.id}-{j}",
                "images": [name],
                "labels": [f"Prompt: {rec.prompt}\n{where}:"],
                "question": QUESTION,
                "answer": finding(where, blobs, align, quality, _Pick(rng), desc),
                "match": [not align],  # the match call is alignment only (oracle.finding)
                "level": 0,
                "view": "crop",
                "split": split,
            }
        )
    return rows


def _fresh_item_rows(args) -> list[dict[str, Any]]:
    """Build one world item in a scratch folder, keep only its candidates' crops (as rows)."""
    cfg, kind, index, seed, out = args
    out = Path(out)
    with tempfile.TemporaryDirectory(dir=out) as scratch:
        rec = build_item(cfg, kind, "crops", index, seed, Path(scratch), ".")
        return record_rows(rec, Path(scratch), out, "train", seed)


def generate_crops(
    out: str | os.PathLike,
    n: int,
    seed: int = 0,
    cfg: WorldConfig | None = None,
    val_records: str | os.PathLike | None = None,
    n_val: int = 300,
    workers: int = 1,
    progress: bool = False,
) -> dict[str, Any]:
    """``train.jsonl``: the crops of ``n`` fresh world items (the world's image, multi and pointwise kinds, in its
    mix; items of their own, seeded apart from the world's splits). ``val.jsonl``: the crops of the first items of
    ``val_records`` (a world split), ``n_val`` rows. Returns a manifest with the share of crops that match."""
    cfg = cfg or WorldConfig()
    out = Path(out)
    (out / "media").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    kinds = plan_kinds(n, list(IMAGE_KINDS), cfg.mix, seed, "crops")
    jobs = [(cfg, kind, i, seed, str(out)) for i, kind in enumerate(kinds)]
    bar = tqdm(total=len(jobs), desc="crops", unit="item", disable=not progress)
    train: list[dict[str, Any]] = []
    if workers > 1:
        from multiprocessing import get_context  # noqa: PLC0415

        with get_context("spawn").Pool(workers) as pool:
            for rows in pool.imap(_fresh_item_rows, jobs, chunksize=16):
                train += rows
                bar.update()
    else:
        for job in jobs:
            train += _fresh_item_rows(job)
            bar.update()
    bar.close()
    write_jsonl(out / "train.jsonl", train)
    val: list[dict[str, Any]] = []
    if val_records is not None:
        for rec in read_records(val_records):
            if len(val) >= n_val:
                break
            val += record_rows(rec, Path(val_records).parent, out, "val", seed)
        val = val[:n_val]
    write_jsonl(out / "val.jsonl", val)
    manifest = {
        "seed": seed,
        "items": n,
        "splits": {"train": len(train), "val": len(val)},
        "match_share": {
            k: round(sum(r["match"][0] for r in v) / max(1, len(v)), 3) for k, v in (("train", train), ("val", val))
        },
        "seconds": round(time.perf_counter() - t0, 1),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


__all__ = ["generate_crops", "judge_crop", "record_rows"]
