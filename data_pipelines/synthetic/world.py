"""The objects, scenes and defects of the synthetic visual preference world, and how they are drawn.

A *scene* is a few small coloured shapes on a plain canvas, grouped in a compact cluster. A *prompt*
describes a scene (what objects, how many, one spatial relation). A *defect* changes one thing about a
scene (an object's colour or shape, the count of a group, a relation, or a local quality artifact) so
that the picture no longer matches its prompt, or looks worse. Everything here is pure and seeded by the
caller's ``random.Random``.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

BACKGROUND = (238, 238, 232)

# Colours come in near pairs (red/orange, blue/purple, ...) so that a small object, blended with the
# background when the overview shrinks it, is easy to misread.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (214, 36, 36),
    "orange": (240, 142, 20),
    "yellow": (226, 206, 24),
    "green": (38, 160, 60),
    "blue": (36, 84, 214),
    "purple": (142, 52, 186),
}
SHAPES = ("circle", "square", "triangle", "cross")
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}
PLURAL = {"circle": "circles", "square": "squares", "triangle": "triangles", "cross": "crosses"}
RELATIONS = {"left of": (-1, 0), "right of": (1, 0), "above": (0, -1), "below": (0, 1)}
OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}

# (colour, shape) combinations that never occur outside the compositional split.
HELD_OUT: frozenset[tuple[str, str]] = frozenset(
    {("red", "triangle"), ("blue", "circle"), ("green", "cross"), ("yellow", "square"), ("purple", "triangle")}
)


def allowed_combos(compositional: bool) -> list[tuple[str, str]]:
    """Attribute combinations a split may use: the held-out ones only in the compositional split."""
    every = [(c, s) for c in PALETTE for s in SHAPES]
    return every if compositional else [cs for cs in every if cs not in HELD_OUT]


@dataclass
class Obj:
    shape: str
    colour: str
    x: float  # centre, canvas pixels
    y: float
    size: float  # side of the bounding square, canvas pixels

    @property
    def box(self) -> tuple[float, float, float, float]:
        h = self.size / 2
        return (self.x - h, self.y - h, self.x + h, self.y + h)

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass
class Scene:
    """What is drawn. ``artifacts`` are local quality defects: ``{"kind": "blur"|"noise", "object": i}``."""

    canvas: int
    objects: list[Obj]
    artifacts: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scene:
        return cls(d["canvas"], [Obj(**o) for o in d["objects"]], list(d.get("artifacts", [])))

    def cluster_box(self, pad: float = 0.5) -> tuple[float, float, float, float]:
        """The box around all objects, padded by ``pad`` times the largest object size, in canvas pixels."""
        boxes = [o.box for o in self.objects]
        p = pad * max(o.size for o in self.objects)
        x1, y1 = min(b[0] for b in boxes) - p, min(b[1] for b in boxes) - p
        x2, y2 = max(b[2] for b in boxes) + p, max(b[3] for b in boxes) + p
        c = self.canvas
        return (max(0.0, x1), max(0.0, y1), min(float(c), x2), min(float(c), y2))


@dataclass
class Description:
    """What a prompt asks for: groups of identical objects and at most one relation between two groups."""

    groups: list[tuple[str, str, int]]  # (colour, shape, count)
    relation: tuple[int, str, int] | None = None  # (group a, "left of", group b): a is left of b

    def to_dict(self) -> dict[str, Any]:
        return {"groups": [list(g) for g in self.groups], "relation": list(self.relation) if self.relation else None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Description:
        rel = d.get("relation")
        return cls([tuple(g) for g in d["groups"]], tuple(rel) if rel else None)


# --------------------------------------------------------------------------------------------------------------------
# Text


def article_for(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def group_phrase(colour: str, shape: str, count: int, article: bool = True) -> str:
    if count == 1:
        return f"{article_for(colour) + ' ' if article else ''}{colour} {shape}"
    return f"{NUMBER_WORDS.get(count, str(count))} {colour} {PLURAL[shape]}"


def join_phrases(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


PROMPT_OPENERS = ("", "An image of ", "A picture showing ", "A simple drawing of ", "A plain background with ")


def describe(desc: Description, rng: random.Random) -> str:
    """The text-to-image prompt for a description, with varied wording."""
    phrases = [group_phrase(c, s, n) for c, s, n in desc.groups]
    text = join_phrases(phrases)
    if desc.relation is not None:
        a, rel, b = desc.relation
        ca, sa, _ = desc.groups[a]
        cb, sb, _ = desc.groups[b]
        text += rng.choice((", with the {a} {r} the {b}", "; the {a} is {r} the {b}", ", the {a} placed {r} the {b}"))
        text = text.format(a=f"{ca} {sa}", r=rel, b=f"{cb} {sb}")
    opener = rng.choice(PROMPT_OPENERS)
    text = opener + text if opener else text[0].upper() + text[1:]
    return text + "."


# --------------------------------------------------------------------------------------------------------------------
# Layout


class LayoutError(RuntimeError):
    pass


def layout(
    desc: Description,
    canvas: int,
    size_range: tuple[float, float],
    rng: random.Random,
    spread: float = 1.2,
    tries: int = 200,
) -> Scene:
    """Place the described objects in a compact cluster that satisfies the relation.

    Objects have sides drawn from ``size_range`` (fractions of the canvas) and sit within about ``spread``
    object sizes of each other, never overlapping.
    """
    items = [(c, s) for c, s, n in desc.groups for _ in range(n)]
    group_of = [gi for gi, (_, _, n) in enumerate(desc.groups) for _ in range(n)]
    for _ in range(tries):
        size = rng.uniform(*size_range) * canvas
        sizes = [size * rng.uniform(0.9, 1.1) for _ in items]
        step = size * (1.0 + spread)
        k = len(items)
        cols = max(2, math.ceil(math.sqrt(k)))
        cells = rng.sample([(i % cols, i // cols) for i in range(cols * cols)], k)
        margin = size
        span = step * cols
        ox = rng.uniform(margin, canvas - margin - span)
        oy = rng.uniform(margin, canvas - margin - span)
        objs = []
        for (colour, shape), (cx, cy), sz in zip(items, cells, sizes):
            jx, jy = rng.uniform(-0.2, 0.2) * size, rng.uniform(-0.2, 0.2) * size
            objs.append(Obj(shape, colour, ox + (cx + 0.5) * step + jx, oy + (cy + 0.5) * step + jy, sz))
        if not all(0 <= v <= canvas for o in objs for v in o.box):
            continue
        if desc.relation is not None and not relation_holds(objs, group_of, desc.relation):
            continue
        return Scene(canvas, objs)
    raise LayoutError(f"could not place {desc} on a {canvas}px canvas; use fewer or smaller objects")


def relation_holds(objs: list[Obj], group_of: list[int], relation: tuple[int, str, int]) -> bool:
    """Every object of group a is strictly on the named side of every object of group b."""
    a, rel, b = relation
    dx, dy = RELATIONS[rel]
    for oa, ga in zip(objs, group_of):
        for ob, gb in zip(objs, group_of):
            if ga == a and gb == b:
                d = (oa.x - ob.x) * dx + (oa.y - ob.y) * dy
                if d <= 0.5 * max(oa.size, ob.size):
                    return False
    return True


def group_index(desc: Description) -> list[int]:
    return [gi for gi, (_, _, n) in enumerate(desc.groups) for _ in range(n)]


# --------------------------------------------------------------------------------------------------------------------
# Drawing


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[float, float, float, float], fill) -> None:
    x1, y1, x2, y2 = box
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([((x1 + x2) / 2, y1), (x2, y2), (x1, y2)], fill=fill)
    elif shape == "cross":
        w, h = (x2 - x1) / 3, (y2 - y1) / 3
        draw.rectangle((x1 + w, y1, x2 - w, y2), fill=fill)
        draw.rectangle((x1, y1 + h, x2, y2 - h), fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}")


SUPERSAMPLE = 4


def _paste_shape(img: Image.Image, shape: str, box: tuple[float, float, float, float], colour) -> None:
    """Draw one shape anti-aliased: its mask is drawn at 4x in a small patch and filtered down, so small
    objects keep their true geometry (a 9-pixel cross still has thin arms)."""
    x1, y1, x2, y2 = box
    px1, py1 = int(math.floor(x1)) - 1, int(math.floor(y1)) - 1
    pw, ph = int(math.ceil(x2)) + 2 - px1, int(math.ceil(y2)) + 2 - py1
    k = SUPERSAMPLE
    mask = Image.new("L", (pw * k, ph * k), 0)
    draw_shape(ImageDraw.Draw(mask), shape, ((x1 - px1) * k, (y1 - py1) * k, (x2 - px1) * k, (y2 - py1) * k), 255)
    mask = mask.resize((pw, ph), Image.Resampling.BOX)
    img.paste(Image.new("RGB", (pw, ph), colour), (px1, py1), mask)


def render(scene: Scene, seed: int = 0, size: int | None = None) -> Image.Image:
    """Draw a scene; ``size`` renders at another resolution (coordinates scale with it)."""
    out = size or scene.canvas
    k = out / scene.canvas
    img = Image.new("RGB", (out, out), BACKGROUND)
    for o in scene.objects:
        _paste_shape(img, o.shape, tuple(v * k for v in o.box), PALETTE[o.colour])
    for art in scene.artifacts:
        o = scene.objects[art["object"]]
        x1, y1, x2, y2 = (int(round(v * k)) for v in o.box)
        pad = int(round(0.35 * o.size * k))
        region = (max(0, x1 - pad), max(0, y1 - pad), min(out, x2 + pad), min(out, y2 + pad))
        patch = img.crop(region)
        if art["kind"] == "blur":
            patch = patch.filter(ImageFilter.GaussianBlur(radius=max(1.0, 0.12 * o.size * k)))
        elif art["kind"] == "noise":
            # Grey (luminance) grain: it damages the picture without changing any object's hue.
            arr = np.asarray(patch).astype(np.int16)
            noise = np.random.default_rng(seed + art["object"]).normal(0, 40, arr.shape[:2])[..., None]
            patch = Image.fromarray(np.clip(arr + noise, 0, 255).astype(np.uint8))
        else:
            raise ValueError(f"unknown artifact {art['kind']!r}")
        img.paste(patch, region[:2])
    return img


# --------------------------------------------------------------------------------------------------------------------
# Defects

ALIGNMENT_DEFECTS = ("colour", "shape", "count", "relation")
QUALITY_DEFECTS = ("blur", "noise")


def sample_description(
    rng: random.Random, combos: list[tuple[str, str]], n_objects: tuple[int, int], relation_prob: float = 0.5
) -> Description:
    """Groups of distinct (colour, shape) with 1-3 members, ``n_objects`` in total, maybe a relation."""
    total = rng.randint(*n_objects)
    groups: list[tuple[str, str, int]] = []
    used: set[tuple[str, str]] = set()
    left = total
    while left > 0:
        c, s = rng.choice([cs for cs in combos if cs not in used])
        n = rng.randint(1, min(left, 3)) if len(groups) < 2 else left
        groups.append((c, s, n))
        used.add((c, s))
        left -= n
    relation = None
    singles = [i for i, g in enumerate(groups) if g[2] == 1]
    if len(singles) >= 2 and rng.random() < relation_prob:
        a, b = rng.sample(singles, 2)
        relation = (a, rng.choice(list(RELATIONS)), b)
    return Description(groups, relation)


def share_first_colour(desc: Description, rng: random.Random, combos: list[tuple[str, str]]) -> None:
    """Give the second group the first group's colour with another shape (in place, when an allowed one is left),
    so that shape is what tells them apart."""
    c0 = desc.groups[0][0]
    used = {(g[0], g[1]) for g in desc.groups}
    options = [s for s in SHAPES if (c0, s) in set(combos) and (c0, s) not in used]
    if options:
        desc.groups[1] = (c0, rng.choice(options), desc.groups[1][2])


def apply_defect(
    desc: Description,
    scene: Scene,
    kind: str,
    rng: random.Random,
    combos: list[tuple[str, str]],
    size_range: tuple[float, float],
    spread: float,
) -> tuple[Scene, dict[str, Any]]:
    """A copy of ``scene`` (drawn for ``desc``) with one defect; returns it with a description of the defect."""
    objs = [replace(o) for o in scene.objects]
    groups = group_index(desc)
    allowed = set(combos)
    present = {(o.colour, o.shape) for o in objs}
    if kind in ("colour", "shape"):
        i = rng.randrange(len(objs))
        o = objs[i]
        if kind == "colour":
            options = [c for c in PALETTE if c != o.colour and (c, o.shape) in allowed and (c, o.shape) not in present]
        else:
            options = [s for s in SHAPES if s != o.shape and (o.colour, s) in allowed and (o.colour, s) not in present]
        if not options:
            raise LayoutError(f"no {kind} change possible")
        new = rng.choice(options)
        info = {"kind": kind, "object": i, "was": getattr(o, kind), "now": new, "group": groups[i]}
        setattr(o, kind, new)
        return Scene(scene.canvas, objs, list(scene.artifacts)), info
    if kind == "count":
        gi = rng.randrange(len(desc.groups))
        c, s, n = desc.groups[gi]
        if desc.relation is not None and gi in (desc.relation[0], desc.relation[2]):
            delta = 1  # keep relation groups non-empty and singular in spirit: only add
        else:
            delta = rng.choice([-1, 1]) if n > 1 else 1
        new_groups = list(desc.groups)
        new_groups[gi] = (c, s, n + delta)
        # A count defect changes how many objects are drawn: lay the scene out again for the wrong count,
        # keeping the relation when there is one.
        new_scene = layout(Description(new_groups, desc.relation), scene.canvas, size_range, rng, spread)
        return new_scene, {"kind": "count", "group": gi, "was": n, "now": n + delta}
    if kind == "relation":
        a, rel, b = desc.relation
        flipped = Description(desc.groups, (a, OPPOSITE[rel], b))
        new_scene = layout(flipped, scene.canvas, size_range, rng, spread)
        return new_scene, {"kind": "relation", "was": rel, "now": OPPOSITE[rel], "groups": [a, b]}
    if kind in QUALITY_DEFECTS:
        i = rng.randrange(len(objs))
        arts = [*scene.artifacts, {"kind": kind, "object": i}]
        return Scene(scene.canvas, objs, arts), {"kind": kind, "object": i}
    raise ValueError(f"unknown defect {kind!r}")
