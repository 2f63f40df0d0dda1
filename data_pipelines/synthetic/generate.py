"""Generate the synthetic visual preference world: judging records, their PNG/MP4 media, and the
"learning to see" data for a backbone that starts from random weights.

Item kinds (``--kinds``):

* ``image``: text-to-image pairs. One candidate is faithful to the prompt, the other has one defect
  (colour, shape, count or relation).
* ``answer``: a question about one image and two answers, one right.
* ``video``: two clips of objects moving in straight lines; one has a glitch confined to a few frames
  (colour flicker, disappearance, jump, shape change).
* ``multi``: image pairs judged per dimension (alignment, quality) and overall, with ties.
* ``pointwise``: one image, scored 1-10 from the number and kind of its defects.

**Needs a tool.** Every item records ``needs_tool``: whether its defect can be resolved from the overview the
judge is shown (the overview pixel budget and frame count of :attr:`WorldConfig.visual`). The rule, checked by
``tests/test_synthetic.py`` against a pixel-level perceiver:

* an object's *shape* is resolvable when its side in the overview is at least ``SHAPE_PX`` pixels, its
  *colour* when at least ``COLOUR_PX`` (both measured: see ``WorldConfig`` and the test);
* colour/shape defects need a tool when that attribute is not resolvable for the changed object; count and
  relation defects need one when the objects involved can only be told apart by shape (another group
  shares their colour) and shape is not resolvable;
* quality artifacts need a tool when the overview of the damaged image differs from the clean one by less
  than ``QUALITY_DELTA`` (mean absolute difference over the object's region, 0-255);
* a pointwise score needs a tool whenever some shape is unresolvable: an absolute score means confirming
  every attribute, not only spotting a difference;
* a video glitch needs a tool when none of its frames is among the overview frames.

The generator is seeded per item (``seed``, split, index), so any item can be regenerated alone and a run
is deterministic whatever the number of worker processes.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from data_pipelines.records import PreferenceRecord, write_records
from data_pipelines.synthetic.world import (
    ALIGNMENT_DEFECTS,
    NUMBER_WORDS,
    PALETTE,
    PLURAL,
    QUALITY_DEFECTS,
    RELATIONS,
    SHAPES,
    Description,
    LayoutError,
    Obj,
    Scene,
    allowed_combos,
    apply_defect,
    article_for,
    describe,
    layout,
    render,
    sample_description,
    share_first_colour,
)
from mmreward.media import PixelBudget, sample_frame_indices, save_video, smart_resize
from mmreward.protocol import VisualSettings
from mmreward.runs import RunFolder, atomic_write_text
from mmreward.settings import EngineSettings, save_engine_settings
from mmreward.tools import ToolSettings

SHAPE_PX = 6.0  # overview pixels from which a shape can be told (the pixel perceiver reaches ~90% here)
COLOUR_PX = 1.5  # overview pixels from which a colour can be told
QUALITY_DELTA = 10.0

KINDS = ("image", "answer", "video", "multi", "pointwise")
SPLITS = ("train", "val", "test", "compositional")

# The protocol settings the world is built for (the tiny-cpu recipe uses them): coarse overviews (112 px), tools
# that zoom in. A crop comes back at 224 px, so even a crop of the whole image is a 2x closer look: a tiny judge
# that cannot locate objects still gains detail (its descriptions of such crops are right twice as often as of
# 112-px ones: scripts/diagnose_judge.py, 0.45 against 0.22). Needs-tool flags are computed against
# ``WorldConfig.visual``.
WORLD_VISUAL = VisualSettings(
    image_budget=PixelBudget(56 * 56, 112 * 112),
    overview_frames=4,
    frame_budget=PixelBudget(56 * 56, 112 * 112),
    frame_rule="centre",  # the defects are placed off these frames (see plan_video)
)
WORLD_TOOLS = ToolSettings(
    crop_min_side=224,
    crop_budget=PixelBudget(56 * 56, 224 * 224),
    frame_budget=PixelBudget(56 * 56, 168 * 168),
    max_frames_per_call=4,
)


@dataclass
class WorldConfig:
    """Size and difficulty of the world. Sizes are fractions of the canvas side."""

    canvas: int = 448
    object_size: tuple[float, float] = (0.02, 0.035)
    n_objects: tuple[int, int] = (1, 3)
    spread: float = 1.2  # gap between neighbouring objects, in object sizes
    relation_prob: float = 0.5
    shared_colour_prob: float = 0.5  # chance that a second group reuses the first group's colour
    video_canvas: int = 160
    video_object_size: tuple[float, float] = (0.12, 0.16)
    video_objects: tuple[int, int] = (1, 2)
    clip_frames: int = 12
    fps: float = 6.0
    glitch_frames: tuple[int, int] = (1, 2)
    visible_glitch_prob: float = 0.15  # share of video glitches allowed to show in the overview
    quality_prob: float = 0.5  # multi/pointwise: chance of a quality artifact per candidate
    mix: dict[str, float] = field(
        default_factory=lambda: {"image": 0.35, "answer": 0.2, "video": 0.2, "multi": 0.1, "pointwise": 0.15}
    )
    visual: VisualSettings = WORLD_VISUAL

    def __post_init__(self) -> None:
        lo, hi = self.object_size
        if not 0 < lo <= hi < 0.3:
            raise ValueError(f"object_size {self.object_size}: need 0 < min <= max < 0.3 (fractions of the canvas)")
        if self.n_objects[0] < 1 or self.n_objects[1] > 5 or self.n_objects[0] > self.n_objects[1]:
            raise ValueError(f"n_objects {self.n_objects}: need 1 <= min <= max <= 5")
        if self.clip_frames < 2 * self.visual.overview_frames:
            raise ValueError("clip_frames must be at least twice the overview frame count, or glitches cannot hide")
        if self.glitch_frames[0] < 1 or self.glitch_frames[1] >= self.clip_frames // max(
            1, self.visual.overview_frames
        ):
            raise ValueError("glitch_frames must be at least 1 and shorter than the gap between overview frames")

    def overview_scale(self) -> float:
        """Overview pixels per canvas pixel for a square image under the overview budget."""
        b = self.visual.image_budget
        h, _ = smart_resize(self.canvas, self.canvas, b.factor, b.min_pixels, b.max_pixels)
        return h / self.canvas

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["visual"] = {
            "image_max_pixels": self.visual.image_budget.max_pixels,
            "overview_frames": self.visual.overview_frames,
            "frame_max_pixels": self.visual.frame_budget.max_pixels,
        }
        return d


# --------------------------------------------------------------------------------------------------------------------
# Needs-tool rules


def shape_resolvable(o: Obj, cfg: WorldConfig) -> bool:
    return o.size * cfg.overview_scale() >= SHAPE_PX


def colour_resolvable(o: Obj, cfg: WorldConfig) -> bool:
    return o.size * cfg.overview_scale() >= COLOUR_PX


def _shares_colour(desc: Description, group: int) -> bool:
    colour = desc.groups[group][0]
    return any(g[0] == colour for i, g in enumerate(desc.groups) if i != group)


def alignment_needs_tool(desc: Description, scene: Scene, info: dict[str, Any], cfg: WorldConfig) -> tuple[bool, str]:
    kind = info["kind"]
    if kind == "colour":
        o = scene.objects[info["object"]]
        ok = colour_resolvable(o, cfg)
        return (not ok, f"object of {o.size * cfg.overview_scale():.1f} overview px; colour needs {COLOUR_PX}")
    if kind == "shape":
        o = scene.objects[info["object"]]
        ok = shape_resolvable(o, cfg)
        return (not ok, f"object of {o.size * cfg.overview_scale():.1f} overview px; shape needs {SHAPE_PX}")
    small = not all(shape_resolvable(o, cfg) for o in scene.objects)
    groups = [info["group"]] if kind == "count" else list(info["groups"])
    by_shape = any(_shares_colour(desc, g) for g in groups)
    if by_shape and small:
        return True, f"{kind}: the objects share a colour with another group and their shapes are unresolvable"
    return False, f"{kind}: the objects can be told apart by colour in the overview"


def quality_needs_tool(clean: Scene, damaged: Scene, info: dict[str, Any], cfg: WorldConfig) -> tuple[bool, str]:
    b = cfg.visual.image_budget
    a = np.asarray(b.fit(render(clean)), dtype=np.float32)
    d = np.asarray(b.fit(render(damaged, seed=0)), dtype=np.float32)
    k = a.shape[0] / clean.canvas
    o = damaged.objects[info["object"]]
    pad = 0.4 * o.size
    x1, y1 = max(0, int((o.x - o.size / 2 - pad) * k)), max(0, int((o.y - o.size / 2 - pad) * k))
    x2, y2 = int(math.ceil((o.x + o.size / 2 + pad) * k)), int(math.ceil((o.y + o.size / 2 + pad) * k))
    delta = float(np.abs(a[y1:y2, x1:x2] - d[y1:y2, x1:x2]).mean())
    return (
        delta < QUALITY_DELTA,
        f"{info['kind']}: overview differs by {delta:.1f} (tool needed below {QUALITY_DELTA})",
    )


# --------------------------------------------------------------------------------------------------------------------
# Items


class WorldItem:
    """Helpers shared by the item builders: the rng, the media folder and file naming."""

    def __init__(self, cfg: WorldConfig, split: str, index: int, seed: int, media_dir: Path, rel: str) -> None:
        self.cfg, self.split, self.index = cfg, split, index
        self.rng = random.Random(f"{seed}/{split}/{index}")
        self.id = f"synth-{split}-{index:06d}"
        self.media_dir, self.rel = media_dir, rel
        self.combos = allowed_combos(split == "compositional")

    def save_image(self, scene: Scene, suffix: str) -> str:
        name = f"{self.id}_{suffix}.png"
        render(scene, seed=self.index).save(self.media_dir / name, optimize=False, compress_level=1)
        return f"{self.rel}/{name}"

    def description(self) -> Description:
        cfg, rng = self.cfg, self.rng
        desc = sample_description(rng, self.combos, cfg.n_objects, cfg.relation_prob)
        if len(desc.groups) >= 2 and rng.random() < cfg.shared_colour_prob:
            share_first_colour(desc, rng, self.combos)
        if self.split == "compositional" and not any((c, s) in _held_out() for c, s, _ in desc.groups):
            c, s = self.rng.choice(sorted(_held_out()))
            desc.groups[0] = (c, s, desc.groups[0][2])
            if len({(g[0], g[1]) for g in desc.groups}) < len(desc.groups):
                raise LayoutError("held-out combination collides with another group")
        return desc

    def base(self, **kw) -> dict[str, Any]:
        return {"id": self.id, "subset": self.split, "source": "synthetic", **kw}


def _held_out():
    from data_pipelines.synthetic.world import HELD_OUT  # noqa: PLC0415

    return HELD_OUT


def _sizes(cfg: WorldConfig) -> tuple[float, float]:
    return cfg.object_size


def _defective(it: WorldItem, desc: Description, faithful: Scene, kinds: tuple[str, ...]):
    cfg = it.cfg
    options = [k for k in kinds if k != "relation" or desc.relation is not None]
    kind = it.rng.choice(options)
    return apply_defect(desc, faithful, kind, it.rng, it.combos, _sizes(cfg), cfg.spread)


def _world_meta(desc: Description, scenes: list[Scene], defects: list[Any], needs: bool, why: list[str], **kw):
    return {
        "world": {
            "description": desc.to_dict(),
            "scenes": [s.to_dict() for s in scenes],
            "defects": defects,
            "needs_tool": needs,
            "needs_tool_reason": "; ".join(why),
            **kw,
        }
    }


def _family(kind: str) -> str:
    return "quality" if kind in QUALITY_DEFECTS else "alignment"


def make_image_pair(it: WorldItem) -> PreferenceRecord:
    cfg, rng = it.cfg, it.rng
    desc = it.description()
    faithful = layout(desc, cfg.canvas, _sizes(cfg), rng, cfg.spread)
    other = layout(desc, cfg.canvas, _sizes(cfg), rng, cfg.spread)
    bad, info = _defective(it, desc, other, ALIGNMENT_DEFECTS)
    needs, why = alignment_needs_tool(desc, bad, info, cfg)
    preferred = rng.randrange(2)
    scenes = [faithful, bad] if preferred == 0 else [bad, faithful]
    files = [it.save_image(s, str(k + 1)) for k, s in enumerate(scenes)]
    defects = [None, info] if preferred == 0 else [info, None]
    return PreferenceRecord(
        **it.base(),
        task="pairwise",
        modality="image",
        prompt=describe(desc, rng),
        candidates=files,
        preferred=preferred,
        category=f"image/{info['kind']}",
        metadata=_world_meta(desc, scenes, defects, needs, [why]),
    )


def make_multi(it: WorldItem) -> PreferenceRecord:
    """Image pairs judged for alignment and quality; each candidate may carry either kind of defect."""
    cfg, rng = it.cfg, it.rng
    desc = it.description()
    while True:
        flags = [(rng.random() < 0.5, rng.random() < cfg.quality_prob) for _ in range(2)]
        if flags[0] != flags[1]:
            break
    scenes, defects, why, needs = [], [], [], False
    for align, quality in flags:
        scene = layout(desc, cfg.canvas, _sizes(cfg), rng, cfg.spread)
        infos = []
        if align:
            scene, info = _defective(it, desc, scene, ALIGNMENT_DEFECTS)
            n, w = alignment_needs_tool(desc, scene, info, cfg)
            needs, infos = needs or n, [*infos, info]
            why.append(w)
        if quality:
            clean = scene
            scene, info = apply_defect(
                desc, scene, rng.choice(QUALITY_DEFECTS), rng, it.combos, _sizes(cfg), cfg.spread
            )
            n, w = quality_needs_tool(clean, scene, info, cfg)
            needs, infos = needs or n, [*infos, info]
            why.append(w)
        scenes.append(scene)
        defects.append(infos)

    def winner(a: float, b: float) -> int | None:
        return None if a == b else (0 if a < b else 1)

    align = winner(*(float(f[0]) for f in flags))
    quality = winner(*(float(f[1]) for f in flags))
    overall = winner(*(2.0 * f[0] + f[1] for f in flags))
    files = [it.save_image(s, str(k + 1)) for k, s in enumerate(scenes)]
    return PreferenceRecord(
        **it.base(),
        task="multi",
        modality="image",
        prompt=describe(desc, rng),
        candidates=files,
        preferred=overall,
        tie=overall is None,
        allow_tie=True,
        dimension_labels={"alignment": align, "quality": quality},
        category="multi/" + "+".join(sorted({_family(d["kind"]) for ds in defects for d in ds})),
        metadata=_world_meta(desc, scenes, defects, needs, why),
    )


def pointwise_score(n_alignment: int, n_quality: int) -> int:
    return max(1, 10 - 4 * n_alignment - 3 * n_quality)


def make_pointwise(it: WorldItem) -> PreferenceRecord:
    cfg, rng = it.cfg, it.rng
    desc = it.description()
    scene = original = layout(desc, cfg.canvas, _sizes(cfg), rng, cfg.spread)
    n_align = rng.choice([0, 0, 1, 1, 2])
    n_quality = int(rng.random() < cfg.quality_prob)
    infos, why, needs = [], [], False
    for _ in range(n_align):
        scene, info = _defective(it, desc, scene, ("colour", "shape"))
        n, w = alignment_needs_tool(desc, scene, info, cfg)
        infos.append(info)
        needs, why = needs or n, [*why, w]
    if n_quality:
        clean = scene
        scene, info = apply_defect(desc, scene, rng.choice(QUALITY_DEFECTS), rng, it.combos, _sizes(cfg), cfg.spread)
        n, w = quality_needs_tool(clean, scene, info, cfg)
        infos.append(info)
        needs, why = needs or n, [*why, w]
    # Two defects may hit the same object (or undo each other): count the objects that really changed.
    n_align = sum((a.colour, a.shape) != (b.colour, b.shape) for a, b in zip(original.objects, scene.objects))
    # A score is absolute: confirming that nothing is wrong means reading every object's shape too.
    if not all(shape_resolvable(o, cfg) for o in scene.objects):
        needs, why = True, [*why, "a score needs every shape read, and the shapes are unresolvable in the overview"]
    score = pointwise_score(n_align, n_quality)
    kinds = "+".join(sorted({_family(i["kind"]) for i in infos})) or "clean"
    return PreferenceRecord(
        **it.base(),
        task="pointwise",
        modality="image",
        prompt=describe(desc, rng),
        candidates=[it.save_image(scene, "1")],
        score=float(score),
        category=f"pointwise/{kinds}",
        metadata=_world_meta(desc, [scene], [infos], needs, why or ["no defect"]),
    )


QUESTION_KINDS = ("shape_of_colour", "colour_of_shape", "count")


def make_answer(it: WorldItem) -> PreferenceRecord:
    cfg, rng = it.cfg, it.rng
    desc = it.description()
    scene = layout(desc, cfg.canvas, _sizes(cfg), rng, cfg.spread)
    small = not all(shape_resolvable(o, cfg) for o in scene.objects)
    colours = Counter(o.colour for o in scene.objects)
    shapes = Counter(o.shape for o in scene.objects)
    kind = rng.choice(QUESTION_KINDS)
    if kind == "shape_of_colour":
        unique = [c for c, n in colours.items() if n == 1]
        if not unique:
            kind = "count"
        else:
            colour = rng.choice(unique)
            truth = next(o.shape for o in scene.objects if o.colour == colour)
            wrong = rng.choice([s for s in SHAPES if s != truth])
            question = rng.choice(("What shape is the {c} object?", "Which shape is drawn in {c}?")).format(c=colour)
            answers = [f"The {colour} object is {article_for(x)} {x}." for x in (truth, wrong)]
            needs, why = small, "shape must be read" + (" and is unresolvable in the overview" if small else "")
            q = {"kind": kind, "colour": colour, "answers": [truth, wrong]}
    if kind == "colour_of_shape":
        unique = [s for s, n in shapes.items() if n == 1]
        if not unique:
            kind = "count"
        else:
            shape = rng.choice(unique)
            truth = next(o.colour for o in scene.objects if o.shape == shape)
            wrong = rng.choice([c for c in PALETTE if c != truth])
            question = rng.choice(("What colour is the {s}?", "Which colour does the {s} have?")).format(s=shape)
            answers = [f"The {shape} is {x}." for x in (truth, wrong)]
            needs = small and len(colours) > 1
            why = "the object is found by its shape" + (", unresolvable in the overview" if needs else "")
            q = {"kind": kind, "shape": shape, "answers": [truth, wrong]}
    if kind == "count":
        colour, shape, n = rng.choice(desc.groups)
        wrong = rng.choice([m for m in (n - 1, n + 1) if m >= 0])
        question = rng.choice(("How many {p} are there?", "Count the {p} in the image.")).format(
            p=f"{colour} {PLURAL[shape]}"
        )

        def say(m: int) -> str:
            return f"There {'is' if m == 1 else 'are'} {NUMBER_WORDS.get(m, str(m)) if m else 'no'} {colour} {shape if m == 1 else PLURAL[shape]}."

        answers = [say(n), say(wrong)]
        needs = small and _shares_colour(desc, desc.groups.index((colour, shape, n)))
        why = "count by shape" + (" with shapes unresolvable in the overview" if needs else "; colour suffices")
        q = {"kind": kind, "colour": colour, "shape": shape, "answers": [n, wrong]}
    preferred = rng.randrange(2)
    if preferred == 1:
        answers = answers[::-1]
        q["answers"] = q["answers"][::-1]
    return PreferenceRecord(
        **it.base(),
        task="pairwise",
        modality="answer",
        prompt=question,
        candidates=answers,
        media=[it.save_image(scene, "q")],
        media_kind="image",
        preferred=preferred,
        category=f"answer/{kind}",
        metadata=_world_meta(desc, [scene], [], needs, [why], question=q),
    )


# -------------------------------------------------------------------------------------------------------------------
# Video

DIRECTIONS = {"right": (1, 0), "left": (-1, 0), "down": (0, 1), "up": (0, -1)}
GLITCHES = ("flicker", "disappear", "jump", "shape_change")


def make_movers(it: WorldItem) -> list[dict[str, Any]]:
    cfg, rng = it.cfg, it.rng
    n = rng.randint(*cfg.video_objects)
    # Distinct colours (an object is tracked by its colour) and one axis of motion for all, in separate
    # lanes, so paths never cross and a missing object is a real disappearance, not an occlusion.
    combos = []
    if it.split == "compositional":  # at least one mover shows a combination never seen in training
        combos.append(rng.choice(sorted(_held_out())))
    for colour, shape in rng.sample(it.combos, len(it.combos)):
        if len(combos) >= n:
            break
        if colour not in {c for c, _ in combos}:
            combos.append((colour, shape))
    c = cfg.video_canvas
    horizontal = rng.random() < 0.5
    lanes = rng.sample([0.3, 0.7], n) if n > 1 else [rng.choice([0.3, 0.5, 0.7])]
    movers = []
    for (colour, shape), lane in zip(combos, lanes):
        direction = rng.choice(["right", "left"] if horizontal else ["down", "up"])
        size = rng.uniform(*cfg.video_object_size) * c
        dx, dy = DIRECTIONS[direction]
        start, end = 0.18 * c, 0.82 * c
        if dx:
            p0, p1 = ((start, lane * c), (end, lane * c)) if dx > 0 else ((end, lane * c), (start, lane * c))
        else:
            p0, p1 = ((lane * c, start), (lane * c, end)) if dy > 0 else ((lane * c, end), (lane * c, start))
        movers.append({"colour": colour, "shape": shape, "direction": direction, "size": size, "p0": p0, "p1": p1})
    return movers


def frame_scene(movers: list[dict[str, Any]], t: float, canvas: int) -> Scene:
    objs = []
    for m in movers:
        x = m["p0"][0] + (m["p1"][0] - m["p0"][0]) * t
        y = m["p0"][1] + (m["p1"][1] - m["p0"][1]) * t
        objs.append(Obj(m["shape"], m["colour"], x, y, m["size"]))
    return Scene(canvas, objs)


def _clip_frames(movers, cfg: WorldConfig, glitch: dict[str, Any] | None) -> list[Image.Image]:
    frames = []
    T = cfg.clip_frames
    for f in range(T):
        scene = frame_scene(movers, f / (T - 1), cfg.video_canvas)
        if glitch is not None and f in glitch["frames"]:
            o = scene.objects[glitch["object"]]
            if glitch["kind"] == "flicker":
                o.colour = glitch["now"]
            elif glitch["kind"] == "shape_change":
                o.shape = glitch["now"]
            elif glitch["kind"] == "jump":
                o.x, o.y = glitch["now"]
            elif glitch["kind"] == "disappear":
                scene.objects.pop(glitch["object"])
        frames.append(render(scene))
    return frames


def video_prompt(movers: list[dict[str, Any]], rng: random.Random) -> str:
    verbs = {"right": "to the right", "left": "to the left", "down": "downward", "up": "upward"}
    parts = [f"{article_for(m['colour'])} {m['colour']} {m['shape']} moves {verbs[m['direction']]}" for m in movers]
    text = " while ".join(parts) if len(parts) == 2 else parts[0]
    text = rng.choice(("", "A video where ", "A clip in which ")) + text
    return text[0].upper() + text[1:] + ", steadily, on a plain background."


def make_video_pair(it: WorldItem) -> PreferenceRecord:
    cfg, rng = it.cfg, it.rng
    movers = make_movers(it)
    T = cfg.clip_frames
    overview = set(sample_frame_indices(T, cfg.visual.overview_frames))
    visible = rng.random() < cfg.visible_glitch_prob
    length = rng.randint(*cfg.glitch_frames)
    starts = [s for s in range(0, T - length + 1) if bool(set(range(s, s + length)) & overview) == visible]
    start = rng.choice(starts)
    frames_hit = list(range(start, start + length))
    k = rng.randrange(len(movers))
    m = movers[k]
    kind = rng.choice(GLITCHES)
    glitch: dict[str, Any] = {"kind": kind, "object": k, "frames": frames_hit}
    if kind == "flicker":
        glitch["now"] = rng.choice([c for c in PALETTE if c != m["colour"] and c not in {x["colour"] for x in movers}])
    elif kind == "shape_change":
        glitch["now"] = rng.choice([s for s in SHAPES if s != m["shape"]])
    elif kind == "jump":
        c = cfg.video_canvas
        t = frames_hit[0] / (T - 1)
        x = m["p0"][0] + (m["p1"][0] - m["p0"][0]) * t
        y = m["p0"][1] + (m["p1"][1] - m["p0"][1]) * t
        dx, dy = DIRECTIONS[m["direction"]]
        off = 2.2 * m["size"]
        # Jump across the direction of motion, towards the side with room.
        nx, ny = (x, y + (off if y < c / 2 else -off)) if dx else (x + (off if x < c / 2 else -off), y)
        glitch["now"] = (nx, ny)
    preferred = rng.randrange(2)
    files = []
    for k_ in range(2):
        g = None if k_ == preferred else glitch
        name = f"{it.id}_{k_ + 1}.mp4"
        save_video(_clip_frames(movers, cfg, g), it.media_dir / name, fps=cfg.fps)
        files.append(f"{it.rel}/{name}")
    needs = not visible
    why = f"glitch on frames {frames_hit}; overview frames {sorted(overview)}"
    return PreferenceRecord(
        **it.base(),
        task="pairwise",
        modality="video",
        prompt=video_prompt(movers, rng),
        candidates=files,
        preferred=preferred,
        category=f"video/{kind}",
        metadata={
            "world": {
                "movers": movers,
                "canvas": cfg.video_canvas,
                "glitch": glitch,
                "clip_frames": T,
                "fps": cfg.fps,
                "defects": [None, glitch] if preferred == 0 else [glitch, None],
                "needs_tool": needs,
                "needs_tool_reason": why,
            }
        },
    )


BUILDERS = {
    "image": make_image_pair,
    "answer": make_answer,
    "video": make_video_pair,
    "multi": make_multi,
    "pointwise": make_pointwise,
}


def build_item(cfg: WorldConfig, kind: str, split: str, index: int, seed: int, media_dir: Path, rel: str):
    """One item; retries with a derived seed when a random layout is impossible (rare)."""
    for attempt in range(20):
        it = WorldItem(cfg, split, index, seed + 7919 * attempt, media_dir, rel)
        it.id = f"synth-{split}-{index:06d}"
        try:
            rec = BUILDERS[kind](it)
        except LayoutError:
            continue
        rec.metadata["world"]["kind"] = kind
        rec.metadata["world"]["seed"] = seed + 7919 * attempt
        return rec
    raise LayoutError(f"could not build {kind} item {split}/{index} in 20 attempts; loosen the world's sizes")


def plan_kinds(n: int, kinds: list[str], mix: dict[str, float], seed: int, split: str) -> list[str]:
    """Exactly proportional kinds for ``n`` items, shuffled deterministically."""
    weights = {k: mix.get(k, 0.0) for k in kinds}
    total = sum(weights.values()) or 1.0
    counts = {k: int(n * w / total) for k, w in weights.items()}
    rest = n - sum(counts.values())
    for k in sorted(weights, key=lambda k: -weights[k])[:rest]:
        counts[k] += 1
    plan = [k for k in kinds for _ in range(counts[k])]
    random.Random(f"{seed}/{split}/plan").shuffle(plan)
    return plan


def split_sizes(n: int) -> dict[str, int]:
    """``n`` is the train size; val, test and compositional get a tenth each (at least 8)."""
    small = max(8, n // 10)
    return {"train": n, "val": small, "test": small, "compositional": small}


def _work(args):
    cfg, kind, split, index, seed, media_dir, rel = args
    return build_item(cfg, kind, split, index, seed, Path(media_dir), rel)


def generate_world(
    out: str | os.PathLike,
    n: int = 1000,
    seed: int = 0,
    kinds: list[str] | None = None,
    cfg: WorldConfig | None = None,
    splits: dict[str, int] | None = None,
    workers: int = 1,
    progress: bool = False,
    force: bool = False,
) -> dict[str, Any]:
    """Write ``out/{split}.jsonl`` records and their media under ``out/media/{split}/``; returns (and writes)
    ``out/manifest.json`` with counts and timings.

    A folder that already holds this exact world (same seed, kinds, config and splits, finished) is left as it is
    (the manifest comes back with ``"reused": True``); one holding another world is refused unless ``force``, which
    deletes the old world's records and media first, so no stale file outlives it."""
    cfg = cfg or WorldConfig()
    kinds = list(kinds or KINDS)
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ValueError(f"unknown kind(s) {bad}; choose from {', '.join(KINDS)}")
    out = Path(out)
    splits = splits or split_sizes(n)
    identity = {"seed": seed, "kinds": kinds, "config": cfg.to_dict(), "splits": splits}
    outputs = [f"{split}.jsonl" for split in dict.fromkeys([*SPLITS, *splits])]
    folder = RunFolder(out, "data synth", identity, [*outputs, "media", "manifest.json", "mmreward_judge.json"])
    previous = folder.open(force=force, write=False)
    if previous is not None and (out / "manifest.json").is_file():
        return json.loads((out / "manifest.json").read_text()) | {"reused": True}
    folder.save()
    t0 = time.perf_counter()
    jobs = []
    for split, size in splits.items():
        media_dir = out / "media" / split
        media_dir.mkdir(parents=True, exist_ok=True)
        for i, kind in enumerate(plan_kinds(size, kinds, cfg.mix, seed, split)):
            jobs.append((cfg, kind, split, i, seed, str(media_dir), f"media/{split}"))
    bar = None
    if progress:
        from tqdm.auto import tqdm  # noqa: PLC0415

        bar = tqdm(total=len(jobs), desc="synth", unit="item")
    results = []
    if workers > 1:
        from multiprocessing import get_context  # noqa: PLC0415

        with get_context("spawn").Pool(workers) as pool:
            for rec in pool.imap(_work, jobs, chunksize=16):
                results.append(rec)
                if bar:
                    bar.update()
    else:
        for job in jobs:
            results.append(_work(job))
            if bar:
                bar.update()
    if bar:
        bar.close()
    by_split: dict[str, list[PreferenceRecord]] = {s: [] for s in splits}
    for rec in results:
        by_split[rec.subset].append(rec)
    for split, recs in by_split.items():
        write_records(recs, out / f"{split}.jsonl")
    items_s = time.perf_counter() - t0
    manifest = {
        "seed": seed,
        "kinds": kinds,
        "config": cfg.to_dict(),
        "splits": {s: len(r) for s, r in by_split.items()},
        "by_category": {s: dict(sorted(Counter(r.category for r in recs).items())) for s, recs in by_split.items()},
        "needs_tool": {s: sum(r.metadata["world"]["needs_tool"] for r in recs) for s, recs in by_split.items()},
        "seconds": round(items_s, 2),
        "items_per_minute": round(len(results) / max(items_s, 1e-9) * 60),
    }
    # The visual and tool settings the needs-tool flags assume: stages judge the world with them (settings_file).
    save_engine_settings(out, EngineSettings(visual=WORLD_VISUAL, tools=WORLD_TOOLS))
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2))
    return manifest


__all__ = [
    "KINDS",
    "SPLITS",
    "WORLD_TOOLS",
    "WORLD_VISUAL",
    "WorldConfig",
    "build_item",
    "generate_world",
    "pointwise_score",
    "RELATIONS",
]
