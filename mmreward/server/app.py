"""The judge API (FastAPI): judgments, group rewards for generators' RL loops, and an OpenAI-compatible chat
endpoint, in front of one batched model worker.

Endpoints:

* ``POST /v1/judge``: one judgment (pairwise, pointwise, multi-dimensional; images, videos or answers):
  verdict, scores, reasoning, tool trace and timings.
* ``POST /v1/rewards``: rewards for a generator's group of N items: ``pointwise`` (a score per item) or
  ``pairwise_winrate`` (each item's win rate against every other item of the group, as Pref-GRPO does). A
  failed item is reported in ``failures`` with a ``null`` reward, never scored 0.
* ``POST /v1/chat/completions``: OpenAI-compatible. The last user message's text is the prompt; its one or two
  images (``image_url`` data URLs) or videos (``video_url``) are the candidates (pointwise / pairwise); each of
  the ``n`` choices is one judging trajectory (reasoning, tool calls, ``<answer>``). Extra options go in
  ``mmreward`` (``extra_body`` in the ``openai`` client): ``kind``, ``dimensions``, ``allow_tie``, ``tools``,
  ``swap``, and ``candidates`` (answer texts, the images then being what the question is about).
* ``GET /health`` (no token needed), ``GET /v1/models``, ``GET /metrics`` (Prometheus).

Errors are JSON in OpenAI's shape, ``{"error": {"message", "type", "code", "param"}}``; a limit that was
exceeded is named in ``param``. No stack trace ever reaches a client.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from mmreward.judge import Judge, JudgeSettings, Judgment
from mmreward.protocol import JudgeTask
from mmreward.rollout import SamplingSettings, Trajectory
from mmreward.server.batcher import Batcher, QueueFull
from mmreward.server.inputs import MediaResolver, RequestError, limit_error
from mmreward.server.metrics import ServerMetrics
from mmreward.server.schemas import ChatCompletionRequest, JudgeOptions, JudgeRequest, RewardItem, RewardsRequest
from mmreward.server.settings import ServerSettings

logger = logging.getLogger(__name__)

ENDPOINTS = {"/v1/judge", "/v1/rewards", "/v1/chat/completions", "/health", "/v1/models", "/metrics"}
# Refusals that concern the whole request (security rules, limits), as opposed to one unusable media item.
REQUEST_LEVEL = {"local_paths_disabled", "path_not_allowed", "url_fetch_disabled", "address_not_allowed"}


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "code": code, "param": param}}


class BodyLimit:
    """ASGI middleware: refuse request bodies above ``max_bytes`` (by Content-Length, or while streaming in)."""

    def __init__(self, app, max_bytes: int, metrics: ServerMetrics) -> None:
        self.app, self.max_bytes, self.metrics = app, max_bytes, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        try:
            too_big = length is not None and int(length) > self.max_bytes
        except ValueError:
            too_big = True
        if too_big:
            await self._refuse(scope, receive, send)
            return
        chunks, total, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            total += len(body)
            if total > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(body)
            more = message.get("more_body", False)
        payload = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": payload, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope, receive, send) -> None:
        self.metrics.errors.labels("limit_exceeded").inc()
        self.metrics.requests.labels(_endpoint(scope.get("path", "")), "413").inc()
        body = error_body(
            f"request body above {self.max_bytes} bytes (limit max_body_bytes)",
            "invalid_request_error",
            "limit_exceeded",
            "max_body_bytes",
        )
        response = JSONResponse(body, status_code=413, headers={"Connection": "close"})
        await response(scope, receive, send)


def _endpoint(path: str) -> str:
    return path if path in ENDPOINTS else "other"


# --------------------------------------------------------------------------------------------------------------------


def create_app(judge: Judge, settings: ServerSettings | None = None) -> FastAPI:
    """The FastAPI app around ``judge``; the batching worker starts and stops with the app's lifespan."""
    settings = settings or ServerSettings()
    metrics = ServerMetrics()
    resolver = MediaResolver(settings)
    lim = settings.limits
    judge.engine.settings.limits = lim.media_limits()

    def on_batch(n_tasks: int, seconds: float) -> None:
        metrics.batch_size.observe(n_tasks)
        metrics.batch_seconds.observe(seconds)

    batcher = Batcher(judge, settings.max_batch, settings.batch_wait_ms, settings.max_queue, on_batch)
    state = {"shutting_down": False}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        state["shutting_down"] = True
        await run_in_threadpool(batcher.stop, settings.graceful_shutdown_s)

    app = FastAPI(
        title="mmreward judge API",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.batcher, app.state.metrics, app.state.settings = batcher, metrics, settings
    app.add_middleware(BodyLimit, max_bytes=lim.max_body_bytes, metrics=metrics)

    # ---------------------------------------------------------------------------------------------------------------
    @app.middleware("http")
    async def observe(request: Request, call_next):
        start = time.perf_counter()
        endpoint = _endpoint(request.url.path)
        if settings.token is not None and request.url.path != "/health" and not _authorized(request, settings.token):
            metrics.errors.labels("unauthorized").inc()
            metrics.requests.labels(endpoint, "401").inc()
            return JSONResponse(
                error_body("missing or invalid bearer token", "authentication_error", "invalid_api_key"),
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        response = await call_next(request)
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
        metrics.queue_depth.set(batcher.depth)
        return response

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError):
        metrics.errors.labels(exc.code).inc()
        return JSONResponse(error_body(exc.message, "invalid_request_error", exc.code, exc.param), exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        metrics.errors.labels("validation").inc()
        problems = []
        for e in exc.errors()[:10]:
            where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
            problems.append(f"{where or 'body'}: {e.get('msg', 'invalid')}")
        first = exc.errors()[0] if exc.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or None
        return JSONResponse(
            error_body("invalid request: " + "; ".join(problems), "invalid_request_error", "invalid_request", param),
            422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        metrics.errors.labels(f"http_{exc.status_code}").inc()
        return JSONResponse(
            error_body(str(exc.detail), "invalid_request_error", f"http_{exc.status_code}"), exc.status_code
        )

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception):
        logger.exception("internal error on %s", request.url.path)
        metrics.errors.labels("internal").inc()
        return JSONResponse(error_body("internal error; see the server log", "server_error", "internal_error"), 500)

    # ---------------------------------------------------------------------------------------------------------------
    async def run_tasks(tasks: list[JudgeTask], js: list[JudgeSettings], sampling: SamplingSettings):
        if state["shutting_down"]:
            raise RequestError(503, "shutting_down", "the server is shutting down")
        try:
            judgments, job = await asyncio.wait_for(
                batcher.submit(tasks, js, sampling), timeout=settings.request_timeout_s
            )
        except QueueFull as exc:
            metrics.errors.labels("queue_full").inc()
            raise _Busy(str(exc)) from None
        except asyncio.TimeoutError:
            metrics.errors.labels("timeout").inc()
            raise RequestError(
                504, "timeout", f"no judgment within request_timeout_s={settings.request_timeout_s}"
            ) from None
        for j in judgments:
            for t in j.trajectories:
                metrics.trajectories.labels(t.stop_reason).inc()
                metrics.tokens.labels("prompt").inc(t.prompt_tokens)
                metrics.tokens.labels("completion").inc(t.completion_tokens)
        timings = {
            "queue_s": round(job.started - job.enqueued, 4),
            "compute_s": round(job.finished - job.started, 4),
            "batch_tasks": job.batch_tasks,
        }
        return judgments, timings

    @app.exception_handler(_Busy)
    async def _busy(request: Request, exc: _Busy):
        return JSONResponse(
            error_body(f"server busy: {exc}; retry later", "server_busy", "queue_full"),
            503,
            headers={"Retry-After": "1"},
        )

    def sampling_of(o: JudgeOptions) -> SamplingSettings:
        if o.votes > lim.max_n:
            raise limit_error("max_n", f"votes={o.votes} is above {lim.max_n}")
        if o.max_tokens is not None and o.max_tokens > lim.max_tokens:
            raise limit_error("max_tokens", f"max_tokens={o.max_tokens} is above {lim.max_tokens}")
        if o.votes > 1 and o.temperature == 0:
            raise RequestError(400, "invalid_request", "votes > 1 needs temperature > 0 (greedy votes are identical)")
        default = getattr(getattr(judge.engine.generator, "sampling", None), "max_new_tokens", 256)
        max_new = o.max_tokens or default
        if o.min_tokens > max_new:
            raise RequestError(400, "invalid_request", f"min_tokens={o.min_tokens} is above max_tokens={max_new}")
        seed = o.seed if o.seed is not None else 0
        return SamplingSettings(max_new, o.temperature, o.top_p, seed, min_new_tokens=o.min_tokens)

    def judge_settings(o: JudgeOptions, **over) -> JudgeSettings:
        s = dict(swap=o.swap, votes=o.votes, tools=o.tools, reward=o.reward)
        s.update(over)
        return JudgeSettings(**s)

    def check_text(text: str, where: str) -> None:
        if len(text) > lim.max_text_chars:
            raise limit_error("max_text_chars", f"{where}: {len(text)} characters, above {lim.max_text_chars}")

    def load(ref: str, kind: str, where: str):
        return resolver.image(ref, where) if kind == "image" else resolver.video(ref, where)

    def count_media(kinds: list[str]) -> None:
        n_img, n_vid = kinds.count("image"), kinds.count("video")
        if n_img > lim.max_images:
            raise limit_error("max_images", f"{n_img} images in one request, above {lim.max_images}")
        if n_vid > lim.max_videos:
            raise limit_error("max_videos", f"{n_vid} videos in one request, above {lim.max_videos}")

    def make_task(**kw) -> JudgeTask:
        try:
            return JudgeTask(**kw)
        except ValueError as exc:
            raise RequestError(400, "invalid_request", str(exc)) from None

    # ---------------------------------------------------------------------------------------------------------------
    @app.get("/health")
    async def health():
        status = "shutting_down" if state["shutting_down"] else "ok"
        body = {
            "status": status,
            "model": settings.model_name,
            "queue_depth": batcher.depth,
            "max_queue": settings.max_queue,
            "max_batch": settings.max_batch,
        }
        return JSONResponse(body, status_code=503 if state["shutting_down"] else 200)

    @app.get("/v1/models")
    async def models():
        return {
            "object": "list",
            "data": [{"id": settings.model_name, "object": "model", "created": 0, "owned_by": "mmreward"}],
        }

    @app.get("/metrics")
    async def prometheus():
        metrics.queue_depth.set(batcher.depth)
        return Response(metrics.render(), media_type=metrics.content_type)

    # ---------------------------------------------------------------------------------------------------------------
    @app.post("/v1/judge")
    async def judge_one(req: JudgeRequest):
        start = time.perf_counter()
        sampling = sampling_of(req)
        check_text(req.prompt, "prompt")
        kind = req.kind or ("pointwise" if len(req.candidates) == 1 else "multi" if req.dimensions else "pairwise")

        def build() -> JudgeTask:
            if req.modality == "answer":
                for i, c in enumerate(req.candidates):
                    check_text(c, f"candidates[{i}]")
                count_media([req.media_kind] * len(req.media))
                media = [load(m, req.media_kind, f"media[{i}]") for i, m in enumerate(req.media)]
                candidates = list(req.candidates)
            else:
                if req.media:
                    raise RequestError(400, "invalid_request", "media is only for modality=answer", "media")
                count_media([req.modality] * len(req.candidates))
                candidates = [load(c, req.modality, f"candidates[{i}]") for i, c in enumerate(req.candidates)]
                media = []
            return make_task(
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

        task = await run_in_threadpool(build)
        (judgment,), timings = await run_tasks([task], [judge_settings(req)], sampling)
        timings["total_s"] = round(time.perf_counter() - start, 4)
        return judgment_json(judgment, timings, req.return_trajectories)

    @app.post("/v1/rewards")
    async def rewards(req: RewardsRequest):
        start = time.perf_counter()
        sampling = sampling_of(req)
        n = len(req.items)
        if n > lim.max_items:
            raise limit_error("max_items", f"{n} items in one group, above {lim.max_items}")
        items = [it if isinstance(it, RewardItem) else RewardItem(media=it) for it in req.items]
        prompts = [it.prompt or req.prompt for it in items]
        if any(not p for p in prompts):
            raise RequestError(400, "invalid_request", "give `prompt` for the group or a prompt for every item")
        for i, p in enumerate(prompts):
            check_text(p, f"items[{i}].prompt")
        if req.mode == "pairwise_winrate":
            if n < 2:
                raise RequestError(400, "invalid_request", "pairwise_winrate needs at least 2 items")
            if len(set(prompts)) > 1:
                raise RequestError(400, "invalid_request", "pairwise_winrate compares items of one prompt")
        count_media([req.modality] * n)

        def build() -> tuple[list[Any], dict[int, str]]:
            loaded: list[Any] = [None] * n
            failed: dict[int, str] = {}
            for i, it in enumerate(items):
                try:
                    loaded[i] = load(it.media, req.modality, f"items[{i}]")
                except RequestError as exc:
                    if exc.code in REQUEST_LEVEL or exc.code == "limit_exceeded":
                        raise
                    failed[i] = exc.message
            return loaded, failed

        loaded, failed = await run_in_threadpool(build)
        ok = [i for i in range(n) if i not in failed]
        kind_multi = "multi" if req.dimensions else "pairwise"
        if req.mode == "pointwise":
            pairs: list[tuple[int, ...]] = [(i,) for i in ok]
            tasks = [
                make_task(
                    prompt=prompts[i],
                    candidates=[loaded[i]],
                    modality=req.modality,
                    kind="pointwise",
                    dimensions=req.dimensions,
                    id=f"item-{i}",
                )
                for i in ok
            ]
        else:
            pairs = [(i, j) for a, i in enumerate(ok) for j in ok[a + 1 :]]
            tasks = [
                make_task(
                    prompt=prompts[i],
                    candidates=[loaded[i], loaded[j]],
                    modality=req.modality,
                    kind=kind_multi,
                    dimensions=req.dimensions,
                    allow_tie=True,
                    id=f"pair-{i}-{j}",
                )
                for i, j in pairs
            ]
        judgments: list[Judgment] = []
        timings: dict[str, Any] = {}
        if tasks:
            judgments, timings = await run_tasks(tasks, [judge_settings(req)] * len(tasks), sampling)
        body = group_rewards(req, n, pairs, judgments, failed)
        timings["total_s"] = round(time.perf_counter() - start, 4)
        body["timings"] = timings
        return body

    @app.post("/v1/chat/completions")
    async def chat(req: ChatCompletionRequest):
        start = time.perf_counter()
        if req.model != settings.model_name:
            raise RequestError(
                404, "model_not_found", f"model {req.model!r} is not served here; use {settings.model_name!r}", "model"
            )
        if req.stream:
            raise RequestError(400, "unsupported", "stream=true is not supported; the judgment comes whole", "stream")
        if req.n > lim.max_n:
            raise limit_error("max_n", f"n={req.n} is above {lim.max_n}")
        max_tokens = req.max_completion_tokens or req.max_tokens
        if max_tokens is not None and max_tokens > lim.max_tokens:
            raise limit_error("max_tokens", f"max_tokens={max_tokens} is above {lim.max_tokens}")
        opts = dict(req.mmreward or {})
        unknown = set(opts) - {"kind", "dimensions", "allow_tie", "tools", "swap", "candidates"}
        if unknown:
            raise RequestError(400, "invalid_request", f"unknown mmreward options {sorted(unknown)}", "mmreward")
        text, visuals = _last_user_message(req.messages)
        check_text(text, "messages[-1] text")
        if not text.strip():
            raise RequestError(400, "invalid_request", "the last user message has no text (the prompt)", "messages")
        kinds = [k for k, _ in visuals]
        count_media(kinds)
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
        sampling = sampling_of(options)
        dims = list(opts.get("dimensions") or [])
        kind = opts.get("kind") or ("pointwise" if n_cand == 1 else "multi" if dims else "pairwise")

        def build() -> JudgeTask:
            loaded = [load(ref, k, f"messages[-1].content[{i}]") for i, (k, ref) in enumerate(visuals)]
            if answers:
                if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
                    raise RequestError(400, "invalid_request", "mmreward.candidates must be a list of strings")
                for i, a in enumerate(answers):
                    check_text(a, f"mmreward.candidates[{i}]")
                media_kind = kinds[0] if kinds else "image"
                return make_task(
                    prompt=text,
                    candidates=list(answers),
                    modality="answer",
                    kind=kind,
                    media=loaded,
                    media_kind=media_kind,
                    dimensions=dims,
                    allow_tie=bool(opts.get("allow_tie", False)),
                    id="chat",
                )
            return make_task(
                prompt=text,
                candidates=loaded,
                modality=kinds[0],
                kind=kind,
                dimensions=dims,
                allow_tie=bool(opts.get("allow_tie", False)),
                id="chat",
            )

        task = await run_in_threadpool(build)
        (judgment,), timings = await run_tasks([task], [judge_settings(options)], sampling)
        choices = []
        for i, t in enumerate(judgment.trajectories):
            finish = "stop" if t.stop_reason in ("answer", "parse_failure") else "length"
            choices.append(
                {
                    "index": i,
                    "message": {"role": "assistant", "content": transcript(t)},
                    "finish_reason": finish,
                    "logprobs": None,
                }
            )
        prompt_tokens = sum(t.prompt_tokens for t in judgment.trajectories)
        completion_tokens = sum(t.completion_tokens for t in judgment.trajectories)
        timings["total_s"] = round(time.perf_counter() - start, 4)
        summary = judgment_json(judgment, timings, False)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": settings.model_name,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "mmreward": summary,
        }

    return app


class _Busy(Exception):
    pass


def _authorized(request: Request, token: str) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def _last_user_message(messages: list[dict[str, Any]]) -> tuple[str, list[tuple[str, str]]]:
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


def transcript(t: Trajectory) -> str:
    """A trajectory as one assistant message: every turn, with tool observations summarised in brackets."""
    lines = []
    for m in t.messages[2:]:
        if m["role"] == "assistant":
            lines.append(m["content"][0]["text"])
        else:
            texts = " ".join(p.get("text", "") for p in m["content"] if p.get("type") == "text").strip()
            images = [p["ref"] for p in m["content"] if p.get("type") == "image"]
            lines.append(f"[tool result: {texts}{' ' + ', '.join(images) if images else ''}]")
    if t.parse_failure and t.stop_reason != "answer":
        lines.append(f"[no verdict: {t.parse_failure}]")
    return "\n".join(lines)


def trajectory_summary(t: Trajectory) -> dict[str, Any]:
    return {
        "order": t.order,
        "stop_reason": t.stop_reason,
        "verdict": t.verdict,
        "format_ok": t.format_ok,
        "parse_failure": t.parse_failure,
        "num_turns": t.num_turns,
        "reasoning": [m["content"][0]["text"] for m in t.messages if m["role"] == "assistant"],
        "tool_trace": t.tool_trace,
        "prompt_tokens": t.prompt_tokens,
        "completion_tokens": t.completion_tokens,
    }


def judgment_json(j: Judgment, timings: dict[str, Any], with_trajectories: bool) -> dict[str, Any]:
    body = j.to_dict(with_trajectories=False)
    body["object"] = "judgment"
    body["runs"] = [trajectory_summary(t) for t in j.trajectories]
    if with_trajectories:
        body["trajectories"] = [t.to_dict() for t in j.trajectories]
    body["timings"] = timings
    body["usage"] = {
        "prompt_tokens": sum(t.prompt_tokens for t in j.trajectories),
        "completion_tokens": sum(t.completion_tokens for t in j.trajectories),
    }
    return body


def group_rewards(
    req: RewardsRequest,
    n: int,
    pairs: list[tuple[int, ...]],
    judgments: list[Judgment],
    failed: dict[int, str],
) -> dict[str, Any]:
    """Per-item rewards from pointwise scores or from pairwise win rates; failures stay visible."""
    rewards: list[float | None] = [None] * n
    details: list[dict[str, Any]] = [{"index": i} for i in range(n)]
    failures = [{"index": i, "reason": r} for i, r in sorted(failed.items())]
    if req.mode == "pointwise":
        for (i,), j in zip(pairs, judgments):
            details[i].update(outcome=j.outcome, score=j.score, dimensions=j.dimensions)
            if j.score is None:
                failures.append({"index": i, "reason": "; ".join(j.failures) or j.outcome})
                continue
            rewards[i] = (j.score - 1.0) / 9.0 if req.normalize else j.score
    else:
        wins = [0.0] * n
        played = [0] * n
        unresolved = [0] * n
        for (a, b), j in zip(pairs, judgments):
            if j.outcome == "failed":
                unresolved[a] += 1
                unresolved[b] += 1
                continue
            played[a] += 1
            played[b] += 1
            if j.outcome == "prefer":
                wins[a if j.preferred == 0 else b] += 1.0
            else:  # tie or abstain: half a win each
                wins[a] += 0.5
                wins[b] += 0.5
        for i in range(n):
            if i in failed:
                continue
            details[i].update(wins=wins[i], comparisons=played[i], failed_comparisons=unresolved[i])
            if played[i] == 0:
                failures.append({"index": i, "reason": "every comparison of this item failed"})
                continue
            rewards[i] = wins[i] / played[i]
    failures.sort(key=lambda f: f["index"])
    return {"object": "rewards", "mode": req.mode, "rewards": rewards, "details": details, "failures": failures}
