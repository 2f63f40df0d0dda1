"""The oracle teacher: a rule-based judge of the synthetic world that writes reference trajectories.

It is a :class:`mmreward.generators.Generator`, so it runs inside the same engine, with the same tools, budgets and
parsers as a model or an API teacher (``data_pipelines.distill`` drives all three the same way). It reads the
*prompt's meaning* from the record (the structured description the prompt was written from) but never the
label or the drawn scenes: what it says about a picture comes from segmenting the pixels it is shown
(:mod:`data_pipelines.synthetic.perception`). With tools it zooms in (``crop`` around the objects it can make
out in the overview, ``select_frames`` over the frames the overview skipped) and perceives the observations;
without tools it decides from the overview alone, which measures how far the overview can go.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
from PIL import Image

from data_pipelines.records import PreferenceRecord
from data_pipelines.synthetic.generate import SHAPE_PX, pointwise_score
from data_pipelines.synthetic.perception import Blob, perceive
from data_pipelines.synthetic.world import NUMBER_WORDS, PALETTE, PLURAL, Description, article_for
from mmreward.generators import GenerationOutput, GenerationRequest
from mmreward.protocol import format_tool_call, format_turn

NOISE_T = 8.0  # mean |pixel - background| around a blob above which it looks noisy
SHARP_T = 0.5  # share of a blob's pixels at full colour below which it looks blurred

_CROP_OBS = re.compile(r"(obs_\d+): crop of (\w+)")
_FRAME_OBS = re.compile(r"(obs_\d+): (video_\d+) frame (\d+)")
_VIDEO_INFO = re.compile(r"(video_\d+): (\d+) frames")
_MAX_CALLS = re.compile(r"at most (\d+) tools")
_ANSWER = re.compile(r"\[Answer (\d+)\]\n(.*)")


def _text_of(messages: list[dict[str, Any]], role: str | None = None) -> str:
    out = []
    for m in messages:
        if role and m["role"] != role:
            continue
        content = m["content"]
        if isinstance(content, str):
            out.append(content)
        else:
            out.extend(p["text"] for p in content if p.get("type") == "text")
    return "\n".join(out)


def shapes_readable(blobs: list[Blob]) -> bool:
    """Shapes can be read when every blob spans at least ``SHAPE_PX`` pixels of the view."""
    return bool(blobs) and min(b.size for b in blobs) >= SHAPE_PX


def evaluate_colours(desc: Description, blobs: list[Blob]) -> list[str]:
    """What can still be checked when shapes are unreadable: how many objects of each colour."""
    want = Counter()
    for c, _, n in desc.groups:
        want[c] += n
    seen = Counter(b.colour for b in blobs)
    issues = []
    for c in sorted(set(want) | set(seen)):
        if want[c] != seen[c]:
            issues.append(f"I count {seen[c]} {c} object(s) where the prompt implies {want[c]}")
    if desc.relation is not None and not issues:
        a, rel, b = desc.relation
        ca, cb = desc.groups[a][0], desc.groups[b][0]
        if ca != cb and want[ca] == 1 and want[cb] == 1:  # the two objects are told apart by colour
            ba = next(x for x in blobs if x.colour == ca)
            bb = next(x for x in blobs if x.colour == cb)
            dx, dy = {"left of": (-1, 0), "right of": (1, 0), "above": (0, -1), "below": (0, 1)}[rel]
            if (ba.centre[0] - bb.centre[0]) * dx + (ba.centre[1] - bb.centre[1]) * dy <= 0:
                issues.append(f"the {ca} object is not {rel} the {cb} object")
    return issues


def count_issues(want: dict[tuple[str, str], int], seen: Counter) -> list[str]:
    """What differs between the (colour, shape) counts a prompt asks for and those seen, as the oracle says it:
    missing groups and wrong counts in the prompt's order, then unexpected objects in the order they were seen."""
    issues = []
    for (c, s), n in want.items():
        m = seen.get((c, s), 0)
        if m == 0:
            issues.append(f"there is no {c} {s}")
        elif m != n:
            noun = s if m == 1 else PLURAL[s]
            issues.append(
                f"there {'is' if m == 1 else 'are'} {NUMBER_WORDS.get(m, m)} {c} {noun}, not {NUMBER_WORDS.get(n, n)}"
            )
    for c, s in seen:
        if (c, s) not in want:
            issues.append(f"there is an unexpected {c} {s}")
    return issues


def evaluate_scene(desc: Description, blobs: list[Blob]) -> tuple[list[str], list[str]]:
    """Alignment issues (prompt vs picture) and quality issues, as short sentences."""
    if not shapes_readable(blobs):
        return evaluate_colours(desc, blobs), []
    want = {(c, s): n for c, s, n in desc.groups}

    # A blurred blob's outline is unreliable: count it as the expected shape of its colour when there is one.
    def key(b: Blob) -> tuple[str, str]:
        if b.sharpness < SHARP_T:
            shapes = [s for (c, s) in want if c == b.colour]
            if len(shapes) == 1:
                return (b.colour, shapes[0])
        return (b.colour, b.shape)

    seen = Counter(key(b) for b in blobs)
    align = count_issues(want, seen)
    if desc.relation is not None and not align:
        a, rel, b = desc.relation
        ga, gb = desc.groups[a], desc.groups[b]
        ba = [x for x in blobs if (x.colour, x.shape) == ga[:2]]
        bb = [x for x in blobs if (x.colour, x.shape) == gb[:2]]
        if ba and bb:
            dx, dy = {"left of": (-1, 0), "right of": (1, 0), "above": (0, -1), "below": (0, 1)}[rel]
            d = (ba[0].centre[0] - bb[0].centre[0]) * dx + (ba[0].centre[1] - bb[0].centre[1]) * dy
            if d <= 0:
                align.append(f"the {ga[0]} {ga[1]} is not {rel} the {gb[0]} {gb[1]}")
    quality = []
    for x in blobs:
        if x.noise > NOISE_T:
            quality.append(f"the area around the {x.colour} {x.shape} is noisy")
        elif x.sharpness < SHARP_T:
            quality.append(f"the {x.colour} {x.shape} is blurred")
    return align, quality


def changed_objects(desc: Description, blobs: list[Blob]) -> int:
    """How many objects differ from the prompt: the larger of the missing and the unexpected counts."""
    seen = Counter((b.colour, b.shape) for b in blobs)
    want = Counter({(c, s): n for c, s, n in desc.groups})
    missing = sum((want - seen).values())
    extra = sum((seen - want).values())
    return max(missing, extra)


# What the oracle says when a view shows what the prompt asks for (it varies the wording).
MATCH_PHRASES = ("That matches the prompt.", "This agrees with the description.", "It shows what was asked.")


def asks_for(desc: Description) -> str:
    """The prompt's objects restated, in the prompt's order: "The prompt asks for a green square and two red circles."

    A finding says it right after what the judge sees, so the match call compares two short lists a few tokens
    apart instead of one list with a prompt hundreds of image tokens back. The tiny judge trained without it made
    the call at chance inside trajectories (scripts/diagnose_judge.py: comparison 0.50, perception 0.67); a copy
    of the prompt's objects is the kind of step a small backbone learns first."""
    return f"The prompt asks for {say_counts(Counter({(c, s): n for c, s, n in desc.groups}))}."


def finding(where: str, blobs: list[Blob], align: list[str], quality: list[str], c: _Ctx, desc: Description) -> str:
    """One view's description, the prompt's objects, each object of either list checked against the other
    (:func:`check_lists`), whether the view shows what was asked (the match call: alignment only), and then its
    quality problems in a sentence of their own, as the oracle writes it.

    The match call leaves quality out so that it follows from the two lists before it alone. With quality folded in
    ("But the area around the green square is noisy."), the tiny judge learned to say a view is noisy whenever it
    was unsure, and its one-crop match call stayed at 0.58, what always saying "But" scores, while what it saw and
    the prompt's objects it restated were right."""
    call = c.pick(*MATCH_PHRASES) if not align else "But " + "; ".join(align) + "."
    want = Counter({(c_, s): n for c_, s, n in desc.groups})
    seen = Counter((b.colour, b.shape) for b in blobs)
    text = f"In {where} I see {say_counts(seen)}. {asks_for(desc)} {check_lists(want, seen)} {call}"
    return text + (f" {QUALITY_LEAD} " + "; ".join(quality) + "." if quality else "")


QUALITY_LEAD = "As for quality,"  # the sentence a finding's quality problems follow

# The two checks a finding makes between its lists before the match call (see check_lists).
CHECK_PROMPT = "Check the prompt objects:"
CHECK_SEEN = "Check the objects I see:"


def check_lists(want: Counter, seen: Counter) -> str:
    """Each of the prompt's objects marked by whether the view shows exactly it, then each object seen marked by
    whether the prompt asks for exactly it: "Check the prompt objects: a green square no; two red circles yes. Check
    the objects I see: an orange square no; two red circles yes." The match call that follows is "no mark says no".

    Why spell it out: the call is whether two lists are equal as multisets, written in different orders. A 2-layer
    model must look every object up in the other list and then combine the results in one step, before the call's
    first token, and the tiny judge did not learn it: with the correct lists teacher-forced, its first view's call was
    right on 0.73 of val pairs, while the lists it wrote itself picked the faithful view on 0.92 of the pairs where
    they singled one out (scripts/diagnose_judge.py, ``implied_verdict``). One mark is one look-up (what an induction
    head does), and the call then only has to notice a "no" among the marks a few tokens back."""

    def marks(items: Counter, other: Counter) -> str:
        return "; ".join(
            f"{say_counts(Counter({k: n}))} {'yes' if other.get(k) == n else 'no'}" for k, n in items.items()
        )

    text = f"{CHECK_PROMPT} {marks(want, seen)}."
    # "nothing I can make out" has no objects to check ("nothing" would also begin with the mark " no")
    return text + (f" {CHECK_SEEN} {marks(seen, want)}." if seen else "")


def _say_blobs(blobs: list[Blob]) -> str:
    return say_counts(Counter((b.colour, b.shape) for b in blobs))


def say_counts(counts: Counter) -> str:
    """``{("green", "square"): 1, ("red", "circle"): 2}`` -> "a green square and two red circles", in its order."""
    if not counts:
        return "nothing I can make out"
    parts = [
        f"{article_for(c)} {c} {s}" if n == 1 else f"{NUMBER_WORDS.get(n, n)} {c} {PLURAL[s]}"
        for (c, s), n in counts.items()
    ]
    return ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]


def _key_word(text: str, kind: str) -> str | None:
    """The word an answer turns on: its count, colour or shape (the first such word in it)."""
    if kind == "count":
        vocab = {*NUMBER_WORDS.values(), "no"}
    elif kind == "colour_of_shape":
        vocab = set(PALETTE)
    else:
        vocab = set(PLURAL)
    return next((w for w in re.findall(r"[a-z]+", text.lower()) if w in vocab), None)


def union_box_1000(blobs: list[Blob], image: Image.Image, pad: float = 0.8) -> list[int]:
    x1 = min(b.box[0] for b in blobs)
    y1 = min(b.box[1] for b in blobs)
    x2 = max(b.box[2] for b in blobs)
    y2 = max(b.box[3] for b in blobs)
    p = max(3.0, pad * max(max(b.box[2] - b.box[0], b.box[3] - b.box[1]) for b in blobs))
    w, h = image.size
    box = [max(0.0, (x1 - p) / w), max(0.0, (y1 - p) / h), min(1.0, (x2 + p) / w), min(1.0, (y2 + p) / h)]
    out = [round(v * 1000) for v in box]
    # Keep the box at least 8% of the side, so the crop is a real zoom and passes the tool's minimum.
    for lo, hi in ((0, 2), (1, 3)):
        if out[hi] - out[lo] < 80:
            c = (out[hi] + out[lo]) / 2
            out[lo], out[hi] = max(0, round(c - 40)), min(1000, round(c + 40))
    return out


# How the oracle uses ``crop`` on image items when tools are on:
# * ``zoom``: only where the overview's objects are too small to read, around them, and describe every view at the
#   end (what a capable judge does);
# * ``each``: look at every candidate in turn, image_1 first, and describe each view in the turn right after it
#   arrives; the box is the whole image (a crop comes back at the crop budget, finer than the overview) unless
#   the shapes are unreadable in the overview, then the zoom box.
#   Every description is then about the latest picture, the one lookup the tiny backbone learns at once
#   (scripts/probe_binding.py), and the verdict follows from text already written; a constant box is one the
#   tiny backbone can emit (it cannot learn where objects are).
CROP_POLICIES = ("zoom", "each")
FULL_BOX = [0, 0, 1000, 1000]


def each_box(overview_blobs: list[Blob], overview: Image.Image) -> list[int]:
    """The box the ``each`` policy crops: the whole image when the overview's shapes can be read, else a zoom
    around its objects."""
    return FULL_BOX if shapes_readable(overview_blobs) else union_box_1000(overview_blobs, overview)


def _crop_order(crops: dict[str, str]) -> list[str]:
    """The cropped images (``{image: obs}``) in the order their crops arrived."""
    return sorted(crops, key=lambda n: int(crops[n].split("_")[1]))


class OracleTeacher:
    """Writes turns for synthetic-world items. ``record_of(key)`` returns the record a trajectory is about."""

    def __init__(
        self,
        record_of: Callable[[str], PreferenceRecord] | dict[str, PreferenceRecord],
        seed: int = 0,
        frames_per_call: int = 4,
        crop_policy: str = "zoom",
    ) -> None:
        if crop_policy not in CROP_POLICIES:
            raise ValueError(f"crop_policy must be one of {', '.join(CROP_POLICIES)}, not {crop_policy!r}")
        if isinstance(record_of, dict):
            table = record_of
            self.record_of = lambda key: table[key.split("|")[0]]
        else:
            self.record_of = record_of
        self.seed = seed
        self.frames_per_call = frames_per_call
        self.crop_policy = crop_policy
        self.name = "oracle"

    # ----------------------------------------------------------------------------------------------------------------
    def generate(self, requests: list[GenerationRequest]) -> list[GenerationOutput]:
        outs = []
        for r in requests:
            text = self.turn(r)
            outs.append(GenerationOutput(text=text, prompt_tokens=0, completion_tokens=len(text.split())))
        return outs

    def turn(self, r: GenerationRequest) -> str:
        rec = self.record_of(r.key)
        world = rec.metadata.get("world")
        if world is None:
            raise ValueError(f"record {rec.id!r} is not from the synthetic world; the oracle cannot judge it")
        rng = random.Random(f"{self.seed}/{r.key}/{r.turn}")
        images = dict(zip(r.image_names, r.images))
        ctx = _Ctx(r, images, rng)
        if rec.modality == "video":
            return self._video(rec, world, ctx)
        return self._image(rec, world, ctx)

    # ----------------------------------------------------------------------------------------------------------------
    def _image(self, rec: PreferenceRecord, world: dict[str, Any], c: _Ctx) -> str:
        desc = Description.from_dict(world["description"])
        names = [n for n in c.images if re.fullmatch(r"image_\d+", n)]
        crops = {src: obs for obs, src in _CROP_OBS.findall(c.tool_text)}
        overview = {n: perceive(c.images[n], min_area=1) for n in names}
        if self.crop_policy == "each" and c.tools_on and len(names) > 1:
            turn = self._crop_each(desc, c, names, crops, overview)
            if turn is not None:
                return turn
        elif c.tools_on and c.calls_left > 0:
            for n in names:
                if n in crops or not overview[n]:
                    continue
                if max(b.size for b in overview[n]) >= SHAPE_PX * 2:
                    continue  # big enough to read in the overview
                box = union_box_1000(overview[n], c.images[n])
                think = c.pick(
                    "In the overview the objects of {n} are only a few pixels wide; I can see {k} small blob(s) but not "
                    "their shapes. I will zoom in on them.",
                    "{n} shows {k} tiny object(s); to check them against the text I need a closer look, so I crop the "
                    "region around them.",
                    "The shapes in {n} are too small to read at this size. Let me crop around the {k} object(s).",
                ).format(n=n, k=len(overview[n]))
                return format_turn(think, tool=("crop", {"image": n, "bbox_2d": box}))
        views = {
            n: (crops.get(n), perceive(c.images[crops[n]], denoise=True) if n in crops else overview[n]) for n in names
        }
        lines = []
        verdicts = {}
        # The ``each`` policy described every crop but the latest in the turn after it arrived.
        described = set(_crop_order(crops)[:-1]) if self.crop_policy == "each" else set()
        # Describe the most recently shown view first. A student copies this order, and the one lookup the tiny
        # backbone learns at once is "the latest picture" (scripts/probe_binding.py: 1.00, against 0.5 for "the
        # picture labelled image_1"); its first finding is the one its later text leans on. The findings and the
        # verdict do not depend on the order.
        shown = list(c.images)
        for n in sorted(views, key=lambda n: shown.index(views[n][0] or n), reverse=True):
            obs, blobs = views[n]
            where = f"{obs} (the crop of {n})" if obs else n
            align, quality = evaluate_scene(desc, blobs) if rec.modality != "answer" else ([], [])
            verdicts[n] = (align, quality, blobs)
            if n in described:
                continue
            if rec.modality == "answer":
                lines.append(f"In {where} I see {_say_blobs(blobs)}.")
                continue
            lines.append(finding(where, blobs, align, quality, c, desc))
        if rec.modality == "answer":
            return self._answer_turn(rec, world, c, lines, verdicts[names[0]][2])
        if rec.task == "pointwise":
            align, quality, _ = verdicts[names[0]]
            blobs = verdicts[names[0]][2]
            n_align = changed_objects(desc, blobs) if shapes_readable(blobs) else len(align)
            score = pointwise_score(n_align, int(bool(quality)))
            reason = (
                " ".join(lines)
                + f" With {len(align)} alignment and {len(quality)} quality problem(s), I score it {score}."
            )
            return format_turn(reason, answer=f"Score: {score}")
        pen = {n: 2 * len(a) + len(q) for n, (a, q, _) in verdicts.items()}
        allow_tie = rec.allow_tie

        def pick_winner(scores: dict[str, float]) -> str:
            a, b = scores[names[0]], scores[names[1]]
            if a == b:
                if allow_tie:
                    return "Tie"
                return f"Image {c.rng.randint(1, 2)} is better"
            return "Image 1 is better" if a < b else "Image 2 is better"

        overall = pick_winner(pen)
        if rec.task == "multi":
            align = pick_winner({n: len(v[0]) for n, v in verdicts.items()})
            quality = pick_winner({n: len(v[1]) for n, v in verdicts.items()})
            body = f"alignment: {align}\nquality: {quality}\nOverall: {overall}"
            return format_turn(
                " ".join(lines) + " " + c.pick("Weighing alignment above quality:", "So, per dimension:"), answer=body
            )
        close = (
            "" if pen[names[0]] != pen[names[1]] else " I cannot find a difference between them, so this is a guess."
        )
        return format_turn(" ".join(lines) + close, answer=overall)

    def _crop_each(self, desc: Description, c: _Ctx, names: list[str], crops: dict[str, str], overview):
        """The next crop of the ``each`` policy, after describing the view that arrived last; None when done."""
        todo = [n for n in names if n not in crops]
        if not todo or c.calls_left <= 0:
            return None
        n = todo[0]
        box = each_box(overview[n], c.images[n])
        think = c.pick("I look at {n} closely.", "Now {n}: I take a closer look.", "Let me look at {n}.").format(n=n)
        done = _crop_order(crops)
        if done:  # describe the crop that arrived last before asking for the next
            src = done[-1]
            blobs = perceive(c.images[crops[src]], denoise=True)
            align, quality = evaluate_scene(desc, blobs)
            think = finding(f"{crops[src]} (the crop of {src})", blobs, align, quality, c, desc) + " " + think
        return format_turn(think, tool=("crop", {"image": n, "bbox_2d": box}))

    def _answer_turn(self, rec, world, c: _Ctx, lines: list[str], blobs: list[Blob]) -> str:
        q = world["question"]
        readable = shapes_readable(blobs)
        if not readable:
            # Shapes are unreadable here: answer what colour alone can tell, else admit a guess.
            colours = Counter(b.colour for b in blobs)
            if q["kind"] == "count" and sum(1 for c, s_, _ in world["description"]["groups"] if c == q["colour"]) == 1:
                blobs = [replace(b, shape=q["shape"]) if b.colour == q["colour"] else b for b in blobs]
            elif q["kind"] == "colour_of_shape" and len(colours) == 1:
                blobs = [replace(b, shape=q["shape"]) for b in blobs[:1]]
            else:
                k = c.rng.choice(sorted(dict(_ANSWER.findall(c.user_text))) or ["1"])
                return format_turn(
                    " ".join(lines) + " The shapes are too small to read here, so I can only guess.",
                    answer=f"Answer {k} is better",
                )
        if q["kind"] == "shape_of_colour":
            found = [b.shape for b in blobs if b.colour == q["colour"]]
            value = found[0] if found else None
        elif q["kind"] == "colour_of_shape":
            found = [b.colour for b in blobs if b.shape == q["shape"]]
            value = found[0] if found else None
        else:
            value = sum(1 for b in blobs if (b.colour, b.shape) == (q["colour"], q["shape"]))
        if isinstance(value, int):
            value = NUMBER_WORDS.get(value, str(value)) if value else "no"
        answers = dict(_ANSWER.findall(c.user_text))
        match = None
        for k, text in answers.items():
            if value and value in set(re.findall(r"[a-z]+", text.lower())):
                match = k
        reason = " ".join(lines)
        if match is None:
            k = c.rng.choice(sorted(answers) or ["1"])
            return format_turn(
                reason + " Neither answer matches what I see; I pick one.", answer=f"Answer {k} is better"
            )
        # Check the answer shown last, then decide: "which answer says X" is a lookup by label that the tiny
        # backbone cannot learn (scripts/probe_binding.py), "what does the latest answer say" is one it can.
        last = list(answers)[-1]
        if match == last:
            tail = f" The answer is {value}. Answer {last} says {value} too, so Answer {last} is right."
        else:
            said = _key_word(answers[last], q["kind"]) or "something else"
            tail = f" The answer is {value}. Answer {last} says {said}, which is wrong, so Answer {match} is right."
        return format_turn(reason + tail, answer=f"Answer {match} is better")

    # ----------------------------------------------------------------------------------------------------------------
    def _video(self, rec: PreferenceRecord, world: dict[str, Any], c: _Ctx) -> str:
        movers = world["movers"]
        info = {v: int(n) for v, n in _VIDEO_INFO.findall(c.user_text)}
        frames: dict[str, dict[int, Image.Image]] = {v: {} for v in info}
        for name, im in c.images.items():
            m = re.fullmatch(r"(video_\d+)_frame_(\d+)", name)
            if m:
                frames[m.group(1)][int(m.group(2))] = im
        checked: dict[str, set[int]] = {v: set() for v in info}
        for obs, video, index in _FRAME_OBS.findall(c.tool_text):
            if obs in c.images:
                frames[video][int(index)] = c.images[obs]
            else:  # a visual memory window dropped it; had it shown a glitch, the verdict would have come then
                checked[video].add(int(index))
        canvas = world.get("canvas", 160)
        found = {v: _glitches(movers, fr, canvas, info.get(v)) for v, fr in frames.items()}
        bad = [v for v, g in found.items() if g]
        if len(bad) == 1:
            v = bad[0]
            other = next(x for x in info if x != v)
            detail = "; ".join(f"frame {i}: {g}" for i, g in found[v][:2])
            text = c.pick("Looking at {v}, {d}.", "{v} has a glitch ({d}).", "I notice a problem in {v}: {d}.").format(
                v=v, d=detail
            )
            return format_turn(
                text + f" {other} stays consistent in the frames I saw.", answer=f"Video {other[-1]} is better"
            )
        if c.tools_on and c.calls_left > 0 and not bad:
            for v in info:
                unseen = [i for i in range(info[v]) if i not in frames[v] and i not in checked[v]]
                if not unseen:
                    # Every frame of this video checked and clean: it is the better one.
                    other = next(x for x in info if x != v)
                    text = c.pick(
                        "I have now seen every frame of {v} and it stays consistent throughout, while nothing rules "
                        "out a glitch in {o}.",
                        "All frames of {v} are clean: the objects keep their colour and shape and move steadily.",
                    ).format(v=v, o=other)
                    return format_turn(text, answer=f"Video {v[-1]} is better")
                pick = unseen[: self.frames_per_call]
                think = c.pick(
                    "The overview frames of {v} look fine, but a short glitch could hide between them. "
                    "I check frames {f}.",
                    "Nothing is wrong in the sampled frames of {v}; let me look at the frames in between: {f}.",
                    "To be sure about {v}, I inspect the frames the overview skipped ({f}).",
                ).format(v=v, f=pick)
                return format_turn(think, tool=("select_frames", {"video": v, "frames": pick}))
        if len(bad) == 2:
            return format_turn(
                "Both videos have glitches; neither is clearly better, so I guess.",
                answer=f"Video {c.rng.randint(1, 2)} is better",
            )
        return format_turn(
            c.pick(
                "I see no glitch in either video in the frames I looked at; I have to guess.",
                "Both clips look consistent in what I saw, so this is a guess.",
            ),
            answer=f"Video {c.rng.randint(1, 2)} is better",
        )


def _glitches(
    movers: list[dict[str, Any]], frames: dict[int, Image.Image], canvas: int, n_frames: int | None = None
) -> list[tuple[int, str]]:
    """Frames where the clip breaks the prompt: a missing object, a wrong colour or shape, or a jump; and, given the
    clip's length, an object that does not travel the way the prompt says (a frozen clip)."""
    out = []
    colours = {m["colour"]: m for m in movers}
    tracks: dict[str, list[tuple[int, float, float, float]]] = {m["colour"]: [] for m in movers}
    for i in sorted(frames):
        im = frames[i]
        blobs = perceive(im, min_area=4, denoise=im.width >= 128)
        k = canvas / im.width  # frame pixels to canvas pixels (the video canvas), for the jump test
        seen = {b.colour: b for b in blobs}
        for b in blobs:
            if b.colour not in colours:
                out.append((i, f"an unexpected {b.colour} {b.shape} appears"))
            elif b.shape != colours[b.colour]["shape"]:
                out.append((i, f"the {b.colour} {colours[b.colour]['shape']} turns into a {b.shape}"))
        for colour, m in colours.items():
            if colour not in seen:
                if not any(b.colour not in colours for b in blobs):
                    out.append((i, f"the {colour} {m['shape']} disappears"))
            else:
                x, y = seen[colour].centre
                tracks[colour].append((i, x * k, y * k, seen[colour].size * k))
    for colour, pts in tracks.items():
        if len(pts) < 4:
            continue
        t = np.array([p[0] for p in pts], dtype=float)
        for axis in (1, 2):
            v = np.array([p[axis] for p in pts])
            # Robust line: the median of pairwise slopes (Theil-Sen), then residuals.
            slopes = [(v[j] - v[i]) / (t[j] - t[i]) for i in range(len(t)) for j in range(i + 1, len(t))]
            s = float(np.median(slopes))
            b = float(np.median(v - s * t))
            res = np.abs(v - (s * t + b))
            size = float(np.median([p[3] for p in pts]))
            for (i, *_), r in zip(pts, res):
                if r > 1.2 * size:
                    out.append((i, f"the {colour} {colours[colour]['shape']} jumps off its path"))
            m = colours[colour]
            if n_frames and n_frames > 1:
                # The prompt's motion: p0 to p1 over the clip. Covering less than half of it (or going the other
                # way) is not what was asked for, however clean each frame is.
                want = (m["p1"][axis - 1] - m["p0"][axis - 1]) / (n_frames - 1)
                if abs(want) * (n_frames - 1) > 2 * size and s * want < 0.5 * want * want:
                    out.append((pts[-1][0], f"the {colour} {m['shape']} does not move {m['direction']} as asked"))
    return sorted(set(out))


class _Ctx:
    """What the oracle can read from one request."""

    def __init__(self, r: GenerationRequest, images: dict[str, Image.Image], rng: random.Random) -> None:
        self.images, self.rng = images, rng
        self.tools_on = bool(r.tools)
        self.user_text = _text_of(r.messages, "user")
        self.tool_text = _text_of(r.messages, "tool")
        system = _text_of(r.messages, "system")
        m = _MAX_CALLS.search(system)
        limit = int(m.group(1)) if m else 4
        calls = sum(1 for msg in r.messages if msg["role"] == "tool")
        self.calls_left = limit - calls

    def pick(self, *options: str) -> str:
        return self.rng.choice(options)


__all__ = ["OracleTeacher", "each_box", "evaluate_scene", "finding", "format_tool_call"]


def world_groups(record) -> list[str]:
    """The report groups of a synthetic-world record: all, its kind, image vs video, and the needs-tool flag."""
    w = record.metadata.get("world", {})
    kind = w.get("kind", record.task)
    return [
        "all",
        f"kind={kind}",
        "visual=video" if kind == "video" else "visual=image",
        f"needs_tool={w.get('needs_tool')}",
    ]


def oracle_accuracy(
    world: str, split: str = "test", seed: int = 0, limit: int | None = None, crop_policy: str = "zoom"
) -> dict:
    """The oracle's accuracy with tools and from the overview alone (strict verdicts, a random presented order
    per item), by group (:func:`world_groups`), and its tool calls per item: the ceiling the world allows and
    what its tools are worth."""
    from data_pipelines.batch import Job, mean_by_group, run_jobs  # noqa: PLC0415
    from data_pipelines.labels import check_verdict  # noqa: PLC0415
    from data_pipelines.records import presented_orders, read_records  # noqa: PLC0415
    from data_pipelines.synthetic.generate import WORLD_TOOLS, WORLD_VISUAL  # noqa: PLC0415
    from mmreward.rollout import RolloutEngine  # noqa: PLC0415
    from mmreward.settings import EngineSettings  # noqa: PLC0415

    records = read_records(f"{world}/{split}.jsonl")[:limit]
    engine = RolloutEngine(
        OracleTeacher({r.id: r for r in records}, seed=seed, crop_policy=crop_policy),
        settings=EngineSettings(visual=WORLD_VISUAL, tools=WORLD_TOOLS, verdict_mode="strict"),
    )
    jobs = [Job(f"{r.id}|x", r.resolved(world), presented_orders(r, "random", seed)[0], f"{r.id}|x") for r in records]
    report = {}
    for tools in (True, False):
        results = run_jobs(engine, jobs, tools_on=tools, chunk=max(1, len(jobs)))
        accuracy, n = mean_by_group((world_groups(j.record), check_verdict(j.record, t).correct) for j, t in results)
        trajs = [t for _, t in results]
        report["tools" if tools else "overview_only"] = {
            "accuracy": accuracy,
            "n": n,
            "tool_calls_per_item": round(sum(len(t.tool_trace) for t in trajs) / max(1, len(trajs)), 3),
        }
    return report
