"""Text-only lookup exercises for the tiny backbone (``view: lookup``), and their image twin for measuring binding.

A judge has to tie what it reads to the label it was read under: "Image 2 shows a blue cross", "Answer 1 says
two". That is a lookup: find the label, read what follows it (or find the content, read its label). Transformers
do it with induction-style attention heads that a pretrained language model formed long ago and that a randomly
initialised 2-layer model forms only late. ``scripts/probe_binding.py`` measures it on the tiny model: asked
"Which image shows a red picture?" about two labelled solid-colour images it stays at chance (and it does the same
when the images are replaced by their colour words), while "What is in image 2?" with image 2 always the last one
is learned at once; after these text rows (a warm-up of a few thousand steps) the image questions are learned in a
few hundred steps. So a warm-up on them stands in for the language pretraining of a real backbone, as stage 0
stands in for its visual pretraining.

Each lookup row lists two or three labelled items under the labels a judging prompt uses ("Image k:",
"[Answer k]", "Video k:") and asks for the item under a label or the label of an item. Rows have the
learning-to-see form (``mmreward_tiny.curriculum.questions``) with no images, so the same dataset and trainer read them.
``generate_solid_pairs`` writes the image twin (two labelled solid-colour images) and its text-only version.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from data_pipelines.records import write_jsonl
from data_pipelines.synthetic.world import NUMBER_WORDS, PALETTE, PLURAL, SHAPES, article_for

# (label shown before item k, how a question names item k, how an answer names item k)
LABELS = (
    ("Image {k}:", "image {k}", "image {k}"),
    ("[Answer {k}]", "Answer {k}", "Answer {k}"),
    ("Video {k}:", "video {k}", "video {k}"),
)


def _item(rng: random.Random) -> str:
    colour, shape = rng.choice(list(PALETTE)), rng.choice(SHAPES)
    n = rng.choice((1, 1, 2, 3))
    return f"{article_for(colour)} {colour} {shape}" if n == 1 else f"{NUMBER_WORDS[n]} {colour} {PLURAL[shape]}"


def lookup_example(rng: random.Random, rid: str, split: str) -> dict[str, Any]:
    label, q_name, a_name = rng.choice(LABELS)
    k = rng.choice((2, 2, 3))
    items: list[str] = []
    while len(items) < k:
        it = _item(rng)
        if it not in items:
            items.append(it)
    context = "".join(f"{label.format(k=i + 1)}\n{it}.\n" for i, it in enumerate(items))
    t = rng.randrange(k)
    noun = q_name.split()[0].lower()
    if rng.random() < 0.5:
        question, answer = f"Which {noun} shows {items[t]}?", f"{a_name.format(k=t + 1)}."
    else:
        question, answer = f"What is in {q_name.format(k=t + 1)}?", f"{items[t]}."
    return {
        "id": rid,
        "images": [],
        "question": f"{context}\n{question}",
        "answer": answer,
        "level": 0,
        "view": "lookup",
        "split": split,
    }


def write_text_rows(
    out: str | os.PathLike, name: str, example: Callable, n: int, n_val: int, seed: int
) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """Write ``train.jsonl`` (``n`` rows) and ``val.jsonl`` (``n_val`` rows) of text-only warm-up rows under ``out``,
    each from ``example(rng, id, split)`` with a generator seeded by ``name``, ``seed`` and the split. Returns a
    manifest and the rows by split."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"seed": seed, "splits": {}}
    written = {}
    for split, count in (("train", n), ("val", n_val)):
        rng = random.Random(f"{name}/{seed}/{split}")
        rows = [example(rng, f"{name}-{split}-{i:06d}", split) for i in range(count)]
        write_jsonl(out / f"{split}.jsonl", rows)
        manifest["splits"][split] = count
        written[split] = rows
    return manifest, written


def generate_lookup(out: str | os.PathLike, n: int, seed: int = 0, n_val: int = 200) -> dict[str, Any]:
    """Write ``train.jsonl`` (``n`` rows) and ``val.jsonl`` (``n_val`` rows) under ``out``; returns a manifest."""
    return write_text_rows(out, "lookup", lookup_example, n, n_val, seed)[0]


def _pic(colour: str) -> str:
    return f"{article_for(colour)} {colour} picture"


def generate_solid_pairs(out: str | os.PathLike, n: int, seed: int = 0, n_val: int = 200, px: int = 56) -> dict:
    """Two labelled solid-colour images per row ("Image 1:", "Image 2:"), asked which shows a colour or what one
    of them shows, in three versions under ``out``: ``images/`` (the pictures), ``text/`` (the same rows with each
    image replaced by its colour words: the lookup alone) and ``last/`` (always "What is in image 2?": the most
    recent image, no lookup needed). At ``px`` = 56 an image is four visual tokens of the tiny model."""
    from PIL import Image  # noqa: PLC0415

    out = Path(out)
    for sub in ("images", "text", "last"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    (out / "images" / "media").mkdir(exist_ok=True)
    colours = list(PALETTE)
    counts = {}
    for split, count in (("train", n), ("val", n_val)):
        rng = random.Random(f"solid/{seed}/{split}")
        rows: dict[str, list] = {"images": [], "text": [], "last": []}
        for i in range(count):
            pair = rng.sample(colours, 2)
            paths = []
            for k, c in enumerate(pair):
                rel = f"media/{split}-{i:05d}_{k + 1}.png"
                Image.new("RGB", (px, px), PALETTE[c]).save(out / "images" / rel)
                paths.append(rel)
            t = rng.randrange(2)
            if rng.random() < 0.5:
                question, answer = f"Which image shows {_pic(pair[t])}?", f"image {t + 1}."
            else:
                question, answer = f"What is in image {t + 1}?", f"{_pic(pair[t])}."
            base = {"id": f"solid-{split}-{i:05d}", "level": 1, "view": "pair", "split": split}
            labels = ["Image 1:", "Image 2:"]
            rows["images"].append({**base, "images": paths, "labels": labels, "question": question, "answer": answer})
            context = "".join(f"{lab}\n{_pic(c)}.\n" for lab, c in zip(labels, pair))
            rows["text"].append({**base, "images": [], "question": f"{context}\n{question}", "answer": answer})
            rows["last"].append(
                {
                    **base,
                    "images": [f"../images/{p}" for p in paths],
                    "labels": labels,
                    "question": "What is in image 2?",
                    "answer": f"{_pic(pair[1])}.",
                }
            )
        for sub, rs in rows.items():
            write_jsonl(out / sub / f"{split}.jsonl", rs)
        counts[split] = count
    return {"seed": seed, "splits": counts, "px": px}
