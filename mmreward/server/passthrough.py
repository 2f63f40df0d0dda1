"""Passthrough: a served name whose chat requests go to the vLLM backend untouched, for someone else's judge.

With the vllm backend in front of a foreign checkpoint (UnifiedReward-Think, say), the client's own messages and
sampling options are what that model was trained on, so they are forwarded as they are; only the model name is
swapped for the one vLLM serves. The request still goes through this server's auth, limits, queue and metrics:

* the limits of mmreward's own requests: ``n``, ``max_tokens`` (over the completion), text length, image count,
  and every image checked (pixels from the header, bytes) as any other request's;
* media only as data URLs, unless the operator allowed URL hosts: the backend would otherwise fetch URLs and read
  files on the client's behalf;
* the same bounded queue (503 with Retry-After when full) and cancellation when the client goes away.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from mmreward.server.inputs import RequestError, limit_error
from mmreward.server.schemas import ChatCompletionRequest
from mmreward.server.tasks import RequestTasks


@dataclass
class Upstream:
    base_url: str  # the vLLM server's OpenAI base URL, ending in /v1
    model: str  # the name vLLM serves
    api_key: str | None = None
    timeout_s: float = 600.0
    concurrency: int = 64


def check_passthrough(req: ChatCompletionRequest, requests: RequestTasks, allow_url_hosts: list[str]) -> dict:
    """The request body to forward, after the server's limits; raises RequestError naming what to change."""
    lim = requests.lim
    if req.stream:
        raise RequestError(400, "unsupported", "stream=true is not supported by this server", "stream")
    if req.n > lim.max_n:
        raise limit_error("max_n", f"n={req.n} is above {lim.max_n}")
    budget = req.max_completion_tokens or req.max_tokens
    if budget is not None and budget > lim.max_completion_tokens:
        raise limit_error("max_completion_tokens", f"max_tokens={budget} is above {lim.max_completion_tokens}")
    n_images = 0
    for i, m in enumerate(req.messages):
        content = m.get("content") if isinstance(m, dict) else None
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        if not isinstance(parts, list):
            raise RequestError(400, "invalid_request", f"messages[{i}].content must be a string or parts", "messages")
        for k, p in enumerate(parts):
            where = f"messages[{i}].content[{k}]"
            if not isinstance(p, dict):
                raise RequestError(400, "invalid_request", f"{where} is not an object", "messages")
            if p.get("type") == "text":
                requests.check_text(str(p.get("text", "")), where)
            elif p.get("type") in ("image_url", "video_url"):
                value = p.get(p["type"])
                url = value.get("url") if isinstance(value, dict) else value
                if not isinstance(url, str):
                    raise RequestError(400, "invalid_request", f"{where}: the URL must be a string", "messages")
                if not url.startswith("data:"):
                    host = (urlparse(url).hostname or "").lower()
                    if host not in {h.lower() for h in allow_url_hosts}:
                        raise RequestError(
                            400,
                            "url_fetch_disabled",
                            f"{where}: media must be a data URL (the backend would fetch {host or url[:40]!r} for "
                            "the client; an operator can allow hosts with --allow-url-host)",
                            where,
                        )
                if p["type"] == "image_url":
                    n_images += 1
                    if url.startswith("data:"):
                        requests.load(url, "image", where)  # the pixel and byte limits, before the backend decodes
                else:
                    requests.load(url, "video", where)
    requests.count_media(["image"] * n_images)
    return req.model_dump(exclude_none=True)


async def forward(upstream: Upstream, bodies: list[dict]) -> list[tuple[int, dict[str, Any]]]:
    """POST each body to the backend's /chat/completions, concurrently; (status, JSON body) per request."""
    import httpx  # noqa: PLC0415

    headers = {"Authorization": f"Bearer {upstream.api_key}"} if upstream.api_key else {}
    sem = asyncio.Semaphore(upstream.concurrency)
    async with httpx.AsyncClient(timeout=upstream.timeout_s, headers=headers) as client:

        async def one(body: dict) -> tuple[int, dict[str, Any]]:
            async with sem:
                try:
                    r = await client.post(upstream.base_url.rstrip("/") + "/chat/completions", json=body)
                    return r.status_code, r.json()
                except (httpx.HTTPError, json.JSONDecodeError) as exc:
                    message = f"the backend did not answer ({type(exc).__name__})"
                    return 502, {"error": {"message": message, "type": "server_error", "code": "bad_gateway"}}

        return list(await asyncio.gather(*(one(b) for b in bodies)))
