"""Where a judge's reasoning goes wrong on the synthetic world's two-image items, step by step.

A judge trained on the oracle's ``crop_policy="each"`` trajectories writes, for every candidate, the view it looked at,
what it sees there and whether that matches the prompt ("In obs_1 (the crop of image_1) I see a green square.
That matches the prompt."), then a verdict. Each step can be checked on its own:

* **perception**: is what it says it sees what the oracle perceives in the same pixels (the crop it asked for)?
* **restated**: where it restates the prompt's objects ("The prompt asks for a green square."), are they right?
* **comparison**: does its match / no-match call follow from what it *said* it sees and the prompt (text only)?
* **match call**: is that call right about the picture (perception and comparison together)?
* **verdict**: where its two calls differ, does it prefer the candidate it called a match?

The oracle's own trajectories score 1.0 on every step (``tests/test_synthetic.py``); a student's numbers say which
step to fix.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from PIL import Image

from data_pipelines.records import PreferenceRecord
from data_pipelines.synthetic.oracle import CHECK_PROMPT, CHECK_SEEN, MATCH_PHRASES, evaluate_scene
from data_pipelines.synthetic.perception import perceive
from data_pipelines.synthetic.world import NUMBER_WORDS, PLURAL, Description
from mmreward.protocol import parse_turn
from mmreward.tools.crop import crop_view

FINDING = re.compile(
    r"In (obs_\d+) \(the crop of (image_\d+)\) I see (.*?)\. (?:The prompt asks for [^.]*\. )?"
    rf"(?:{re.escape(CHECK_PROMPT)} [^.]*\. )?(?:{re.escape(CHECK_SEEN)} [^.]*\. )?"
    r"(" + "|".join(re.escape(p.rstrip(".")) for p in MATCH_PHRASES) + r"|But )"
)
# A finding's marks (``oracle.check_lists``), per view: the prompt's objects, then the objects it sees.
CHECKS = re.compile(
    rf"In obs_\d+ \(the crop of (image_\d+)\) I see [^.]*\. The prompt asks for [^.]*\. "
    rf"{re.escape(CHECK_PROMPT)} ([^.]*)\.(?: {re.escape(CHECK_SEEN)} ([^.]*)\.)?"
)
# The prompt's objects as a finding restates them (``oracle.asks_for``), per view.
ASKED = re.compile(r"In obs_\d+ \(the crop of (image_\d+)\) I see .*?\. The prompt asks for ([^.]*)\.")
_COUNT = {**{w: n for n, w in NUMBER_WORDS.items()}, "a": 1, "an": 1}
_SINGULAR = {p: s for s, p in PLURAL.items()}


def parse_seen(text: str) -> Counter | None:
    """``"a green square and two red circles"`` -> ``{("green", "square"): 1, ("red", "circle"): 2}``; None when
    the text is not a list of counted objects (``"nothing I can make out"`` is the empty list)."""
    if text == "nothing I can make out":
        return Counter()
    out: Counter = Counter()
    for part in re.split(r", | and ", text):
        m = re.fullmatch(r"(\w+) (\w+) (\w+)", part.strip())
        if not m or m.group(1) not in _COUNT:
            return None
        n, colour, shape = m.groups()
        out[(colour, _SINGULAR.get(shape, shape))] += _COUNT[n]
    return out


def marks_right(marked: str, other: Counter | None) -> bool | None:
    """Whether every mark in ``"a green square no; two red circles yes"`` is right against ``other``, the list
    each object was looked up in; None when it does not parse."""
    if other is None:
        return None
    for part in marked.split("; "):
        m = re.fullmatch(r"(.+) (yes|no)", part.strip())
        obj = parse_seen(m.group(1)) if m else None
        if not obj or len(obj) != 1:
            return None
        ((k, n),) = obj.items()
        if (other.get(k) == n) != (m.group(2) == "yes"):
            return False
    return True


def _view(record: PreferenceRecord, traj, image: str, world_dir: Path, tools) -> Image.Image | None:
    """The pixels the judge got back for its crop of ``image`` (re-rendered from the call it made)."""
    call = next((c for c in traj.tool_trace if c["ok"] and c["arguments"].get("image") == image), None)
    if call is None:
        return None
    k = int(image.split("_")[1]) - 1
    source = Image.open(world_dir / record.candidates[traj.order[k]]).convert("RGB")
    return crop_view(source, call["arguments"]["bbox_2d"], tools)


def diagnose(record: PreferenceRecord, traj, world_dir: str | Path, tools) -> dict[str, Any]:
    """One trajectory's steps: per described view, what was said and what is true; and the verdict."""
    desc = Description.from_dict(record.metadata["world"]["description"])
    want = Counter({(c, s): n for c, s, n in desc.groups})
    views = {}
    for m in traj.messages:
        if m["role"] != "assistant":
            continue
        think = parse_turn(m["content"][0]["text"]).think or ""
        asked = dict(ASKED.findall(think))
        checks = {image: (a, b) for image, a, b in CHECKS.findall(think)}
        for _obs, image, seen, call in FINDING.findall(think):
            pixels = _view(record, traj, image, Path(world_dir), tools)
            if pixels is None:
                continue
            blobs = perceive(pixels, denoise=True)
            align, quality = evaluate_scene(desc, blobs)
            said = parse_seen(seen)
            views[image] = {
                "said": seen,
                "said_match": not call.startswith("But"),
                "true": Counter((b.colour, b.shape) for b in blobs),
                "true_match": not align,  # the match call leaves quality to a sentence of its own
                "parsed": said,
                # what the judge's own words imply: a match when what it said it sees is what the prompt asks for
                "implied_match": None if said is None else said == want,
                # the prompt's objects, if it restated them: None when it did not
                "restated": None if image not in asked else parse_seen(asked[image]) == want,
                # its marks (oracle.check_lists), looked up in its own lists: None when it wrote none
                "checked": None if image not in checks else _checks_right(checks[image], said, asked.get(image)),
            }
    winner = (traj.verdict or {}).get("winner")
    return {"views": views, "winner": winner}


def _checks_right(marks: tuple[str, str], said: Counter | None, asked: str | None) -> bool | None:
    restated = parse_seen(asked) if asked is not None else None
    first = marks_right(marks[0], said)
    second = marks_right(marks[1], restated) if marks[1] else said == Counter()
    return None if first is None or second is None else bool(first and second)


def summarize(diagnoses: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-step rates over many :func:`diagnose` results."""
    n = Counter()
    for d in diagnoses:
        n["trajectories"] += 1
        n["both_views_described"] += len(d["views"]) == 2
        for v in d["views"].values():
            n["views"] += 1
            n["perception_right"] += v["parsed"] == v["true"]
            n["match_call_right"] += v["said_match"] == v["true_match"]
            if v.get("checked") is not None:
                n["checking_views"] += 1
                n["checked_right"] += v["checked"]
            if v["implied_match"] is not None:  # its list parsed: the call its words imply can be judged
                n["parsed_views"] += 1
                n["implied_call_right"] += v["implied_match"] == v["true_match"]
                n["comparison_consistent"] += v["said_match"] == v["implied_match"]
            if v.get("restated") is not None:
                n["restating_views"] += 1
                n["restated_right"] += v["restated"]
        v1, v2 = d["views"].get("image_1"), d["views"].get("image_2")
        if v1 and v2 and v1["said_match"] != v2["said_match"] and d["winner"] is not None:
            n["decisive"] += 1
            n["verdict_follows_calls"] += (d["winner"] == 0) == v1["said_match"]
        if v1 and v2 and v1["true_match"] != v2["true_match"]:
            # the verdict its own words imply, where they imply one: the view it described as what was asked
            i1, i2 = v1["implied_match"], v2["implied_match"]
            if i1 is not None and i2 is not None and i1 != i2:
                n["implied_decisive"] += 1
                n["implied_verdict_right"] += i1 == v1["true_match"]
            n["truth_decisive"] += 1

    def rate(a: str, b: str) -> float | None:
        return round(n[a] / n[b], 4) if n[b] else None

    return {
        "trajectories": n["trajectories"],
        "views_described": n["views"],
        "both_views_described": rate("both_views_described", "trajectories"),
        "perception": rate("perception_right", "views"),
        "restated": rate("restated_right", "restating_views"),
        # its marks are right about its own lists (the look-ups the match call rests on)
        "checks": rate("checked_right", "checking_views"),
        "comparison": rate("comparison_consistent", "parsed_views"),
        "match_call": rate("match_call_right", "views"),
        # the match call its own description implies (had it compared its words with the prompt faithfully)
        "implied_call": rate("implied_call_right", "parsed_views"),
        # on pairs with one faithful view, the share whose descriptions single out one view, and how often that
        # is the faithful one: what its perception alone would score
        "implied_decisive": rate("implied_decisive", "truth_decisive"),
        "implied_verdict": rate("implied_verdict_right", "implied_decisive"),
        "decisive_pairs": n["decisive"],
        "verdict_follows_calls": rate("verdict_follows_calls", "decisive"),
    }


__all__ = ["CHECKS", "FINDING", "diagnose", "marks_right", "parse_seen", "summarize"]
