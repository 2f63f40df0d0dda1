"""Requests -> judging tasks: the checks, limits and media loading that the three judging endpoints share.

The routes in :mod:`mmreward.server.app` only sequence these calls; everything that decides what a request means
lives here. Methods that load media block, so the routes run them in a thread pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mmreward.generators import SamplingSettings
from mmreward.judge import JudgeSettings
from mmreward.protocol import JudgeTask
from mmreward.server.inputs import MediaResolver, RequestError, limit_error
from mmreward.server.schemas import ChatCompletionRequest, JudgeOptions, JudgeRequest, RewardItem, RewardsRequest
from mmreward.server.settings import RequestLimits

# Refusals that concern the whole request (security rules, limits), as opposed to one unusable media item.
REQUEST_LEVEL = {"local_paths_disabled", "path_not_allowed", "url_fetch_disabled", "address_not_allowed"}
CHAT_OPTIONS = {"kind", "dimensions", "allow_tie", "tools", "swap", "candidates"}


@dataclass
class ChatParts:
    """What a chat request asks to judge, checked but with its media not yet loaded."""

    text: str
    visuals: list[tuple[str, str]]  # (image | video, url)
    answers: list[str] | None
    kind: str
    dimensions: list[str]
    allow_tie: bool


class RequestTasks:
    def __init__(self, resolver: MediaResolver, limits: RequestLimits, default_max_tokens: int) -> None:
        self.resolver = resolver
        self.lim = limits
        self.default_max_tokens = default_max_tokens

    # ---- shared checks

    def sampling(self, o: JudgeOptions) -> SamplingSettings:
        lim = self.lim
        if o.votes > lim.max_n:
            raise limit_error("max_n", f"votes={o.votes} is above {lim.max_n}")
        if o.max_tokens is not None and o.max_tokens > lim.max_tokens:
            raise limit_error("max_tokens", f"max_tokens={o.max_tokens} is above {lim.max_tokens}")
        if o.votes > 1 and o.temperature == 0:
            raise RequestError(400, "invalid_request", "votes > 1 needs temperature > 0 (greedy votes are identical)")
        max_new = o.max_tokens or self.default_max_tokens
        if o.min_tokens > max_new:
            raise RequestError(400, "invalid_request", f"min_tokens={o.min_tokens} is above max_tokens={max_new}")
        seed = o.seed if o.seed is not None else 0
        return SamplingSettings(max_new, o.temperature, o.top_p, seed, min_new_tokens=o.min_tokens)

    @staticmethod
    def judge_settings(o: JudgeOptions) -> JudgeSettings:
        return JudgeSettings(swap=o.swap, votes=o.votes, tools=o.tools, reward=o.reward)

    def check_text(self, text: str, where: str) -> None:
        if len(text) > self.lim.max_text_chars:
            raise limit_error("max_text_chars", f"{where}: {len(text)} characters, above {self.lim.max_text_chars}")

    def count_media(self, kinds: list[str]) -> None:
        n_img, n_vid = kinds.count("image"), kinds.count("video")
        if n_img > self.lim.max_images:
            raise limit_error("max_images", f"{n_img} images in one request, above {self.lim.max_images}")
        if n_vid > self.lim.max_videos:
            raise limit_error("max_videos", f"{n_vid} videos in one request, above {self.lim.max_videos}")

    def load(self, ref: str, kind: str, where: str):
        return self.resolver.image(ref, where) if kind == "image" else self.resolver.video(ref, where)

    @staticmethod
    def task(**kw) -> JudgeTask:
        try:
            return JudgeTask(**kw)
        except ValueError as exc:
            raise RequestError(400, "invalid_request", str(exc)) from None

    # ---- /v1/judge

    def judge_task(self, req: JudgeRequest) -> JudgeTask:
        """The task of a ``/v1/judge`` request, media loaded (blocks)."""
        self.check_text(req.prompt, "prompt")
        kind = req.kind or ("pointwise" if len(req.candidates) == 1 else "multi" if req.dimensions else "pairwise")
        if req.modality == "answer":
            for i, c in enumerate(req.candidates):
                self.check_text(c, f"candidates[{i}]")
            self.count_media([req.media_kind] * len(req.media))
            media = [self.load(m, req.media_kind, f"media[{i}]") for i, m in enumerate(req.media)]
            candidates = list(req.candidates)
        else:
            if req.media:
                raise RequestError(400, "invalid_request", "media is only for modality=answer", "media")
            self.count_media([req.modality] * len(req.candidates))
            candidates = [self.load(c, req.modality, f"candidates[{i}]") for i, c in enumerate(req.candidates)]
            media = []
        return self.task(
            prompt=req.prompt,
            candidates=candidates,
            modality=req.modality,
            kind=kind,
            media=media,
            media_kind=req.media_kind,
            dimensions=req.dimensions,
            allow_tie=req.allow_tie,
            id=req.id or "request",
        )

    # ---- /v1/rewards

    def reward_prompts(self, req: RewardsRequest) -> tuple[list[RewardItem], list[str]]:
        """The group's items and each item's prompt, checked against the limits and the mode."""
        n = len(req.items)
        if n > self.lim.max_items:
            raise limit_error("max_items", f"{n} items in one group, above {self.lim.max_items}")
        items = [it if isinstance(it, RewardItem) else RewardItem(media=it) for it in req.items]
        prompts = [it.prompt or req.prompt for it in items]
        if any(not p for p in prompts):
            raise RequestError(400, "invalid_request", "give `prompt` for the group or a prompt for every item")
        for i, p in enumerate(prompts):
            self.check_text(p, f"items[{i}].prompt")
        if req.mode == "pairwise_winrate":
            if n < 2:
                raise RequestError(400, "invalid_request", "pairwise_winrate needs at least 2 items")
            if len(set(prompts)) > 1:
                raise RequestError(400, "invalid_request", "pairwise_winrate compares items of one prompt")
        self.count_media([req.modality] * n)
        return items, prompts

    def load_group(self, req: RewardsRequest, items: list[RewardItem]) -> tuple[list[Any], dict[int, str]]:
        """Each item's media (blocks); an item that cannot be used is reported, not fatal, unless the refusal
        concerns the whole request."""
        loaded: list[Any] = [None] * len(items)
        failed: dict[int, str] = {}
        for i, it in enumerate(items):
            try:
                loaded[i] = self.load(it.media, req.modality, f"items[{i}]")
            except RequestError as exc:
                if exc.code in REQUEST_LEVEL or exc.code == "limit_exceeded":
                    raise
                failed[i] = exc.message
        return loaded, failed

    def reward_tasks(
        self, req: RewardsRequest, prompts: list[str], loaded: list[Any], failed: dict[int, str]
    ) -> tuple[list[tuple[int, ...]], list[JudgeTask]]:
        """(the items each task judges, the tasks): one per usable item, or one per pair of them."""
        ok = [i for i in range(len(loaded)) if i not in failed]
        if req.mode == "pointwise":
            pairs: list[tuple[int, ...]] = [(i,) for i in ok]
            common = dict(modality=req.modality, kind="pointwise", dimensions=req.dimensions)
            return pairs, [self.task(prompt=prompts[i], candidates=[loaded[i]], id=f"item-{i}", **common) for i in ok]
        pairs = [(i, j) for a, i in enumerate(ok) for j in ok[a + 1 :]]
        kind = "multi" if req.dimensions else "pairwise"
        common = dict(modality=req.modality, kind=kind, dimensions=req.dimensions, allow_tie=True)
        tasks = [
            self.task(prompt=prompts[i], candidates=[loaded[i], loaded[j]], id=f"pair-{i}-{j}", **common)
            for i, j in pairs
        ]
        return pairs, tasks

    # ---- /v1/chat/completions

    def chat_parts(self, req: ChatCompletionRequest) -> tuple[ChatParts, JudgeOptions]:
        """What a chat request asks to judge, and with which options (checked; no media loaded)."""
        lim = self.lim
        if req.stream:
            raise RequestError(400, "unsupported", "stream=true is not supported; the judgment comes whole", "stream")
        if req.n > lim.max_n:
            raise limit_error("max_n", f"n={req.n} is above {lim.max_n}")
        max_tokens = req.max_completion_tokens or req.max_tokens
        if max_tokens is not None and max_tokens > lim.max_tokens:
            raise limit_error("max_tokens", f"max_tokens={max_tokens} is above {lim.max_tokens}")
        opts = dict(req.mmreward or {})
        unknown = set(opts) - CHAT_OPTIONS
        if unknown:
            raise RequestError(400, "invalid_request", f"unknown mmreward options {sorted(unknown)}", "mmreward")
        text, visuals = last_user_message(req.messages)
        self.check_text(text, "messages[-1] text")
        if not text.strip():
            raise RequestError(400, "invalid_request", "the last user message has no text (the prompt)", "messages")
        kinds = [k for k, _ in visuals]
        self.count_media(kinds)
        if len(set(kinds)) > 1:
            raise RequestError(400, "invalid_request", "mix of images and videos in one message", "messages")
        answers = opts.get("candidates")
        n_cand = len(answers) if answers else len(visuals)
        if n_cand not in (1, 2):
            raise RequestError(
                400,
                "invalid_request",
                f"the last user message must carry 1 (score) or 2 (compare) images/videos, not {len(visuals)} "
                "(or give mmreward.candidates: the answer texts to compare)",
                "messages",
            )
        # A judge is greedy by default; n > 1 samples (OpenAI's default temperature is 1) unless told otherwise.
        temperature = req.temperature if req.temperature is not None else (0.0 if req.n == 1 else 1.0)
        options = JudgeOptions(
            swap=opts.get("swap", "none"),
            votes=req.n,
            tools=bool(opts.get("tools", True)),
            temperature=temperature,
            top_p=req.top_p if req.top_p is not None else 1.0,
            max_tokens=max_tokens,
            seed=req.seed,
        )
        dims = list(opts.get("dimensions") or [])
        kind = opts.get("kind") or ("pointwise" if n_cand == 1 else "multi" if dims else "pairwise")
        return ChatParts(text, visuals, answers, kind, dims, bool(opts.get("allow_tie", False))), options

    def chat_task(self, parts: ChatParts) -> JudgeTask:
        """The task of a chat request, media loaded (blocks)."""
        loaded = [self.load(ref, k, f"messages[-1].content[{i}]") for i, (k, ref) in enumerate(parts.visuals)]
        kinds = [k for k, _ in parts.visuals]
        common = dict(prompt=parts.text, kind=parts.kind, dimensions=parts.dimensions, allow_tie=parts.allow_tie)
        if parts.answers:
            answers = parts.answers
            if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
                raise RequestError(400, "invalid_request", "mmreward.candidates must be a list of strings")
            for i, a in enumerate(answers):
                self.check_text(a, f"mmreward.candidates[{i}]")
            media_kind = kinds[0] if kinds else "image"
            return self.task(
                candidates=list(answers), modality="answer", media=loaded, media_kind=media_kind, id="chat", **common
            )
        return self.task(candidates=loaded, modality=kinds[0], id="chat", **common)


def last_user_message(messages: list[dict[str, Any]]) -> tuple[str, list[tuple[str, str]]]:
    """(text, [(image|video, url)]) of the last user message, in OpenAI's content-part format."""
    user = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not user:
        raise RequestError(400, "invalid_request", "no user message", "messages")
    content = user[-1].get("content")
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise RequestError(400, "invalid_request", "message content must be a string or a list of parts", "messages")
    texts, visuals = [], []
    for k, part in enumerate(content):
        if not isinstance(part, dict):
            raise RequestError(400, "invalid_request", f"content part {k} is not an object", "messages")
        ptype = part.get("type")
        if ptype == "text":
            if not isinstance(part.get("text"), str):
                raise RequestError(400, "invalid_request", f"content part {k}: text must be a string", "messages")
            texts.append(part["text"])
        elif ptype in ("image_url", "video_url"):
            value = part.get(ptype)
            url = value.get("url") if isinstance(value, dict) else value
            if not isinstance(url, str):
                raise RequestError(
                    400, "invalid_request", f"content part {k}: {ptype}.url must be a string", "messages"
                )
            visuals.append(("image" if ptype == "image_url" else "video", url))
        else:
            raise RequestError(400, "invalid_request", f"content part {k}: unsupported type {ptype!r}", "messages")
    return "\n".join(texts), visuals
