"""Client conventions: the instructions other projects' reward clients send, and the replies they parse.

Generator RL loops (flow_grpo, Pref-GRPO, MixGRPO, UnifiedReward's own scripts, VL-RewardBench-style harnesses)
already call a VLM reward server with their own instruction text and read the verdict with their own regex. Two
pieces make mmreward a drop-in for them:

* a :class:`ClientTemplate` recognises a known instruction, takes out what is being judged (the caption, or the
  question and the two answers) and says what kind of judgment it asks for; unknown text stays the prompt;
* a :class:`ReplyFormat` renders the judge's verdict in the client's wording. The judge reasons and decides as it
  always does; only the final rendering changes, and a score is mapped linearly from the judge's 1-10 onto the
  client's scale, so the conversion is exact (written with up to 4 decimals).

A request picks them in this order: ``mmreward.reply`` / ``mmreward.template``, then the served model name's
profile (``--served-model-name NAME=PROFILE``), then the recognised template, then mmreward's own format.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mmreward.judge import Judgment
from mmreward.protocol import parse_turn
from mmreward.trajectory import Trajectory
from mmreward.verdict import NOUNS, SCORE_MAX, SCORE_MIN

SCALES = {"1-10": (1.0, 10.0), "1-5": (1.0, 5.0), "0-1": (0.0, 1.0)}


def rescale(score: float, scale: str) -> float:
    """A 1-10 score on another scale, by the linear map that sends 1 to the scale's low end and 10 to its high."""
    lo, hi = SCALES[scale]
    return lo + (score - SCORE_MIN) * (hi - lo) / (SCORE_MAX - SCORE_MIN)


def number(x: float) -> str:
    """At most 4 decimals, no trailing zeros: 3, 2.7778."""
    text = f"{x:.4f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


# --------------------------------------------------------------------------------------------------------------------
# What the judge did, as one reply


@dataclass
class Reply:
    """The parts a reply format renders: the reasoning, and the judgment in *candidate* terms (never the position a
    candidate happened to be shown in)."""

    reasoning: str
    modality: str  # image | video | answer
    kind: str  # pairwise | pointwise | multi
    preferred: int | None = None  # candidate index; None: tie or no decision
    outcome: str = "failed"
    score: float | None = None  # 1-10 (a float when it is an expected score or an average)
    dimensions: dict[str, Any] = field(default_factory=dict)
    scores: list[float | None] = field(default_factory=list)  # pair_score: one pointwise score per candidate
    dimension_scores: list[dict[str, Any]] = field(default_factory=list)

    @property
    def noun(self) -> str:
        return NOUNS[self.modality]


def reasoning_of(trajs: list[Trajectory]) -> str:
    """The judge's reasoning, from the trajectory shown in the client's own order where there is one (its positions
    then mean what the client's mean), each turn's <think> on its own line, tool calls named."""
    if not trajs:
        return ""
    t = next((t for t in trajs if list(t.order) == sorted(t.order)), trajs[0])
    lines = []
    if list(t.order) != sorted(t.order):
        lines.append(f"(The candidates were shown to the judge in the order {[o + 1 for o in t.order]}.)")
    for m in t.messages:
        if m["role"] != "assistant":
            continue
        turn = parse_turn(m["content"][0]["text"])
        think = turn.think if turn.think is not None else re.sub(r"</?(think|answer|tool_call)>", " ", turn.text)
        if think and think.strip():
            lines.append(think.strip())
        if turn.is_tool_call:
            lines.append(f"(looked closer: {turn.tool_name} {json.dumps(turn.tool_arguments)})")
    return "\n".join(lines)


def reply_from(judgment: Judgment, modality: str, kind: str, use_reward: bool = False) -> Reply:
    r = Reply(reasoning_of(judgment.trajectories), modality, kind, judgment.preferred, judgment.outcome)
    r.dimensions = dict(judgment.dimensions)
    r.score = judgment.score
    if use_reward and kind == "pointwise" and judgment.reward is not None:
        r.score = judgment.reward  # the expected score: finer than an integer, so a GRPO group rarely ties
    return r


# --------------------------------------------------------------------------------------------------------------------
# Reply formats


def _pair_phrase(r: Reply, winner: int | None) -> str:
    return "Tie" if winner is None else f"{r.noun} {winner + 1} is better"


def _think(r: Reply) -> str:
    return f"<think>{r.reasoning}</think>\n" if r.reasoning else "<think></think>\n"


def render_mmreward(r: Reply, scale: str) -> str:
    """mmreward's grammar, in candidate terms: <think>...</think> then <answer>...</answer>."""
    if r.kind == "pointwise":
        dims = "".join(f"{d}: {number(rescale(v, scale))}\n" for d, v in r.dimensions.items() if v is not None)
        body = f"{dims}Score: {number(rescale(r.score, scale))}" if r.score is not None else "no verdict"
    elif r.kind == "multi":
        lines = [f"{d}: {_pair_phrase(r, w)}" for d, w in r.dimensions.items()]
        body = "\n".join([*lines, f"Overall: {_pair_phrase(r, r.preferred)}"])
    else:
        body = _pair_phrase(r, r.preferred) if r.outcome != "failed" else "no verdict"
    return _think(r) + f"<answer>{body}</answer>"


def render_final_score(r: Reply, scale: str) -> str:
    """UnifiedReward 1.5 / flow_grpo / MixGRPO: the reasoning, then ``Final Score: x`` (1-5 by default)."""
    score = "none" if r.score is None else number(rescale(r.score, scale))
    return (r.reasoning + "\n" if r.reasoning else "") + f"Final Score: {score}"


def render_dimension_scores(r: Reply, scale: str) -> str:
    """UnifiedReward 2.0 pointwise: ``Alignment Score (1-5): x`` lines, one per dimension, then the overall."""
    low, high = (number(v) for v in SCALES[scale])
    lines = [
        f"{d} Score ({low}-{high}): {number(rescale(v, scale))}" for d, v in r.dimensions.items() if v is not None
    ]
    if r.score is not None:
        lines.append(f"Final Score: {number(rescale(r.score, scale))}")
    return (r.reasoning + "\n" if r.reasoning else "") + "\n".join(lines)


def render_think_answer(r: Reply, scale: str) -> str:
    """UnifiedReward-Think / Pref-GRPO: ``<think>...</think>`` then ``<answer>Image 1 is better</answer>``."""
    if r.kind == "pointwise":
        return render_mmreward(r, scale)
    return _think(r) + f"<answer>{_pair_phrase(r, r.preferred) if r.outcome != 'failed' else 'no verdict'}</answer>"


def render_winner_json(r: Reply, scale: str) -> str:
    """Pref-GRPO's UnifiedReward-Flex: one JSON object with ``winner`` (and a category per dimension)."""
    winner = {"prefer": f"{r.noun} {(r.preferred or 0) + 1}", "tie": "tie"}.get(r.outcome, "none")
    body: dict[str, Any] = {"winner": winner}
    if r.dimensions:
        body["categories"] = [
            {"name": d, "cat_winner": "tie" if w is None else f"{r.noun} {w + 1}"} for d, w in r.dimensions.items()
        ]
    body["reasoning"] = r.reasoning
    return json.dumps(body, ensure_ascii=False)


def render_pair_score(r: Reply, scale: str) -> str:
    """Scores for both candidates: a block per dimension of ``Image 1: x`` / ``Image 2: y`` lines, then Overall."""
    blocks = []
    names = [d for d in (r.dimension_scores[0] if r.dimension_scores else {})]
    for d in [*names, "Overall"]:
        values = [s.get(d) if d != "Overall" else sc for s, sc in zip(r.dimension_scores, r.scores)]
        lines = [
            f"{r.noun} {k + 1}: {'none' if v is None else number(rescale(v, scale))}" for k, v in enumerate(values)
        ]
        blocks.append(f"{d}:\n" + "\n".join(lines))
    return (r.reasoning + "\n" if r.reasoning else "") + "\n\n".join(blocks)


def render_overall_judgment(r: Reply, scale: str) -> str:
    """VL-RewardBench's prompt: the reasoning, then ``Overall Judgment: Answer X is better.`` as the last line."""
    verdict = "Tie" if r.preferred is None else f"{r.noun} {r.preferred + 1} is better"
    return (r.reasoning + "\n" if r.reasoning else "") + f"Overall Judgment: {verdict}."


@dataclass(frozen=True)
class ReplyFormat:
    name: str
    render: Callable[[Reply, str], str]
    scale: str  # the default score scale
    pair_scores: bool = False  # judged as one pointwise task per candidate


REPLY_FORMATS = {
    f.name: f
    for f in (
        ReplyFormat("mmreward", render_mmreward, "1-10"),
        ReplyFormat("final_score", render_final_score, "1-5"),
        ReplyFormat("dimension_scores", render_dimension_scores, "1-5"),
        ReplyFormat("think_answer", render_think_answer, "1-10"),
        ReplyFormat("winner_json", render_winner_json, "1-10"),
        ReplyFormat("pair_score", render_pair_score, "1-10", pair_scores=True),
        ReplyFormat("overall_judgment", render_overall_judgment, "1-10"),
    )
}


# --------------------------------------------------------------------------------------------------------------------
# Client templates


@dataclass
class Instruction:
    """What a recognised instruction asks: the text to judge against, and how."""

    template: str
    prompt: str
    kind: str | None = None  # pairwise | pointwise | multi; None: from the number of candidates
    modality: str | None = None  # video when the images are frames of clips
    answers: list[str] | None = None
    dimensions: list[str] = field(default_factory=list)
    reply: str = "mmreward"


def _caption_after(text: str, marker: str) -> str | None:
    """The bracketed text after ``marker`` (``Text Caption: [...]``): up to the last ``]`` of the text, so a
    caption that itself holds brackets survives."""
    start = text.find(marker)
    if start < 0:
        return None
    rest = text[start + len(marker) :]
    end = rest.rfind("]")
    return rest[:end].strip() if end >= 0 else rest.strip()


def _corner_quoted(text: str) -> str | None:
    m = re.search(r"「(.*)」", text, re.S)
    return m.group(1).strip() if m else None


def _final_score(text: str) -> Instruction | None:
    if "Final Score:" not in text or "Text Caption: [" not in text:
        return None
    return Instruction(
        "unifiedreward_score", _caption_after(text, "Text Caption: ["), "pointwise", reply="final_score"
    )


_DIMENSION_SCORE = re.compile(r"^(\w+) Score \(1-5\): [A-Z]$", re.M)


def _dimension_scores(text: str) -> Instruction | None:
    dims = _DIMENSION_SCORE.findall(text)
    if not dims or "Text Caption: [" not in text:
        return None
    return Instruction(
        "unifiedreward_2_pointwise",
        _caption_after(text, "Text Caption: ["),
        "pointwise",
        dimensions=dims,
        reply="dimension_scores",
    )


def _think_pair(text: str) -> Instruction | None:
    m = re.search(r"<answer>\s*(Image|Video) 1 is better", text) or re.search(r"- (Image|Video) 1 is better", text)
    if not m or "<think>" not in text:
        return None
    caption = _corner_quoted(text)
    if caption is None:
        return None
    video = m.group(1) == "Video"
    name = "unifiedreward_think_video" if video else "unifiedreward_think_image"
    return Instruction(name, caption, "pairwise", "video" if video else None, reply="think_answer")


def _winner_json(text: str) -> Instruction | None:
    if not re.search(r"[\"']winner[\"']", text):
        return None
    caption = _corner_quoted(text) or _caption_after(text, "Text Caption: [")
    if caption is None:
        return None
    video = bool(re.search(r"\bvideos?\b", text, re.I)) and "frames" in text.lower()
    return Instruction("unifiedreward_flex", caption, "pairwise", "video" if video else None, reply="winner_json")


_VLRB = re.compile(
    r"Question:\s*(?P<q>.*?)\s*Answer 1:\s*(?P<a1>.*?)\s*Answer 2:\s*(?P<a2>.*?)\s*(?:Please evaluate|$)", re.S
)


def _answer_pair(text: str) -> Instruction | None:
    if "Overall Judgment" not in text:
        return None
    m = _VLRB.search(text)
    if not m:
        return None
    return Instruction(
        "vl_rewardbench", m.group("q"), "pairwise", "answer", [m.group("a1"), m.group("a2")], reply="overall_judgment"
    )


TEMPLATES: dict[str, Callable[[str], Instruction | None]] = {
    "unifiedreward_2_pointwise": _dimension_scores,
    "unifiedreward_score": _final_score,
    "unifiedreward_think": _think_pair,
    "unifiedreward_flex": _winner_json,
    "vl_rewardbench": _answer_pair,
}


def recognise(text: str, only: str | None = None) -> Instruction | None:
    """The known client template ``text`` follows, with its caption or question taken out; None if unknown."""
    for name, match in TEMPLATES.items():
        if only is not None and name != only:
            continue
        found = match(text)
        if found is not None and found.prompt:
            return found
    return None


def describe() -> dict[str, Any]:
    return {"reply_formats": sorted(REPLY_FORMATS), "templates": sorted(TEMPLATES), "scales": sorted(SCALES)}
