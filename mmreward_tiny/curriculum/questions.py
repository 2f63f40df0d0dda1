""" "Learning to see" data: captions and short questions about the world's images, crops and frames.

A real user starts from a pretrained VLM; the embedded default starts from random weights, so it first
needs dense supervision about what is in a picture (ENVIRONMENT.md: a one-token verdict gives almost no
gradient from scratch; names, descriptions and answers do). The curriculum goes from large to small:

* level 0 ``whole``: one large object filling the view;
* level 1 ``whole``: one to three medium objects with positions and counts;
* level 2 ``crop``: world scenes cropped around their objects exactly as the ``crop`` tool renders them,
  and ``frame``: video frames as ``select_frames`` renders them;
* level 1 ``pair``: two labelled images ("Image 1:", "Image 2:", as the judging prompt shows them) of one object
  that differs in colour or shape; the question names an image or asks which image shows something. A judge
  compares candidates by what each one shows, so it must tell the images apart: this is that skill alone;
* level 3 ``overview``: world scenes at overview resolution, where the task is to *locate* the objects
  (the box a crop call should use, in the tool's 0-1000 coordinates) and say their colours, and
  ``frame_pair``: two frames of a clip and what changed between them.

Rows: ``{"id", "images": [paths relative to the folder], "question", "answer", "level", "view", "split"}``, and for
``pair`` rows ``"labels"``: the text shown before each image.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from pathlib import Path
from typing import Any

from data_pipelines.records import write_jsonl
from data_pipelines.synthetic.generate import WORLD_TOOLS, WorldConfig, WorldItem, frame_scene, make_movers
from data_pipelines.synthetic.oracle import union_box_1000
from data_pipelines.synthetic.perception import perceive
from data_pipelines.synthetic.world import (
    NUMBER_WORDS,
    PLURAL,
    Description,
    LayoutError,
    Obj,
    Scene,
    allowed_combos,
    article_for,
    join_phrases,
    layout,
    render,
    sample_description,
)
from mmreward.tools.crop import crop_view

VIEWS = ("whole", "pair", "crop", "frame", "overview", "frame_pair")


def where(x: float, y: float, w: float, h: float) -> str:
    col = ("left", "", "right")[min(2, int(3 * x / w))]
    row = ("top", "", "bottom")[min(2, int(3 * y / h))]
    return f"{row} {col}".strip() or "centre"


def caption(objs: list[Obj], w: float, h: float, with_position: bool = True) -> str:
    objs = sorted(objs, key=lambda o: (o.y // (h / 3), o.x))
    parts = [
        f"{article_for(o.colour)} {o.colour} {o.shape}" + (f" at the {where(o.x, o.y, w, h)}" if with_position else "")
        for o in objs
    ]
    return join_phrases(parts) + "."


def box_1000(box: tuple[float, float, float, float], size: float) -> list[int]:
    return [round(v / size * 1000) for v in box]


def _qa_about(objs: list[Obj], w: float, h: float, rng: random.Random) -> tuple[str, str]:
    o = rng.choice(objs)
    counts = Counter((x.colour, x.shape) for x in objs)
    colours = Counter(x.colour for x in objs)
    kind = rng.choice(("caption", "colour", "shape", "count", "where"))
    if kind == "colour" and sum(1 for x in objs if x.shape == o.shape) == 1:
        return f"What colour is the {o.shape}?", f"{o.colour}."
    if kind == "shape" and colours[o.colour] == 1:
        return f"What shape is the {o.colour} object?", f"{article_for(o.shape)} {o.shape}."
    if kind == "count":
        n = counts[(o.colour, o.shape)]
        noun = o.shape if n == 1 else PLURAL[o.shape]
        return f"How many {o.colour} {PLURAL[o.shape]} are there?", f"{NUMBER_WORDS.get(n, n)} {o.colour} {noun}."
    if kind == "where" and counts[(o.colour, o.shape)] == 1:
        return f"Where is the {o.colour} {o.shape}?", f"at the {where(o.x, o.y, w, h)}."
    return rng.choice(("Describe the image.", "What do you see?", "List the objects.")), caption(objs, w, h)


def _scene(rng: random.Random, canvas: int, size: tuple[float, float], n: tuple[int, int], spread: float) -> Scene:
    combos = allowed_combos(False)
    for _ in range(50):
        try:
            desc = sample_description(rng, combos, n, relation_prob=0.0)
            return layout(desc, canvas, size, rng, spread)
        except LayoutError:
            continue
    raise LayoutError("could not lay out a learning-to-see scene")


def _pair_example(rng: random.Random, view_size: int, rid: str, save) -> dict[str, Any]:
    """Two labelled images of one object each, differing in colour or shape (the difference a judge looks for)."""
    combos = allowed_combos(False)
    colour, shape = rng.choice(combos)
    if rng.random() < 0.5:
        other = rng.choice([c for c, s in combos if s == shape and c != colour]), shape
    else:
        other = colour, rng.choice([s for c, s in combos if c == colour and s != shape])
    objs = [(colour, shape), other]
    rng.shuffle(objs)
    paths = []
    for k, (c, s) in enumerate(objs):
        size = rng.uniform(0.18, 0.3) * view_size
        x, y = (rng.uniform(size / 2, view_size - size / 2) for _ in range(2))
        paths.append(save(render(Scene(view_size, [Obj(s, c, x, y, size)])), f"_{k + 1}"))
    k = rng.randrange(2)
    c, s = objs[k]
    if rng.random() < 0.5:
        q, a = f"What is in image {k + 1}?", f"{article_for(c)} {c} {s}."
    else:
        q, a = f"Which image shows {article_for(c)} {c} {s}?", f"image {k + 1}."
    labels = ["Image 1:", "Image 2:"]
    return {"id": rid, "images": paths, "labels": labels, "question": q, "answer": a, "level": 1, "view": "pair"}


def make_example(index: int, seed: int, cfg, out: Path, split: str) -> dict[str, Any]:

    rng = random.Random(f"{seed}/see/{split}/{index}")
    level = rng.choices([0, 1, 2, 3], weights=[0.1, 0.2, 0.35, 0.35])[0]
    view_size = int(cfg.visual.image_budget.max_pixels**0.5) // 28 * 28
    rid = f"see-{split}-{index:06d}"
    media = out / "media"

    def save(im, suffix="") -> str:
        name = f"{rid}{suffix}.png"
        im.save(media / name, compress_level=1)
        return f"media/{name}"

    if level == 0:
        scene = _scene(rng, view_size, (0.35, 0.6), (1, 1), 1.0)
        q, a = _qa_about(scene.objects, view_size, view_size, rng)
        return {"id": rid, "images": [save(render(scene))], "question": q, "answer": a, "level": 0, "view": "whole"}
    if level == 1 and rng.random() < 0.5:
        return _pair_example(rng, view_size, rid, save)
    if level == 1:
        scene = _scene(rng, view_size, (0.14, 0.22), (1, 3), 0.5)
        q, a = _qa_about(scene.objects, view_size, view_size, rng)
        return {"id": rid, "images": [save(render(scene))], "question": q, "answer": a, "level": 1, "view": "whole"}
    if level == 2 and rng.random() < 0.7:
        # The crop the oracle teacher would ask for (the box around the blobs it sees in the overview), rendered by
        # the crop tool's own code: the views a judge gets back from `crop`.

        scene = _scene(rng, cfg.canvas, cfg.object_size, cfg.n_objects, cfg.spread)
        full = render(scene)
        blobs = perceive(cfg.visual.image_budget.fit(full), min_area=1)
        if blobs:
            box1000 = union_box_1000(blobs, cfg.visual.image_budget.fit(full))
        else:
            box1000 = box_1000(scene.cluster_box(0.8), cfg.canvas)
        box = tuple(v / 1000 * cfg.canvas for v in box1000)
        region = crop_view(full, box1000, WORLD_TOOLS)
        # Object coordinates inside the crop, for positions in the caption.
        kx = region.width / (box[2] - box[0])
        ky = region.height / (box[3] - box[1])
        objs = [Obj(o.shape, o.colour, (o.x - box[0]) * kx, (o.y - box[1]) * ky, o.size * kx) for o in scene.objects]
        objs = [o for o in objs if 0 <= o.x < region.width and 0 <= o.y < region.height]
        q, a = _qa_about(objs, region.width, region.height, rng) if objs else ("What do you see?", "nothing.")
        return {"id": rid, "images": [save(region)], "question": q, "answer": a, "level": 2, "view": "crop"}
    if level == 2:
        it = WorldItem(cfg, "see", index, seed, media, "")
        movers = make_movers(it)
        t = rng.random()
        scene = frame_scene(movers, t, cfg.video_canvas)
        frame = WORLD_TOOLS.frame_budget.fit(render(scene))
        k = frame.width / cfg.video_canvas
        objs = [Obj(o.shape, o.colour, o.x * k, o.y * k, o.size * k) for o in scene.objects]
        q, a = _qa_about(objs, frame.width, frame.height, rng)
        return {"id": rid, "images": [save(frame)], "question": q, "answer": a, "level": 2, "view": "frame"}
    if rng.random() < 0.6:
        # Locating: the box a crop call should use, exactly as the oracle teacher computes it from the overview.

        scene = _scene(rng, cfg.canvas, cfg.object_size, cfg.n_objects, cfg.spread)
        overview = cfg.visual.image_budget.fit(render(scene))
        blobs = perceive(overview, min_area=1)
        box = union_box_1000(blobs, overview) if blobs else box_1000(scene.cluster_box(0.8), cfg.canvas)
        colours = sorted({o.colour for o in scene.objects})
        n = len(scene.objects)
        q = rng.choice(("Where are the objects, and what colours are they?", "Locate the objects."))
        a = f"{NUMBER_WORDS.get(n, n)} small object{'s' if n > 1 else ''}; crop box {box}; colours: {', '.join(colours)}."
        return {"id": rid, "images": [save(overview)], "question": q, "answer": a, "level": 3, "view": "overview"}
    # What changed between two frames of a clip.

    it = WorldItem(cfg, "see", index, seed, media, "")
    movers = make_movers(it)
    t = rng.uniform(0.1, 0.8)
    a_scene = frame_scene(movers, t, cfg.video_canvas)
    b_scene = frame_scene(movers, min(1.0, t + 0.1), cfg.video_canvas)
    change = rng.choice(("none", "colour", "shape", "disappear"))
    o = b_scene.objects[0]
    if change == "colour":
        new = rng.choice([c for c in ("red", "orange", "yellow", "green", "blue", "purple") if c != o.colour])
        answer = f"the {o.colour} {o.shape} turns {new}."
        o.colour = new
    elif change == "shape":
        new = rng.choice([s for s in ("circle", "square", "triangle", "cross") if s != o.shape])
        answer = f"the {o.colour} {o.shape} becomes {article_for(new)} {new}."
        o.shape = new
    elif change == "disappear":
        answer = f"the {o.colour} {o.shape} disappears."
        b_scene.objects.pop(0)
    else:
        answer = "nothing changes; the objects keep moving."
    fit = WORLD_TOOLS.frame_budget.fit
    images = [save(fit(render(a_scene)), "_a"), save(fit(render(b_scene)), "_b")]
    return {
        "id": rid,
        "images": images,
        "question": "What changes between the two frames?",
        "answer": answer,
        "level": 3,
        "view": "frame_pair",
    }


def generate_see(out: str | os.PathLike, n: int, seed: int = 0, cfg=None, progress: bool = False) -> dict[str, Any]:
    """Write ``out/train.jsonl`` and ``out/val.jsonl`` (a tenth, at least 20) with their PNGs."""

    cfg = cfg or WorldConfig()
    out = Path(out)
    (out / "media").mkdir(parents=True, exist_ok=True)
    counts = {}
    for split, size in (("train", n), ("val", max(20, n // 10))):
        rows = []
        it = range(size)
        if progress:
            from tqdm.auto import tqdm  # noqa: PLC0415

            it = tqdm(it, desc=f"see/{split}", unit="ex")
        for i in it:
            row = make_example(i, seed, cfg, out, split)
            row["split"] = split
            rows.append(row)
        write_jsonl(out / f"{split}.jsonl", rows)
        counts[split] = {"n": len(rows), "by_view": dict(Counter(r["view"] for r in rows))}
    return counts


def read_see(path: str | os.PathLike) -> list[dict[str, Any]]:
    with Path(path).open() as f:
        return [json.loads(line) for line in f if line.strip()]


__all__ = ["VIEWS", "Description", "generate_see", "read_see"]
