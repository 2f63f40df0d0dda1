"""One verdict parser for every stage.

``parse_verdict(text, spec, mode)`` reads a final assistant turn and returns a :class:`Verdict` or a
:class:`ParseFailure` with its reason; it never guesses.

* ``strict``: our grammar only. The text is ``<think>...</think>`` then exactly one ``<answer>...</answer>``
  and nothing else; the answer body has the task's fixed form:

  - pairwise: ``Image 1 is better`` / ``Image 2 is better`` (``Video``/``Answer`` for those modalities), or
    ``Tie`` when the task allows ties;
  - pointwise: ``Score: 7`` (1-10), optionally preceded by ``<Dimension>: <score>`` lines;
  - multi-dimensional pairwise: one ``<Dimension>: <pairwise verdict>`` line per dimension, then
    ``Overall: <pairwise verdict>``.

* ``lenient``: strict first; otherwise the public benchmarks' own forms, read outside any ``<think>`` block:
  ``Overall Judgment: Answer 2 is better``, ``[[A>B]]`` / ``[[B>>A]]`` / ``[[A=B]]`` / ``[[A]]``,
  ``Video 1 is better``, ``Score: 7``. Two different verdicts with nothing to choose between them are a
  failure (``conflicting verdicts``), not a pick.

Positions in a verdict are *displayed* positions (0 = the first candidate shown); the caller maps them to
candidates through the presented order.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Literal

TaskKind = Literal["pairwise", "pointwise", "multi"]
NOUNS = {"image": "Image", "video": "Video", "answer": "Answer"}
SCORE_MIN, SCORE_MAX = 1, 10


@dataclass(frozen=True)
class AnswerSpec:
    """What a valid answer looks like for one task."""

    kind: TaskKind = "pairwise"
    modality: str = "image"  # image | video | answer
    allow_tie: bool = False
    dimensions: tuple[str, ...] = ()

    @property
    def noun(self) -> str:
        return NOUNS[self.modality]

    def format_hint(self) -> str:
        """The answer form, as shown to the model in the prompt."""
        n = self.noun
        if self.kind == "pairwise":
            forms = [f"{n} 1 is better", f"{n} 2 is better"] + (["Tie"] if self.allow_tie else [])
            return " or ".join(f'"{f}"' for f in forms)
        if self.kind == "pointwise":
            dims = "".join(f"{d}: <1-10>\n" for d in self.dimensions)
            return f"{dims}Score: <1-10>"
        pair = f"{n} 1 is better | {n} 2 is better" + (" | Tie" if self.allow_tie else "")
        return "\n".join(f"{d}: {pair}" for d in (*self.dimensions, "Overall"))

    def render(self, verdict: Verdict) -> str:
        """The canonical answer text for a verdict (used by teachers and tests)."""
        n = self.noun

        def pair(winner: int | None) -> str:
            return "Tie" if winner is None else f"{n} {winner + 1} is better"

        if self.kind == "pairwise":
            return pair(verdict.winner)
        if self.kind == "pointwise":
            lines = [f"{d}: {_fmt_score(verdict.dimensions[d])}" for d in self.dimensions]
            return "\n".join([*lines, f"Score: {_fmt_score(verdict.score)}"])
        lines = [f"{d}: {pair(verdict.dimensions[d])}" for d in self.dimensions]
        return "\n".join([*lines, f"Overall: {pair(verdict.winner)}"])


def _fmt_score(x: float | None) -> str:
    return "?" if x is None else (str(int(x)) if float(x).is_integer() else f"{x:g}")


@dataclass
class Verdict:
    """A parsed verdict. ``winner`` is a displayed position (0 or 1) or ``None`` for a tie (pairwise/multi);
    ``score`` is the 1-10 score (pointwise); ``dimensions`` holds per-dimension winners or scores."""

    kind: TaskKind
    winner: int | None = None
    score: float | None = None
    dimensions: dict[str, int | float | None] = field(default_factory=dict)
    strict: bool = True  # parsed by the strict grammar (False: a lenient fallback was needed)
    source: str = "answer"  # which form was recognised

    @property
    def is_tie(self) -> bool:
        return self.kind != "pointwise" and self.winner is None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Verdict:
        return cls(**d)


@dataclass
class ParseFailure:
    reason: str
    text: str = ""

    def to_dict(self) -> dict:
        return {"reason": self.reason}


ParseResult = Verdict | ParseFailure

# --------------------------------------------------------------------------------------------------------------------
# Strict grammar

_THINK_RE = re.compile(r"<think>(.*?)</think>", re.S)
_STRICT_RE = re.compile(r"^\s*<think>(?P<think>.*?)</think>\s*<answer>(?P<answer>.*?)</answer>\s*$", re.S)
_TAG_RE = re.compile(r"</?(think|answer|tool_call)>")


def _pair_phrase(body: str, spec: AnswerSpec) -> int | None | ParseFailure:
    """``Image 1 is better`` -> 0, ``Image 2 is better`` -> 1, ``Tie`` -> None (when allowed)."""
    body = body.strip().rstrip(".").strip()
    m = re.fullmatch(rf"{spec.noun} ([12]) is better", body)
    if m:
        return int(m.group(1)) - 1
    if body == "Tie":
        return None if spec.allow_tie else ParseFailure("tie not allowed for this task")
    return ParseFailure(f"answer {body[:60]!r} is not of the form {spec.format_hint()}")


def _score_value(raw: str) -> float | ParseFailure:
    try:
        value = float(raw)
    except ValueError:
        return ParseFailure(f"score {raw!r} is not a number")
    if not SCORE_MIN <= value <= SCORE_MAX:
        return ParseFailure(f"score {raw} outside {SCORE_MIN}-{SCORE_MAX}")
    return value


def _parse_body_strict(body: str, spec: AnswerSpec) -> Verdict | ParseFailure:
    body = body.strip()
    if not body:
        return ParseFailure("empty answer")
    if spec.kind == "pairwise":
        r = _pair_phrase(body, spec)
        return r if isinstance(r, ParseFailure) else Verdict("pairwise", winner=r)
    lines = [ln.strip() for ln in body.splitlines() if ln.strip()]
    fields: dict[str, str] = {}
    for ln in lines:
        key, sep, value = ln.partition(":")
        if not sep:
            return ParseFailure(f"answer line {ln[:60]!r} is not 'Name: value'")
        if key.strip() in fields:
            return ParseFailure(f"answer gives {key.strip()!r} twice")
        fields[key.strip()] = value.strip()
    final_key = "Score" if spec.kind == "pointwise" else "Overall"
    expected = [*spec.dimensions, final_key]
    missing = [k for k in expected if k not in fields]
    extra = [k for k in fields if k not in expected]
    if missing or extra:
        parts = ([f"missing {missing}"] if missing else []) + ([f"unexpected {extra}"] if extra else [])
        return ParseFailure(f"answer lines do not match {expected}: {'; '.join(parts)}")
    if spec.kind == "pointwise":
        values = {k: _score_value(v) for k, v in fields.items()}
        bad = next((v for v in values.values() if isinstance(v, ParseFailure)), None)
        if bad:
            return bad
        return Verdict("pointwise", score=values["Score"], dimensions={d: values[d] for d in spec.dimensions})
    winners = {k: _pair_phrase(v, spec) for k, v in fields.items()}
    bad = next((v for v in winners.values() if isinstance(v, ParseFailure)), None)
    if bad:
        return bad
    return Verdict("multi", winner=winners["Overall"], dimensions={d: winners[d] for d in spec.dimensions})


def parse_strict(text: str, spec: AnswerSpec) -> Verdict | ParseFailure:
    if not text or not text.strip():
        return ParseFailure("empty output", text or "")
    if text.count("<answer>") > 1:
        return ParseFailure("more than one <answer> block", text)
    m = _STRICT_RE.match(text)
    if not m:
        if "<answer>" in "".join(_THINK_RE.findall(text)):
            return ParseFailure("<answer> inside <think>", text)
        if "<answer>" not in text or "</answer>" not in text:
            return ParseFailure("no <answer>...</answer> block", text)
        if "<think>" not in text:
            return ParseFailure("no <think>...</think> block before the answer", text)
        return ParseFailure("text outside the <think>...</think><answer>...</answer> grammar", text)
    if _TAG_RE.search(m.group("think")) or _TAG_RE.search(m.group("answer")):
        return ParseFailure("protocol tags nested inside <think> or <answer>", text)
    result = _parse_body_strict(m.group("answer"), spec)
    if isinstance(result, ParseFailure):
        result.text = text
    return result


# --------------------------------------------------------------------------------------------------------------------
# Lenient fallbacks (public benchmarks' forms)

_BRACKET_RE = re.compile(
    r"\[\[\s*(A\s*>>?\s*B|B\s*>>?\s*A|B\s*<<?\s*A|A\s*<<?\s*B|A\s*=\s*B(?:\s*=\s*\w+)?|A|B)\s*\]\]"
)
_BETTER_RE = re.compile(
    r"\b(?P<noun>image|video|answer|response|output|candidate)\s*#?\s*(?P<n>[12])\s+is\s+(?:the\s+)?(?:slightly\s+|much\s+)?better",
    re.I,
)
_FINAL_MARK_RE = re.compile(r"(?:overall\s+judg(?:e)?ment|final\s+(?:verdict|answer|judg(?:e)?ment)|therefore)", re.I)
_SCORE_RE = re.compile(r"\b(?:score|rating)\s*[:=]\s*(\d+(?:\.\d+)?)(?:\s*/\s*10)?", re.I)
_TIE_RE = re.compile(r"\b(?:tie|both are equally good|equally good)\b", re.I)


def _strip_think(text: str) -> str | ParseFailure:
    if "<think>" in text and "</think>" not in text:
        return ParseFailure("unclosed <think> block")
    return _THINK_RE.sub(" ", text)


def _bracket_winner(token: str) -> int | None:
    t = re.sub(r"\s+", "", token)
    if t in ("A", "A>B", "A>>B", "B<A", "B<<A"):
        return 0
    if t in ("B", "B>A", "B>>A", "A<B", "A<<B"):
        return 1
    return None  # A=B, A=B=Good, A=B=Bad


def _lenient_pairwise(text: str, spec: AnswerSpec) -> Verdict | ParseFailure:
    brackets = _BRACKET_RE.findall(text)
    if brackets:
        winners = {_bracket_winner(b) for b in brackets}
        if len(winners) > 1:
            return ParseFailure("conflicting [[...]] verdicts", text)
        w = winners.pop()
        if w is None and not spec.allow_tie:
            return ParseFailure("tie verdict [[A=B]] but this task does not allow ties", text)
        return Verdict(spec.kind, winner=w, strict=False, source="brackets")
    marks = list(_FINAL_MARK_RE.finditer(text))
    if marks:
        mark = marks[-1]
        # As in VL-RewardBench's parser: the last "... N is better" after the final-judgment marker.
        after = list(_BETTER_RE.finditer(text, mark.end()))
        if after:
            return Verdict(spec.kind, winner=int(after[-1].group("n")) - 1, strict=False, source="final_judgment")
    found = {int(m.group("n")) - 1 for m in _BETTER_RE.finditer(text)}
    if len(found) == 1:
        return Verdict(spec.kind, winner=found.pop(), strict=False, source="n_is_better")
    if len(found) > 1:
        return ParseFailure("conflicting verdicts (both candidates called better)", text)
    if spec.allow_tie and _TIE_RE.search(text):
        return Verdict(spec.kind, winner=None, strict=False, source="tie")
    return ParseFailure("no verdict found", text)


def _lenient_pointwise(text: str, spec: AnswerSpec) -> Verdict | ParseFailure:
    scores = _SCORE_RE.findall(text)
    if not scores:
        return ParseFailure("no 'Score: N' found", text)
    value = _score_value(scores[-1])
    if isinstance(value, ParseFailure):
        value.text = text
        return value
    return Verdict("pointwise", score=value, strict=False, source="score")


def parse_verdict(text: str | None, spec: AnswerSpec, mode: Literal["strict", "lenient"] = "strict") -> ParseResult:
    """Parse a final assistant turn. See the module docstring for the two modes."""
    if mode not in ("strict", "lenient"):
        raise ValueError(f"mode must be 'strict' or 'lenient', got {mode!r}")
    text = text or ""
    strict = parse_strict(text, spec)
    if mode == "strict" or isinstance(strict, Verdict):
        return strict
    outside = _strip_think(text)
    if isinstance(outside, ParseFailure):
        outside.text = text
        return outside
    if not outside.strip():
        return ParseFailure(f"nothing outside <think> ({strict.reason})", text)
    answers = re.findall(r"<answer>(.*?)</answer>", outside, re.S)
    if len(answers) > 1:
        return ParseFailure("more than one <answer> block", text)
    if answers:
        body_result = _parse_body_strict(answers[0], spec)
        if isinstance(body_result, Verdict):
            body_result.strict = False
            body_result.source = "answer_block"
            return body_result
        outside = answers[0]
    if spec.kind == "pointwise":
        return _lenient_pointwise(outside, spec)
    if spec.kind == "multi":
        # Per-dimension verdicts need our line format; overall alone is still useful to eval.
        result = _lenient_pairwise(outside, AnswerSpec("pairwise", spec.modality, spec.allow_tie))
        if isinstance(result, Verdict):
            result.kind = "multi"
        return result
    return _lenient_pairwise(outside, spec)
