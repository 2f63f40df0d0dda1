"""The judge API (FastAPI): judgments, group rewards for generators' RL loops, and an OpenAI-compatible chat
endpoint, in front of one batched model worker.

Endpoints:

* ``POST /v1/judge``: one judgment (pairwise, pointwise, multi-dimensional; images, videos or answers):
  verdict, scores, reasoning, tool trace and timings.
* ``POST /v1/rewards``: rewards for a generator's groups of items (one group, or a whole RL batch of them):
  ``pointwise`` (a score per item) or ``pairwise_winrate`` (each item's win rate against every other item of its
  group, as Pref-GRPO does). A failed item is reported in ``failures`` with a ``null`` reward (or the request's
  ``failure_value``) and never fails its neighbours.
* ``POST /v1/chat/completions``: OpenAI-compatible, and a drop-in for the reward clients of flow_grpo, Pref-GRPO,
  MixGRPO and UnifiedReward (see :mod:`mmreward.server.chat` and :mod:`mmreward.server.replies`): their
  instruction templates are recognised, frame lists become clips, and the verdict is written the way each
  client parses it. Extra options go in ``mmreward`` (``extra_body`` in the ``openai`` client).
* ``GET /health`` (no token needed), ``GET /v1/models``, ``GET /metrics`` (Prometheus).

When a client disconnects or its request times out, its queued work is dropped and its running trajectories
stop at their next turn (``mmreward_cancelled_total``).

Errors are JSON in OpenAI's shape, ``{"error": {"message", "type", "code", "param"}}``; a limit that was
exceeded is named in ``param``. No stack trace ever reaches a client.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from mmreward.generators import SamplingSettings
from mmreward.judge import Judge, JudgeSettings, Judgment
from mmreward.protocol import JudgeTask
from mmreward.server.batcher import Batcher, QueueFull
from mmreward.server.chat import ChatRequests, choices, completion_id
from mmreward.server.inputs import MediaResolver, RequestError
from mmreward.server.metrics import ServerMetrics
from mmreward.server.passthrough import Upstream, check_passthrough
from mmreward.server.schemas import ChatCompletionRequest, JudgeRequest, RewardsRequest
from mmreward.server.settings import ServerSettings
from mmreward.server.tasks import RequestTasks, group_rewards
from mmreward.trajectory import Trajectory

logger = logging.getLogger(__name__)

DISCONNECTED = "mmreward.disconnected"  # scope key: an asyncio.Event set when the client goes away
ENDPOINTS = {"/v1/judge", "/v1/rewards", "/v1/chat/completions", "/health", "/v1/models", "/metrics"}


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
        # The client's disconnect, watched from here: the routes read it to cancel work nobody waits for.
        disconnected = asyncio.Event()
        scope[DISCONNECTED] = disconnected

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": payload, "more_body": False}
            await disconnected.wait()
            return {"type": "http.disconnect"}

        async def watch():
            while (await receive())["type"] != "http.disconnect":
                pass
            disconnected.set()

        watcher = asyncio.create_task(watch())
        try:
            await self.app(scope, replay, send)
        finally:
            watcher.cancel()

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
    lim = settings.limits
    judge.engine.settings.limits = lim.media_limits()
    default_max_tokens = getattr(getattr(judge.engine.generator, "sampling", None), "max_new_tokens", 256)
    requests = RequestTasks(MediaResolver(settings), lim, default_max_tokens)
    served = settings.served_names
    chats = ChatRequests(requests)
    upstream = passthrough_upstream(judge, settings)

    def on_batch(n_tasks: int, seconds: float) -> None:
        metrics.batch_size.observe(n_tasks)
        metrics.batch_seconds.observe(seconds)

    batcher = Batcher(
        judge,
        settings.max_batch,
        settings.batch_wait_ms,
        settings.max_queue,
        settings.batch_max_wait_ms,
        settings.engine_threads,
        on_batch,
        on_cancel=lambda stage: metrics.cancelled.labels(stage).inc(),
        upstream=upstream,
    )
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
        description="Judgments (`/v1/judge`), group rewards for generators' RL loops (`/v1/rewards`) and an "
        "OpenAI-compatible chat endpoint (`/v1/chat/completions`) served by a thinking multimodal judge. Media are "
        "base64 data URLs; options of the chat endpoint ride in `extra_body.mmreward`.",
        docs_url="/docs" if settings.docs else None,
        redoc_url="/redoc" if settings.docs else None,
        openapi_url="/openapi.json" if settings.docs else None,
    )
    public = {"/health"} | ({"/docs", "/redoc", "/openapi.json"} if settings.docs else set())
    app.state.batcher, app.state.metrics, app.state.settings = batcher, metrics, settings
    app.add_middleware(BodyLimit, max_bytes=lim.max_body_bytes, metrics=metrics)

    # ---------------------------------------------------------------------------------------------------------------
    @app.middleware("http")
    async def observe(request: Request, call_next):
        start = time.perf_counter()
        endpoint = _endpoint(request.url.path)
        if settings.token is not None and request.url.path not in public and not _authorized(request, settings.token):
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
        if first.get("type") == "json_invalid":  # its location is a character offset, not a field
            return JSONResponse(
                error_body(
                    f"the request body is not valid JSON ({first.get('ctx', {}).get('error', 'parse error')} at "
                    f"character {first.get('loc', ('', '?'))[-1]})",
                    "invalid_request_error",
                    "invalid_json",
                ),
                400,
            )
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

    def turn_budget(max_tokens: int | None) -> int | None:
        """A per-turn max_tokens above the trajectory's token budget raises that budget, so a turn can use it."""
        budget = judge.engine.settings.budget.max_tokens
        return max_tokens if max_tokens is not None and budget is not None and max_tokens > budget else None

    # ---------------------------------------------------------------------------------------------------------------
    async def run_tasks(
        request: Request,
        tasks: list[JudgeTask],
        js: list[JudgeSettings],
        sampling: SamplingSettings,
        budget_tokens: int | None = None,
        forward: dict | None = None,
    ):
        if state["shutting_down"]:
            raise RequestError(503, "shutting_down", "the server is shutting down")
        try:
            job = batcher.enqueue(tasks, js, sampling, budget_tokens, forward)
        except QueueFull as exc:
            metrics.errors.labels("queue_full").inc()
            raise _Busy(str(exc)) from None
        # Wait for the judgment, the client going away (its work is cancelled) or the timeout, whichever comes
        # first, sleeping on all three: polling every 0.1 s woke the event loop 320 times a second at 32 requests.
        gone = request.scope.get(DISCONNECTED)
        watcher = asyncio.ensure_future(gone.wait()) if gone is not None else None
        try:
            await asyncio.wait(
                {job.future} | ({watcher} if watcher else set()),
                timeout=settings.request_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            if watcher is not None:
                watcher.cancel()
        if not job.future.done():
            job.cancel()
            if gone is not None and gone.is_set():
                metrics.errors.labels("client_gone").inc()
                raise RequestError(499, "client_closed_request", "the client went away")
            metrics.errors.labels("timeout").inc()
            raise RequestError(504, "timeout", f"no judgment within request_timeout_s={settings.request_timeout_s}")
        judgments = job.future.result()
        if forward is not None:
            return judgments, {}
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
            "data": [{"id": name, "object": "model", "created": 0, "owned_by": "mmreward"} for name in served],
        }

    @app.get("/metrics")
    async def prometheus():
        metrics.queue_depth.set(batcher.depth)
        return Response(metrics.render(), media_type=metrics.content_type)

    # ---------------------------------------------------------------------------------------------------------------
    @app.post("/v1/judge")
    async def judge_one(req: JudgeRequest, request: Request):
        start = time.perf_counter()
        sampling = requests.sampling(req)
        task = await run_in_threadpool(requests.judge_task, req)
        (judgment,), timings = await run_tasks(
            request, [task], [requests.judge_settings(req)], sampling, turn_budget(req.max_tokens)
        )
        timings["total_s"] = round(time.perf_counter() - start, 4)
        return judgment_json(judgment, timings, req.return_trajectories)

    @app.post("/v1/rewards")
    async def rewards(req: RewardsRequest, request: Request):
        start = time.perf_counter()
        sampling = requests.sampling(req)
        groups = requests.reward_groups(req)
        loaded, failed = await run_in_threadpool(requests.load_groups, req, groups)
        pairs, tasks = requests.reward_tasks(req, groups, loaded, failed)
        judgments: list[Judgment] = []
        timings: dict[str, Any] = {}
        if tasks:
            js = [requests.judge_settings(req)] * len(tasks)
            judgments, timings = await run_tasks(request, tasks, js, sampling, turn_budget(req.max_tokens))
        body = group_rewards(req, groups, pairs, judgments, failed)
        timings["total_s"] = round(time.perf_counter() - start, 4)
        body["timings"] = timings
        return body

    @app.post("/v1/chat/completions")
    async def chat(req: ChatCompletionRequest, request: Request):
        start = time.perf_counter()
        if req.model not in served:
            raise RequestError(
                404, "model_not_found", f"model {req.model!r} is not served here; use one of {sorted(served)}", "model"
            )
        if req.model in settings.passthrough:
            body = check_passthrough(req, requests, settings.allow_url_hosts)
            body["model"] = upstream.model
            (status, reply), _ = await run_tasks(request, [], [], SamplingSettings(), forward=body)
            if isinstance(reply, dict) and "model" in reply:
                reply["model"] = req.model
            return JSONResponse(reply, status_code=status)
        plan = chats.plan(req, served[req.model])
        sampling = requests.sampling(plan.options)
        tasks = await run_in_threadpool(chats.tasks, plan)
        judgments, timings = await run_tasks(
            request, tasks, [plan.settings] * len(tasks), sampling, plan.budget_tokens
        )
        trajs = [t for j in judgments for t in j.trajectories]
        prompt_tokens = sum(t.prompt_tokens for t in trajs)
        completion_tokens = sum(t.completion_tokens for t in trajs)
        timings["total_s"] = round(time.perf_counter() - start, 4)
        summary = judgment_json(judgments[0], timings, False)
        if len(judgments) > 1:
            summary["candidates"] = [judgment_json(j, {}, False) for j in judgments]
        summary.update(reply=plan.reply, scale=plan.scale, template=plan.template)
        return {
            "id": completion_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.model,
            "choices": choices(judge, plan, tasks, judgments),
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "mmreward": summary,
        }

    return app


def passthrough_upstream(judge: Judge, settings: ServerSettings) -> Upstream | None:
    """Where passthrough names go: the vllm backend's server. Refuses passthrough names on any other backend."""
    if not settings.passthrough:
        return None
    remote = getattr(judge.engine.generator, "settings", None)
    if remote is None or not hasattr(remote, "base_url"):
        raise ValueError("passthrough names need the vllm backend (--backend vllm --vllm-url ...)")
    return Upstream(remote.base_url, remote.model, remote.api_key, remote.timeout_s, remote.concurrency)


class _Busy(Exception):
    pass


def _authorized(request: Request, token: str) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


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
