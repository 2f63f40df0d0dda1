"""Python clients for the judge server: :class:`JudgeClient` (sync) and :class:`AsyncJudgeClient` (asyncio).

Both encode local media (paths, bytes, PIL images) as base64 data URLs on the client side, so the server never
needs to read a file, and both retry with exponential backoff and jitter on connection errors, timeouts, 429,
502, 503 (honouring ``Retry-After``) and 504. Other errors are final and raise :class:`JudgeAPIError` with
the server's message and error code (for a limit, ``param`` names it)::

    from mmreward.client import JudgeClient

    with JudgeClient("http://127.0.0.1:8000", token="...") as client:
        j = client.judge("a red cube on a table", ["a.png", "b.png"], swap="both")
        print(j["outcome"], j["preferred"])
        r = client.rewards("a red cube on a table", ["g0.png", "g1.png", "g2.png"], mode="pairwise_winrate")
        print(r["rewards"], r["failures"])
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import random
import time
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

RETRY_STATUS = {429, 502, 503, 504}
VIDEO_SUFFIXES = {".mp4": "video/mp4", ".webm": "video/webm", ".mov": "video/quicktime", ".mkv": "video/x-matroska"}


class JudgeAPIError(RuntimeError):
    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None) -> None:
        super().__init__(f"HTTP {status} ({code}): {message}")
        self.status, self.message, self.code, self.param = status, message, code, param


def encode_media(source: Any) -> str:
    """A data URL for a path, bytes or PIL image; a string that already is a data URL passes through."""
    if isinstance(source, Image.Image):
        buf = io.BytesIO()
        source.convert("RGB").save(buf, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    if isinstance(source, bytes):
        return "data:application/octet-stream;base64," + base64.b64encode(source).decode()
    if isinstance(source, (str, os.PathLike)):
        s = os.fspath(source)
        if s.startswith("data:"):
            return s
        path = Path(s)
        if not path.is_file():
            raise FileNotFoundError(f"{s}: no such file (give a path, bytes, a PIL image or a data URL)")
        mime = VIDEO_SUFFIXES.get(path.suffix.lower()) or f"image/{path.suffix.lower().lstrip('.') or 'png'}"
        return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()
    raise TypeError(f"cannot send {type(source).__name__} as media")


def _judge_body(
    prompt: str,
    candidates: list[Any],
    modality: str,
    media: list[Any] | None,
    options: dict[str, Any],
) -> dict[str, Any]:
    cands = list(candidates) if modality == "answer" else [encode_media(c) for c in candidates]
    body = {"prompt": prompt, "candidates": cands, "modality": modality, **options}
    if media:
        body["media"] = [encode_media(m) for m in media]
    return body


def _rewards_body(prompt: str | None, items: list[Any], modality: str, mode: str, options: dict[str, Any]):
    return {"prompt": prompt, "items": [encode_media(x) for x in items], "modality": modality, "mode": mode, **options}


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        err = response.json().get("error", {})
    except ValueError:
        err = {}
    raise JudgeAPIError(
        response.status_code, err.get("message") or response.text[:200], err.get("code"), err.get("param")
    )


def _wait(attempt: int, backoff: float, response: httpx.Response | None) -> float:
    if response is not None:
        try:
            return max(0.0, float(response.headers.get("retry-after", "")))
        except ValueError:
            pass
    return min(30.0, backoff * 2**attempt) * (0.5 + random.random() / 2)


class _Base:
    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        token: str | None = None,
        timeout: float = 300.0,
        retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        self.base_url = base_url.rstrip("/").removesuffix("/v1")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout, self.retries, self.backoff = timeout, retries, backoff


class JudgeClient(_Base):
    """Synchronous client. Use as a context manager or call :meth:`close`."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._http = httpx.Client(base_url=self.base_url, headers=self.headers, timeout=self.timeout)

    def __enter__(self) -> JudgeClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        for attempt in range(self.retries + 1):
            response = None
            try:
                response = self._http.request(method, path, json=body)
                if response.status_code not in RETRY_STATUS:
                    _raise_for(response)
                    return response.json()
            except (httpx.TransportError, httpx.TimeoutException):
                if attempt == self.retries:
                    raise
            if attempt == self.retries:
                _raise_for(response)
            time.sleep(_wait(attempt, self.backoff, response))
        raise AssertionError("unreachable")

    def health(self) -> dict[str, Any]:
        return self.request("GET", "/health")

    def models(self) -> list[str]:
        return [m["id"] for m in self.request("GET", "/v1/models")["data"]]

    def judge(
        self, prompt: str, candidates: list[Any], modality: str = "image", media: list[Any] | None = None, **options
    ) -> dict[str, Any]:
        """One judgment; ``options`` are the API's (swap, votes, tools, kind, dimensions, temperature...)."""
        return self.request("POST", "/v1/judge", _judge_body(prompt, candidates, modality, media, options))

    def rewards(
        self, prompt: str | None, items: list[Any], mode: str = "pointwise", modality: str = "image", **options
    ) -> dict[str, Any]:
        """Rewards for a group: ``rewards`` (floats, ``None`` for failed items), ``details``, ``failures``."""
        return self.request("POST", "/v1/rewards", _rewards_body(prompt, items, modality, mode, options))


class AsyncJudgeClient(_Base):
    """asyncio client, for RL loops that score many groups concurrently."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=self.headers, timeout=self.timeout)

    async def __aenter__(self) -> AsyncJudgeClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        for attempt in range(self.retries + 1):
            response = None
            try:
                response = await self._http.request(method, path, json=body)
                if response.status_code not in RETRY_STATUS:
                    _raise_for(response)
                    return response.json()
            except (httpx.TransportError, httpx.TimeoutException):
                if attempt == self.retries:
                    raise
            if attempt == self.retries:
                _raise_for(response)
            await asyncio.sleep(_wait(attempt, self.backoff, response))
        raise AssertionError("unreachable")

    async def health(self) -> dict[str, Any]:
        return await self.request("GET", "/health")

    async def judge(
        self, prompt: str, candidates: list[Any], modality: str = "image", media: list[Any] | None = None, **options
    ) -> dict[str, Any]:
        return await self.request("POST", "/v1/judge", _judge_body(prompt, candidates, modality, media, options))

    async def rewards(
        self, prompt: str | None, items: list[Any], mode: str = "pointwise", modality: str = "image", **options
    ) -> dict[str, Any]:
        return await self.request("POST", "/v1/rewards", _rewards_body(prompt, items, modality, mode, options))
