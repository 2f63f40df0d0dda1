"""The judging protocol: tasks, prompts, the turn grammar and how media enters the conversation.

Every stage (SFT rendering, rejection sampling, GRPO, eval, the server) builds conversations with
:func:`build_conversation` and reads model turns with :func:`parse_turn`, so a judgment that parses in one
place parses the same way everywhere (DESIGN.md section 2).

Conversations are lists of chat messages in the Hugging Face multimodal format. Images inside them are
*references* (``{"type": "image", "ref": "image_1"}``); :func:`resolve_images` swaps references for PIL images
right before the processor sees them, so records stay small and serializable.

Names the model sees:

* ``image_1``, ``image_2``: candidate images in *displayed* order (or the images a question is about);
* ``video_1``, ``video_2``: videos, each shown as an overview of ``overview_frames`` frames named
  ``video_1_frame_<index>`` and captioned with index and timestamp (video travels as frames in every stage);
* ``obs_1``, ``obs_2``...: images returned by tools.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field, fields, replace
from functools import cache
from importlib import resources
from typing import Any, Literal

import jinja2
from PIL import Image

from mmreward.media import (
    DEFAULT_LIMITS,
    MediaLimits,
    PixelBudget,
    describe_source,
    load_image,
    open_video,
    sample_frame_indices,
)
from mmreward.tools import Budget, ToolContext, ToolSettings
from mmreward.verdict import AnswerSpec, TaskKind

Modality = Literal["image", "video", "answer"]
MEDIA_MARKER = re.compile(r"<<media:([A-Za-z0-9_]+)>>")
# Text a client wrote that a tokenizer or the protocol would read as markup: special tokens (<|im_end|>, ...) and
# the tags that Qwen tokenizers hold as single added tokens. Their "<" becomes a fullwidth one in user text.
_MARKUP = re.compile(r"<(?=\|)|<(?=/?(?:think|answer|tool_call|tool_response|tools)>)")
_SLOT = "\x00{}\x00"  # where user text goes while media markers are found; NUL never survives safe_text


@dataclass
class JudgeTask:
    """One judging item.

    * ``modality``: what the candidates are: ``image`` or ``video`` (media sources: paths, bytes, base64,
      PIL), or ``answer`` (text answers to a question about ``media``).
    * ``kind``: ``pairwise`` (two candidates), ``pointwise`` (one candidate, a 1-10 score) or ``multi``
      (pairwise per dimension plus overall).
    * ``media``: for ``answer`` tasks, the images/videos the question is about; ``media_kind`` says which.
    """

    prompt: str
    candidates: list[Any]
    modality: Modality = "image"
    kind: TaskKind = "pairwise"
    media: list[Any] = field(default_factory=list)
    media_kind: Literal["image", "video"] = "image"
    dimensions: list[str] = field(default_factory=list)
    allow_tie: bool = False
    id: str = ""

    def __post_init__(self) -> None:
        if self.modality not in ("image", "video", "answer"):
            raise ValueError(f"task {self.id!r}: modality must be image, video or answer, not {self.modality!r}")
        if self.kind not in ("pairwise", "pointwise", "multi"):
            raise ValueError(f"task {self.id!r}: kind must be pairwise, pointwise or multi, not {self.kind!r}")
        want = 1 if self.kind == "pointwise" else 2
        if len(self.candidates) != want:
            raise ValueError(
                f"task {self.id!r}: a {self.kind} task needs {want} candidate(s), got {len(self.candidates)}"
            )
        if self.kind == "multi" and not self.dimensions:
            raise ValueError(f"task {self.id!r}: a multi-dimensional task needs 'dimensions'")
        if self.modality == "answer":
            if not all(isinstance(c, str) for c in self.candidates):
                raise ValueError(f"task {self.id!r}: answer candidates must be strings")
            if self.media_kind not in ("image", "video"):
                raise ValueError(f"task {self.id!r}: media_kind must be image or video")
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise ValueError(f"task {self.id!r}: prompt must be a non-empty string")
        bad = [
            d
            for d in self.dimensions
            if not re.fullmatch(r"[A-Za-z][A-Za-z _-]{0,40}", d) or d in ("Overall", "Score")
        ]
        if bad:
            raise ValueError(f"task {self.id!r}: invalid dimension names {bad}")

    @property
    def answer_spec(self) -> AnswerSpec:
        return AnswerSpec(self.kind, self.modality, self.allow_tie, tuple(self.dimensions))

    @property
    def visual_kind(self) -> str:
        return self.media_kind if self.modality == "answer" else self.modality

    def to_dict(self) -> dict[str, Any]:
        """Serializable form; in-memory media (bytes, PIL) is replaced by a description."""
        d = {f.name: copy.copy(getattr(self, f.name)) for f in fields(self)}  # asdict would deep-copy media
        if self.modality != "answer":
            d["candidates"] = [_serializable_source(c) for c in self.candidates]
        d["media"] = [_serializable_source(m) for m in self.media]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JudgeTask:
        return cls(**d)


def _serializable_source(source: Any) -> Any:
    return source if isinstance(source, str) and not source.startswith("data:") else describe_source(source)


@dataclass(frozen=True)
class VisualSettings:
    """How media is shown. Overviews are deliberately coarse; tools show details (DESIGN.md section 5).

    Video overviews adapt to the clip (in the spirit of qwen-vl-utils' frame and pixel rules): with
    ``overview_fps`` set, a clip gets ``duration * overview_fps`` frames, clamped to
    ``[min_overview_frames, overview_frames]``; with ``max_video_tokens`` set, the frames of one video's overview
    share that many visual tokens (the per-frame pixel budget shrinks as frames are added, never below
    ``frame_budget.min_pixels``, and the frame count drops if even that does not fit). So a long clip costs what
    a short one does, and the overview never silently outgrows the context.
    """

    image_budget: PixelBudget = PixelBudget(min_pixels=56 * 56, max_pixels=448 * 448)
    overview_frames: int = 8
    frame_budget: PixelBudget = PixelBudget(min_pixels=56 * 56, max_pixels=224 * 224)
    overview_fps: float | None = None
    min_overview_frames: int = 4
    max_video_tokens: int | None = None
    # Which frames an overview takes: "qwen" (qwen-vl-utils' rule, first and last frames included) or "centre"
    # (segment centres; the synthetic world's rule). See mmreward.media.sample_frame_indices.
    frame_rule: str = "qwen"

    def with_factor(self, factor: int) -> VisualSettings:
        """The same budgets for a vision tower with another patch*merge factor (32 for Qwen3-VL)."""
        return replace(
            self,
            image_budget=self.image_budget.with_factor(factor),
            frame_budget=self.frame_budget.with_factor(factor),
        )

    def overview_count(self, num_frames: int, fps: float) -> int:
        """Overview frames for a clip of ``num_frames`` at ``fps``."""
        n = self.overview_frames
        if self.overview_fps is not None and fps > 0:
            n = min(self.overview_frames, max(self.min_overview_frames, round(num_frames / fps * self.overview_fps)))
        if self.max_video_tokens is not None:
            f2 = self.frame_budget.factor**2
            n = min(n, max(1, self.max_video_tokens * f2 // self.frame_budget.min_pixels))
        return max(1, min(n, num_frames))

    def overview_frame_budget(self, n_frames: int) -> PixelBudget:
        """The pixel budget of each frame of an ``n_frames`` overview."""
        b = self.frame_budget
        if self.max_video_tokens is None or n_frames <= 0:
            return b
        per_frame = self.max_video_tokens * b.factor**2 // n_frames
        return PixelBudget(b.min_pixels, max(b.min_pixels, min(b.max_pixels, per_frame)), b.factor)


# --------------------------------------------------------------------------------------------------------------------
# Prompt templates


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)


@cache
def load_template(name: str) -> jinja2.Template:
    text = resources.files("mmreward").joinpath("templates", name).read_text(encoding="utf-8")
    return _env().from_string(text)


SUBJECTS = {
    "image": "generated images",
    "video": "generated videos",
    "answer": "answers to questions about images and videos",
}


def system_prompt(task: JudgeTask, tools_on: bool, budget: Budget) -> str:
    spec = task.answer_spec
    return (
        load_template("system.jinja")
        .render(
            subject=SUBJECTS[task.modality],
            tools_on=tools_on,
            max_tool_calls=budget.max_tool_calls if budget.max_tool_calls is not None else "any number of",
            answer_format=spec.format_hint().replace('"', "") if spec.kind == "pairwise" else spec.format_hint(),
        )
        .strip()
    )


def safe_text(text: str) -> str:
    """User-supplied text as the model should read it: no NUL, and no special-token or protocol-tag markup (a
    prompt holding ``<|im_end|>`` would otherwise end the user turn inside the tokenizer)."""
    return _MARKUP.sub("\uff1c", text.replace("\x00", ""))


def user_text(task: JudgeTask, media_names: list[str], answers: list[str]) -> str:
    """The user turn's text, with ``<<media:name>>`` where each medium goes."""
    texts = [task.prompt.strip(), *answers]
    return _fill(_user_template(task, media_names, len(answers)), texts)


def _user_template(task: JudgeTask, media_names: list[str], n_answers: int) -> str:
    """The user turn with slots instead of the client's text, so that only the template's own media markers are
    markers: user text can never name a medium, however it is written."""
    template = {"pairwise": "user_pairwise.jinja", "pointwise": "user_pointwise.jinja", "multi": "user_multi.jinja"}
    spec = task.answer_spec
    return (
        load_template(template[task.kind])
        .render(
            modality=task.modality,
            prompt=_SLOT.format(0),
            media=media_names,
            answers=[_SLOT.format(k + 1) for k in range(n_answers)],
            noun=spec.noun if task.modality != "answer" else "Answer",
            media_noun=task.media_kind,
            allow_tie=task.allow_tie,
            dimensions=task.dimensions,
            answer_format=spec.format_hint(),
        )
        .strip()
    )


def _fill(text: str, texts: list[str]) -> str:
    return re.sub("\x00(\\d+)\x00", lambda m: safe_text(texts[int(m.group(1))]), text)


# --------------------------------------------------------------------------------------------------------------------
# Conversations


@dataclass
class Conversation:
    """A trajectory's starting point: messages with image references, and the tool context holding the media."""

    messages: list[dict[str, Any]]
    context: ToolContext
    order: list[int]
    tools_on: bool


def build_conversation(
    task: JudgeTask,
    order: list[int] | None = None,
    *,
    tools_on: bool = True,
    visual: VisualSettings | None = None,
    tool_settings: ToolSettings | None = None,
    budget: Budget | None = None,
    limits: MediaLimits = DEFAULT_LIMITS,
) -> Conversation:
    """Load the task's media and build the system and user messages for the given presented order.

    ``order[i]`` is the candidate shown at position ``i`` (``[1, 0]`` shows the second candidate first).
    Raises :class:`mmreward.media.MediaError` when a media file cannot be used.
    """
    visual = visual or VisualSettings()
    budget = copy.deepcopy(budget) if budget is not None else Budget()
    n = len(task.candidates)
    order = list(range(n)) if order is None else list(order)
    if sorted(order) != list(range(n)):
        raise ValueError(f"order {order} is not a permutation of the {n} candidate(s)")
    ctx = ToolContext(settings=tool_settings or ToolSettings(), budget=budget)

    if task.modality == "answer":
        sources, kind = list(task.media), task.media_kind
        answers = [task.candidates[i] for i in order]
    else:
        sources, kind = [task.candidates[i] for i in order], task.modality
        answers = []
    names = [f"{kind}_{k + 1}" for k in range(len(sources))]

    media_parts: dict[str, list[dict[str, Any]]] = {}
    for name, source in zip(names, sources):
        if kind == "image":
            ctx.images[name] = load_image(source, limits)
            ctx.provenance[name] = {"input": name}
            media_parts[name] = [{"type": "image", "ref": name}]
        else:
            clip = open_video(source, limits)
            ctx.videos[name] = clip
            indices = sample_frame_indices(
                clip.num_frames, visual.overview_count(clip.num_frames, clip.fps), rule=visual.frame_rule
            )
            parts: list[dict[str, Any]] = [
                {
                    "type": "text",
                    "text": f"{name}: {clip.num_frames} frames, {clip.fps:.2f} fps, {clip.duration:.2f} s; "
                    f"overview of {len(indices)} frames:",
                }
            ]
            for index, frame in zip(indices, clip.frames(indices)):
                frame_name = f"{name}_frame_{index}"
                ctx.images[frame_name] = frame
                ctx.provenance[frame_name] = {"video": name, "frame": index}
                parts.append({"type": "text", "text": f"\n{frame_name} (t={clip.timestamp(index):.2f}s):"})
                parts.append({"type": "image", "ref": frame_name})
            media_parts[name] = parts

    text = _user_template(task, names, len(answers))
    texts = [task.prompt.strip(), *answers]
    content: list[dict[str, Any]] = []
    pos = 0
    for m in MEDIA_MARKER.finditer(text):
        if m.start() > pos:
            content.append({"type": "text", "text": _fill(text[pos : m.start()], texts)})
        content.extend(media_parts[m.group(1)])
        pos = m.end()
    if pos < len(text):
        content.append({"type": "text", "text": _fill(text[pos:], texts)})
    content = _merge_text(content)

    messages = [
        {"role": "system", "content": [{"type": "text", "text": system_prompt(task, tools_on, budget)}]},
        {"role": "user", "content": content},
    ]
    return Conversation(messages=messages, context=ctx, order=order, tools_on=tools_on)


def _merge_text(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in parts:
        if p["type"] == "text" and out and out[-1]["type"] == "text":
            out[-1] = {"type": "text", "text": out[-1]["text"] + p["text"]}
        else:
            out.append(dict(p))
    return out


def image_budget_for(ref: str, visual: VisualSettings, images: dict[str, Any] | None = None) -> PixelBudget | None:
    """The overview budget for input images and video frames; observations were sized by their tool. A video
    frame's budget depends on how many overview frames its video has (``images`` holds them)."""
    if ref.startswith("obs_"):
        return None
    if "_frame_" not in ref:
        return visual.image_budget
    if visual.max_video_tokens is None or images is None:
        return visual.frame_budget
    video = ref.split("_frame_")[0] + "_frame_"
    return visual.overview_frame_budget(sum(1 for name in images if name.startswith(video)))


def windowed(messages: list[dict[str, Any]], window: int | None) -> list[dict[str, Any]]:
    """The conversation as the model sees it under a visual memory window of ``window`` tool rounds: the images
    of older tool observations leave the context, each replaced by a short text stub (the observation's own text,
    which says what was seen, stays). ``None`` keeps everything. The record itself is never changed."""
    if window is None:
        return messages
    with_images = [
        i
        for i, m in enumerate(messages)
        if m["role"] == "tool"
        and isinstance(m["content"], list)
        and any(p.get("type") == "image" for p in m["content"])
    ]
    evict = set(with_images[: max(0, len(with_images) - window)])
    if not evict:
        return messages
    out = []
    for i, m in enumerate(messages):
        if i in evict:
            content = [
                {"type": "text", "text": f"[{p['ref']} dropped from view]"} if p.get("type") == "image" else p
                for p in m["content"]
            ]
            m = {**m, "content": content}
        out.append(m)
    return out


def resolve_images(
    messages: list[dict[str, Any]], images: dict[str, Image.Image], visual: VisualSettings
) -> tuple[list[dict[str, Any]], list[Image.Image]]:
    """Swap image references for PIL images sized for the model; returns (messages, images in order)."""
    out_messages, ordered = [], []
    for msg in messages:
        content = msg.get("content")
        if isinstance(content, list):
            new_content = []
            for part in content:
                if part.get("type") == "image" and "ref" in part:
                    ref = part["ref"]
                    image = images[ref]
                    budget = image_budget_for(ref, visual, images)
                    image = budget.fit(image) if budget is not None else image
                    ordered.append(image)
                    new_content.append({"type": "image", "image": image})
                else:
                    new_content.append(part)
            msg = {**msg, "content": new_content}
        out_messages.append(msg)
    return out_messages, ordered


def image_refs(messages: list[dict[str, Any]]) -> list[str]:
    """The image references of a conversation, in the order :func:`resolve_images` returns the images."""
    return [
        part["ref"]
        for msg in messages
        if isinstance(msg.get("content"), list)
        for part in msg["content"]
        if part.get("type") == "image" and "ref" in part
    ]


def tool_message(text: str, image_names: list[str]) -> dict[str, Any]:
    """A tool observation message: each image preceded by nothing, then the observation's text."""
    content: list[dict[str, Any]] = [{"type": "image", "ref": n} for n in image_names]
    content.append({"type": "text", "text": text})
    return {"role": "tool", "content": content}


def assistant_message(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


# --------------------------------------------------------------------------------------------------------------------
# The turn grammar


@dataclass
class Turn:
    """One parsed assistant turn: ``<think>`` then exactly one ``<tool_call>`` or ``<answer>``."""

    text: str
    think: str | None = None
    tool_name: Any = None
    tool_arguments: Any = None
    answer: str | None = None
    error: str | None = None  # why the turn breaks the grammar (None: well-formed)

    @property
    def is_tool_call(self) -> bool:
        return self.error is None and self.answer is None and self.tool_arguments is not None

    @property
    def is_answer(self) -> bool:
        return self.error is None and self.answer is not None


_TURN_RE = re.compile(
    r"^\s*<think>(?P<think>.*?)</think>\s*"
    r"(?:<tool_call>(?P<call>.*?)</tool_call>|<answer>(?P<answer>.*?)</answer>)\s*$",
    re.S,
)


def parse_turn(text: str) -> Turn:
    """Parse one assistant turn. A malformed turn gets ``error`` set; a tool call's JSON is decoded here."""
    turn = Turn(text=text)
    if text.count("<tool_call>") + text.count("<answer>") > 1:
        turn.error = "more than one <tool_call>/<answer> in one turn"
        return turn
    m = _TURN_RE.match(text)
    if not m:
        if "<tool_call>" in text and "</tool_call>" not in text:
            turn.error = "unclosed <tool_call>"
        elif "<think>" not in text:
            turn.error = "turn does not start with <think>...</think>"
        else:
            turn.error = "turn is not <think>...</think> followed by one <tool_call> or <answer>"
        return turn
    turn.think = m.group("think").strip()
    if re.search(r"</?(think|answer|tool_call)>", m.group("think")):
        turn.error = "protocol tags nested inside <think>"
        return turn
    if m.group("answer") is not None:
        turn.answer = m.group("answer")
        return turn
    try:
        call = json.loads(m.group("call"))
    except json.JSONDecodeError as exc:
        turn.error = f"tool call is not valid JSON ({exc.msg})"
        return turn
    if not isinstance(call, dict) or "name" not in call:
        turn.error = 'tool call must be {"name": ..., "arguments": {...}}'
        return turn
    turn.tool_name = call["name"]
    turn.tool_arguments = call.get("arguments", {})
    return turn


def format_tool_call(name: str, arguments: dict[str, Any]) -> str:
    """The canonical tool-call text (what Qwen's template renders for a structured ``tool_calls`` entry)."""
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"


def format_turn(think: str, *, tool: tuple[str, dict[str, Any]] | None = None, answer: str | None = None) -> str:
    """Render an assistant turn in the protocol's grammar (used by teachers and scripted tests)."""
    if (tool is None) == (answer is None):
        raise ValueError("a turn has exactly one of a tool call or an answer")
    tail = format_tool_call(*tool) if tool is not None else f"<answer>{answer}</answer>"
    return f"<think>{think}</think>\n{tail}"
