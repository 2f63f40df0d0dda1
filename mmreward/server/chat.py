"""The OpenAI-compatible chat endpoint: what a chat request asks to judge, and the reply in the client's wording.

A chat request is read in three steps:

1. :func:`read_messages`: system text, the one user message's text and its media parts (``image_url``,
   ``video_url``, and Qwen-style ``{"type": "image" | "video", ...}``; a video part may be a list of frames);
2. :meth:`ChatRequests.plan`: the client template (if the text follows a known one, see
   :mod:`mmreward.server.replies`), the candidates (images, clips made of frames, or answers in the text), the
   kind of judgment, the reply format and the sampling;
3. :meth:`ChatRequests.tasks`: the judging tasks, media loaded (blocks; the route runs it in a thread pool).

Conversations the judge was not trained on are refused with a message that says what to send instead: earlier
turns, and a system message that is not part of a recognised client template (the judge's own system prompt is
part of its training). Nothing is dropped silently.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from mmreward.judge import Judge, JudgeSettings, Judgment
from mmreward.media import MediaError, clip_from_frames
from mmreward.protocol import JudgeTask
from mmreward.server.inputs import RequestError, limit_error
from mmreward.server.replies import REPLY_FORMATS, SCALES, TEMPLATES, Reply, reasoning_of, recognise, reply_from
from mmreward.server.schemas import ChatCompletionRequest, JudgeOptions
from mmreward.server.tasks import RequestTasks

CHAT_OPTIONS = {
    "kind",
    "dimensions",
    "allow_tie",
    "tools",
    "swap",
    "candidates",
    "reply",
    "template",
    "scale",
    "reward",
    "modality",
    "frame_fps",
    "min_tokens",
}
CUT = {"max_tokens", "max_turns", "context_overflow"}
_PLACEHOLDER = re.compile(r"^\s*(?:<(?:image|video)>\s*)+")


@dataclass
class Visual:
    kind: str  # image | video | frames
    refs: list[str]  # one URL, or a video's frames


@dataclass
class Message:
    system: str
    text: str
    visuals: list[Visual]


def _url(value: Any, where: str) -> str:
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str):
        raise RequestError(400, "invalid_request", f"{where}: the media must be a URL string", "messages")
    return url


def read_messages(messages: list[dict[str, Any]]) -> Message:
    """System text, the user's text and media. One user turn, after optional system messages; anything else is
    refused with what to send instead."""
    system, user = [], []
    for i, m in enumerate(messages):
        role = m.get("role") if isinstance(m, dict) else None
        if role in ("system", "developer"):
            if user:
                raise RequestError(
                    400, "invalid_request", f"messages[{i}]: a system message after the user's", "messages"
                )
            system.append((i, m))
        elif role == "user":
            user.append((i, m))
        else:
            raise RequestError(
                400,
                "unsupported_conversation",
                f"messages[{i}] has role {role!r}: the judge takes one user message (with optional system messages "
                "before it), not a multi-turn conversation; send the items to judge in a single user message",
                "messages",
            )
    if len(user) != 1:
        raise RequestError(
            400,
            "unsupported_conversation",
            f"{len(user)} user messages: the judge takes exactly one user message holding the prompt and the items "
            "to judge; earlier turns would be ignored, so they are refused",
            "messages",
        )
    sys_text = "\n".join(_text_only(m.get("content"), f"messages[{i}]") for i, m in system)
    i, message = user[0]
    content = message.get("content")
    if isinstance(content, str):
        return Message(sys_text, content, [])
    if not isinstance(content, list):
        raise RequestError(400, "invalid_request", "message content must be a string or a list of parts", "messages")
    texts, visuals = [], []
    for k, part in enumerate(content):
        where = f"messages[{i}].content[{k}]"
        if not isinstance(part, dict):
            raise RequestError(400, "invalid_request", f"{where} is not an object", "messages")
        ptype = part.get("type")
        if ptype == "text":
            if not isinstance(part.get("text"), str):
                raise RequestError(400, "invalid_request", f"{where}: text must be a string", "messages")
            texts.append(part["text"])
        elif ptype in ("image_url", "image"):
            visuals.append(Visual("image", [_url(part.get(ptype), where)]))
        elif ptype in ("video_url", "video"):
            value = part.get(ptype)
            if isinstance(value, list):  # Qwen-style: a video given as its frames
                visuals.append(Visual("frames", [_url(v, f"{where}[{j}]") for j, v in enumerate(value)]))
            else:
                visuals.append(Visual("video", [_url(value, where)]))
        else:
            raise RequestError(400, "invalid_request", f"{where}: unsupported type {ptype!r}", "messages")
    return Message(sys_text, "\n".join(texts), visuals)


def _text_only(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "\n".join(str(p.get("text", "")) for p in content)
    raise RequestError(400, "invalid_request", f"{where}: a system message holds text only", "messages")


# --------------------------------------------------------------------------------------------------------------------


@dataclass
class ChatPlan:
    """A checked chat request: what to judge and how to answer, media not loaded yet."""

    prompt: str
    candidates: list[Visual]  # the items judged (images or videos); empty for answers
    media: list[Visual]  # what the question is about (answer tasks)
    answers: list[str] | None
    modality: str
    kind: str
    dimensions: list[str]
    allow_tie: bool
    reply: str
    scale: str
    template: str | None
    options: JudgeOptions
    n: int
    budget_tokens: int | None
    frame_fps: float = 1.0
    use_reward: bool = False
    settings: JudgeSettings = field(default_factory=JudgeSettings)


class ChatRequests:
    def __init__(self, requests: RequestTasks) -> None:
        self.requests = requests

    def plan(self, req: ChatCompletionRequest, profile: str | None) -> ChatPlan:
        """``profile``: the reply profile of the served name the request used (None: none of its own)."""
        lim = self.requests.lim
        if req.stream:
            raise RequestError(400, "unsupported", "stream=true is not supported; the judgment comes whole", "stream")
        if req.logprobs:
            raise RequestError(
                400,
                "unsupported",
                "logprobs are not returned for a judging trajectory (its text is rendered, not sampled as sent); "
                "ask for mmreward.reward=true for the probability of each verdict",
                "logprobs",
            )
        if req.n > lim.max_n:
            raise limit_error("max_n", f"n={req.n} is above {lim.max_n}")
        budget = req.max_completion_tokens or req.max_tokens
        if budget is not None and budget > lim.max_completion_tokens:
            raise limit_error(
                "max_completion_tokens",
                f"max_tokens={budget} is above this server's max_completion_tokens={lim.max_completion_tokens} "
                "(tokens over all of a judgment's turns); ask for at most that",
            )
        opts = dict(req.mmreward or {})
        unknown = set(opts) - CHAT_OPTIONS
        if unknown:
            raise RequestError(400, "invalid_request", f"unknown mmreward options {sorted(unknown)}", "mmreward")
        msg = read_messages(req.messages)
        for where, text in (("system", msg.system), ("user", msg.text)):
            self.requests.check_text(text, f"{where} message text")

        template = opts.get("template", "auto")
        if template not in ("auto", "none", *TEMPLATES):
            raise RequestError(
                400,
                "invalid_request",
                f"mmreward.template must be auto, none or one of {sorted(TEMPLATES)}",
                "mmreward",
            )
        instruction = None
        if template != "none":
            full = "\n".join(t for t in (msg.system, msg.text) if t)
            instruction = recognise(full, None if template == "auto" else template)
            if instruction is None and template != "auto":
                raise RequestError(
                    400, "invalid_request", f"the text does not follow template {template!r}", "mmreward"
                )
        if instruction is None and msg.system.strip():
            raise RequestError(
                400,
                "unsupported_conversation",
                "a system message is not used by an mmreward judge (its own system prompt is part of its training) "
                "and the text follows no known client template; send the prompt in the user message only",
                "messages",
            )
        prompt = instruction.prompt if instruction else _PLACEHOLDER.sub("", msg.text).strip()
        if not prompt:
            raise RequestError(400, "invalid_request", "the user message has no text (the prompt)", "messages")

        if opts.get("modality") not in (None, "image", "video"):
            raise RequestError(400, "invalid_request", "mmreward.modality must be image or video", "mmreward")
        modality = opts.get("modality") or (instruction.modality if instruction else None)
        answers = opts.get("candidates") or (instruction.answers if instruction else None)
        if answers is not None and (not isinstance(answers, list) or not all(isinstance(a, str) for a in answers)):
            raise RequestError(400, "invalid_request", "mmreward.candidates must be a list of strings", "mmreward")
        kind = opts.get("kind") or (instruction.kind if instruction else None)
        dims = list(opts.get("dimensions") or (instruction.dimensions if instruction else []))
        reply = opts.get("reply") or profile or (instruction.reply if instruction else "mmreward")
        if reply not in REPLY_FORMATS:
            raise RequestError(
                400, "invalid_request", f"mmreward.reply must be one of {sorted(REPLY_FORMATS)}", "mmreward"
            )
        scale = opts.get("scale") or REPLY_FORMATS[reply].scale
        if scale not in SCALES:
            raise RequestError(400, "invalid_request", f"mmreward.scale must be one of {sorted(SCALES)}", "mmreward")
        frame_fps = float(opts.get("frame_fps", 1.0))
        if not 0 < frame_fps <= 240:
            raise RequestError(400, "invalid_request", "mmreward.frame_fps must be in (0, 240]", "mmreward")

        candidates, media = self._candidates(msg.visuals, modality, kind, answers)
        for i, a in enumerate(answers or []):
            self.requests.check_text(a, f"answer {i + 1}")
        if answers:
            modality = "answer"
        else:
            modality = "video" if candidates[0].kind != "image" else "image"
        n_cand = len(answers) if answers else len(candidates)
        kind = kind or ("pointwise" if n_cand == 1 else "multi" if dims else "pairwise")
        if REPLY_FORMATS[reply].pair_scores and (n_cand != 2 or answers):
            raise RequestError(400, "invalid_request", "reply pair_score scores two images or videos", "mmreward")

        # A judge is greedy by default. n > 1 samples (OpenAI's default temperature is 1) unless told otherwise;
        # at temperature 0 the n choices are one greedy judgment, as vLLM returns n identical choices.
        temperature = req.temperature if req.temperature is not None else (0.0 if req.n == 1 else 1.0)
        votes = req.n if temperature > 0 else 1
        options = JudgeOptions(
            swap=opts.get("swap", "none"),
            votes=votes,
            tools=bool(opts.get("tools", True)),
            reward=bool(opts.get("reward", False)),
            temperature=temperature,
            top_p=req.top_p if req.top_p is not None else 1.0,
            seed=req.seed,
            min_tokens=int(opts.get("min_tokens", 0)),  # fixed-work benchmarks: no end of turn before this
        )
        return ChatPlan(
            prompt=prompt,
            candidates=candidates,
            media=media,
            answers=list(answers) if answers else None,
            modality=modality,
            kind=kind,
            dimensions=dims,
            allow_tie=bool(opts.get("allow_tie", False)),
            reply=reply,
            scale=scale,
            template=instruction.template if instruction else None,
            options=options,
            n=req.n,
            budget_tokens=budget,
            frame_fps=frame_fps,
            use_reward=options.reward,
            settings=RequestTasks.judge_settings(options),
        )

    def _candidates(
        self, visuals: list[Visual], modality: str | None, kind: str | None, answers: list[str] | None
    ) -> tuple[list[Visual], list[Visual]]:
        """The items judged, and the media a question is about. Images sent as a video's frames (modality video,
        or a video template) become one clip per candidate: all of them for one video, the first half and the
        second half for two (the clients' convention)."""
        kinds = {v.kind for v in visuals}
        if "image" in kinds and kinds & {"video", "frames"}:
            raise RequestError(400, "invalid_request", "mix of images and videos in one message", "messages")
        frames = [v.refs[0] for v in visuals if v.kind == "image"]
        if modality == "video" and frames:
            pair = kind in ("pairwise", "multi") or (kind is None and len(frames) > 1 and not answers)
            if pair and len(frames) % 2:
                raise RequestError(
                    400,
                    "invalid_request",
                    f"{len(frames)} frames for two videos: send the same number of frames for each, the first "
                    "half for Video 1 and the second half for Video 2",
                    "messages",
                )
            half = len(frames) // 2
            visuals = (
                [Visual("frames", frames[:half]), Visual("frames", frames[half:])]
                if pair
                else [Visual("frames", frames)]
            )
        n_images = sum(len(v.refs) for v in visuals)
        self.requests.count_media(
            ["image"] * n_images if "image" in kinds or "frames" in kinds else ["video"] * len(visuals)
        )
        if answers:
            if len(answers) not in (1, 2):
                raise RequestError(
                    400, "invalid_request", f"{len(answers)} answers: send 1 (score) or 2 (compare)", "mmreward"
                )
            return [], visuals
        if len(visuals) not in (1, 2):
            hint = (
                "; if the images are a video's frames, say so with mmreward.modality='video' (the first half is "
                "Video 1, the second half Video 2)"
                if kinds == {"image"} and len(visuals) > 2
                else ""
            )
            raise RequestError(
                400,
                "invalid_request",
                f"the user message must carry 1 (score) or 2 (compare) images/videos, not {len(visuals)}{hint}",
                "messages",
            )
        return visuals, []

    # ---------------------------------------------------------------------------------------------------------------
    def _load(self, v: Visual, where: str, fps: float, name: str) -> Any:
        if v.kind == "image":
            return self.requests.load(v.refs[0], "image", where)
        if v.kind == "video":
            return self.requests.load(v.refs[0], "video", where)
        frames = [self.requests.load(r, "image", f"{where} frame {j}") for j, r in enumerate(v.refs)]
        try:
            return clip_from_frames(frames, fps, name)
        except MediaError as exc:
            raise RequestError(400, "invalid_media", f"{where}: {exc}", "messages") from None

    def tasks(self, plan: ChatPlan) -> list[JudgeTask]:
        """The judging tasks (blocks: loads media). One task, or one pointwise task per candidate for pair_score."""
        common = dict(dimensions=plan.dimensions, id="chat")
        if plan.answers:
            media = [
                self._load(v, f"media {i + 1}", plan.frame_fps, f"video_{i + 1}") for i, v in enumerate(plan.media)
            ]
            media_kind = "image" if not plan.media or plan.media[0].kind == "image" else "video"
            return [
                self.requests.task(
                    prompt=plan.prompt,
                    candidates=list(plan.answers),
                    modality="answer",
                    media=media,
                    media_kind=media_kind,
                    kind=plan.kind,
                    allow_tie=plan.allow_tie,
                    **common,
                )
            ]
        loaded = [
            self._load(v, f"candidate {i + 1}", plan.frame_fps, f"video_{i + 1}")
            for i, v in enumerate(plan.candidates)
        ]
        if REPLY_FORMATS[plan.reply].pair_scores:
            return [
                self.requests.task(
                    prompt=plan.prompt, candidates=[c], modality=plan.modality, kind="pointwise", **common
                )
                for c in loaded
            ]
        return [
            self.requests.task(
                prompt=plan.prompt,
                candidates=loaded,
                modality=plan.modality,
                kind=plan.kind,
                allow_tie=plan.allow_tie,
                **common,
            )
        ]


# --------------------------------------------------------------------------------------------------------------------


def choices(judge: Judge, plan: ChatPlan, tasks: list[JudgeTask], judgments: list[Judgment]) -> list[dict[str, Any]]:
    """One choice per requested ``n``: with sampling, choice ``k`` is vote ``k`` decided across the presented
    orders; at temperature 0 every choice is the one greedy judgment. The text is in the client's wording."""
    fmt = REPLY_FORMATS[plan.reply]
    votes = plan.options.votes
    out = []
    for k in range(plan.n):
        v = k % votes
        per_task = [_vote(judge, plan, t, j, v) for t, j in zip(tasks, judgments)]
        if fmt.pair_scores:
            reply = Reply(
                reasoning_of([t for j in per_task for t in j.trajectories]),
                plan.modality,
                "pairwise",
                scores=[reply_from(j, plan.modality, "pointwise", plan.use_reward).score for j in per_task],
                dimension_scores=[dict(j.dimensions) for j in per_task],
            )
        else:
            reply = reply_from(per_task[0], plan.modality, plan.kind, plan.use_reward)
        trajs = [t for j in per_task for t in j.trajectories]
        decided = all(j.outcome != "failed" for j in per_task)
        finish = "stop" if decided or not any(t.stop_reason in CUT for t in trajs) else "length"
        out.append(
            {
                "index": k,
                "message": {"role": "assistant", "content": fmt.render(reply, plan.scale)},
                "finish_reason": finish,
                "logprobs": None,
            }
        )
    return out


def _vote(judge: Judge, plan: ChatPlan, task: JudgeTask, j: Judgment, v: int) -> Judgment:
    votes = plan.options.votes
    if votes == 1:
        return j
    return judge.aggregate(task, j.trajectories[v::votes], plan.settings)


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"
