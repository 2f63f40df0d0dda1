"""Generation through an OpenAI-compatible chat endpoint (vLLM, SGLang, GPT-4o...), with retries.

:class:`OpenAIGenerator` implements the engine's :class:`~mmreward.generators.Generator` interface, so the
:class:`~mmreward.rollout.RolloutEngine` runs *our* tools and parses *our* verdicts whatever produces the turns:

* async requests with bounded concurrency, a timeout per request, and retries with exponential backoff and
  jitter on timeouts, connection errors, 429 (honouring ``Retry-After``), 5xx and malformed bodies; other 4xx
  answers are final (the request itself is wrong);
* images travel as base64 data URLs (downscaled to ``image_max_pixels``);
* a turn that failed after every retry comes back as ``GenerationOutput(error=...)`` and the engine ends that
  trajectory with ``stop_reason="generation_error"``; nothing is silently scored.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
from collections import Counter
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from mmreward.errors import RunFailure
from mmreward.generators import STOP_TAGS, GenerationOutput, GenerationRequest
from mmreward.media import image_to_data_url

logger = logging.getLogger(__name__)

STOP = list(STOP_TAGS)


class RemoteError(RunFailure):
    pass


@dataclass
class RemoteSettings:
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "teacher"
    api_key: str | None = None  # None: read OPENAI_API_KEY, else "EMPTY" (vLLM accepts any key)
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 1024
    concurrency: int = 8
    timeout_s: float = 120.0
    retries: int = 4
    backoff_s: float = 1.0  # first backoff; doubles each retry (with jitter), capped at max_backoff_s
    max_backoff_s: float = 30.0
    image_max_pixels: int = 1024 * 1024  # images are downscaled to this before base64 encoding
    image_format: str = "PNG"
    # How tool observations travel. "user": a user message starting "Tool result:" (any chat model, e.g. a
    # GPT-4o teacher). "tool": the protocol's own ``tool`` role, so a server that loads an mmreward checkpoint
    # (vLLM) renders it with the checkpoint's chat template exactly as in training.
    tool_role: str = "user"
    send_tools: bool = False  # pass the tool schemas (the checkpoint's template renders them in the system turn)
    # A chat template for the server to render with (vLLM's `chat_template` request field), for a served folder whose
    # own template cannot do tools (a stock Qwen2.5-VL release). None: the server's own.
    chat_template: str | None = None
    # vLLM's repetition_penalty (sent in the request body): None leaves the server's default, which for vLLM is the
    # served folder's generation_config.json (1.05 for a Qwen2.5-VL release); the judge backend sends 1.0.
    repetition_penalty: float | None = None

    def __post_init__(self) -> None:
        if self.tool_role not in ("user", "tool"):
            raise ValueError(f"tool_role must be 'user' or 'tool', not {self.tool_role!r}")
        if self.concurrency < 1 or self.retries < 0 or self.timeout_s <= 0:
            raise ValueError("need concurrency >= 1, retries >= 0 and timeout_s > 0")

    def sampling(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens}


def to_openai_messages(request: GenerationRequest, settings: RemoteSettings) -> list[dict[str, Any]]:
    """Protocol messages -> OpenAI chat messages with base64 data-URL images.

    The protocol's tool calls live in the assistant's text, so tool observations are sent as ``user`` messages
    beginning with "Tool result:" (the OpenAI ``tool`` role needs structured tool_call ids and takes no images).
    """
    out = []
    for msg in request.messages:
        parts = []
        for p in msg["content"] if isinstance(msg["content"], list) else [{"type": "text", "text": msg["content"]}]:
            if p.get("type") == "text":
                parts.append({"type": "text", "text": p["text"]})
            elif p.get("type") == "image":
                im = p["image"]
                if im.width * im.height > settings.image_max_pixels:
                    k = (settings.image_max_pixels / (im.width * im.height)) ** 0.5
                    im = im.resize((max(1, int(im.width * k)), max(1, int(im.height * k))))
                url = image_to_data_url(im.convert("RGB"), settings.image_format)
                parts.append({"type": "image_url", "image_url": {"url": url}})
        role = msg["role"]
        if role == "tool" and settings.tool_role == "tool":
            out.append({"role": "tool", "content": parts, "tool_call_id": f"call_{len(out)}"})
            continue
        if role == "tool":
            parts.insert(0, {"type": "text", "text": "Tool result:"})
            role = "user"
        if role in ("system", "assistant"):
            text = "".join(p["text"] for p in parts if p["type"] == "text")
            out.append({"role": role, "content": text})
        else:
            out.append({"role": role, "content": parts})
    return out


def close_open_tag(text: str) -> str:
    """Endpoints drop the stop string: put back ``</tool_call>``/``</answer>`` when the turn opened one."""
    for tag in ("tool_call", "answer"):
        if text.rfind(f"<{tag}>") > text.rfind(f"</{tag}>"):
            return text + f"</{tag}>"
    return text


def _retry_after(headers) -> float | None:
    value = headers.get("retry-after") if headers is not None else None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class OpenAIGenerator:
    """A :class:`~mmreward.generators.Generator` backed by an OpenAI-compatible ``/chat/completions`` endpoint.

    Used as a distillation teacher (GPT-4o, a large Qwen-VL on vLLM) and as the judge server's ``vllm``
    backend (the server drives the tool loop; vLLM only generates turns).
    """

    def __init__(self, settings: RemoteSettings) -> None:
        self.settings = settings
        self.name = f"openai:{settings.base_url}:{settings.model}"
        self.stats: Counter = Counter()
        self.sampling = SimpleNamespace(max_new_tokens=settings.max_tokens)  # the engine's per-turn token cap

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationOutput]:
        return asyncio.run(self._generate(requests))

    async def _generate(self, requests: list[GenerationRequest]) -> list[GenerationOutput]:
        import openai  # noqa: PLC0415

        s = self.settings
        key = s.api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        sem = asyncio.Semaphore(s.concurrency)
        async with openai.AsyncOpenAI(base_url=s.base_url, api_key=key, max_retries=0, timeout=s.timeout_s) as client:

            async def one(r: GenerationRequest) -> GenerationOutput:
                async with sem:
                    return await self._call(client, r)

            return list(await asyncio.gather(*(one(r) for r in requests)))

    # ---------------------------------------------------------------------------------------------------------------
    def option_logprobs(
        self, messages: list[dict[str, Any]], images: list[Any], tools, prefix: str, options: list[str]
    ) -> list[float]:
        """Log-probability of each ``option`` continuing ``prefix`` at the start of a new assistant turn, read from
        vLLM's ``prompt_logprobs`` with ``continue_final_message``: the same quantity the transformers backend
        computes from its logits, so the continuous reward does not depend on the backend. Each option costs
        one request (prefix caching makes the shared prefix cheap)."""
        return asyncio.run(self._option_logprobs(messages, images, tools, prefix, options))

    async def _option_logprobs(self, messages, images, tools, prefix: str, options: list[str]) -> list[float]:
        import openai  # noqa: PLC0415

        s = self.settings
        history = to_openai_messages(GenerationRequest("reward", 0, messages, images, tools, 1), s)
        extra_body: dict[str, Any] = {
            "add_generation_prompt": False,
            "continue_final_message": True,
            "prompt_logprobs": 0,
        }
        if s.chat_template is not None:
            extra_body["chat_template"] = s.chat_template
        extra: dict[str, Any] = {"tools": tools, "tool_choice": "none"} if s.send_tools and tools else {}
        key = s.api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        async with openai.AsyncOpenAI(
            base_url=s.base_url, api_key=key, max_retries=s.retries, timeout=s.timeout_s
        ) as c:

            async def score(text: str) -> tuple[int, list[float]]:
                raw = await c.chat.completions.with_raw_response.create(
                    model=s.model,
                    messages=[*history, {"role": "assistant", "content": text}],
                    max_tokens=1,
                    temperature=0.0,
                    extra_body=extra_body,
                    **extra,
                )
                body = json.loads(raw.http_response.text)
                entries = body.get("prompt_logprobs")
                if not isinstance(entries, list):
                    raise RemoteError("the server returned no prompt_logprobs (a vLLM server is needed for rewards)")
                # With prompt_logprobs=0 each position holds the prompt token alone (vLLM lists it first).
                values = [float(next(iter(e.values()))["logprob"]) if e else 0.0 for e in entries]
                return int(body["usage"]["prompt_tokens"]), values

            n_base, _ = await score(prefix)
            scored = await asyncio.gather(*(score(prefix + o) for o in options))
        return [sum(values[n_base:n]) for n, values in scored]

    async def _call(self, client, r: GenerationRequest) -> GenerationOutput:
        import openai  # noqa: PLC0415

        s = self.settings
        messages = to_openai_messages(r, s)
        extra: dict[str, Any] = {}
        if s.send_tools and r.tools:
            extra = {"tools": r.tools, "tool_choice": "none"}  # rendered by the template; calls are parsed by us
        body = {"chat_template": s.chat_template, "repetition_penalty": s.repetition_penalty}
        if any(v is not None for v in body.values()):
            extra["extra_body"] = {k: v for k, v in body.items() if v is not None}
        last = "no attempt"
        for attempt in range(s.retries + 1):
            wait = min(s.max_backoff_s, s.backoff_s * 2**attempt) * (0.5 + random.random() / 2)
            try:
                raw = await client.chat.completions.with_raw_response.create(
                    model=s.model,
                    messages=messages,
                    temperature=s.temperature,
                    top_p=s.top_p,
                    max_tokens=min(s.max_tokens, r.max_new_tokens) if r.max_new_tokens else s.max_tokens,
                    stop=STOP,
                    **extra,
                )
                try:
                    body = json.loads(raw.http_response.text)
                    choice = body["choices"][0]
                    text = choice["message"]["content"]
                    if not isinstance(text, str):
                        raise TypeError("message.content is not a string")
                except (ValueError, KeyError, IndexError, TypeError) as exc:
                    raise RemoteError(f"malformed response body ({type(exc).__name__}: {exc})") from None
                usage = body.get("usage") or {}
                self.stats["ok"] += 1
                return GenerationOutput(
                    text=close_open_tag(text),
                    prompt_tokens=int(usage.get("prompt_tokens") or 0),
                    completion_tokens=int(usage.get("completion_tokens") or len(text.split())),
                )
            except openai.APIStatusError as exc:
                code = exc.status_code
                last = f"HTTP {code}"
                self.stats[last] += 1
                if code == 429 or code >= 500:
                    ra = _retry_after(exc.response.headers)
                    wait = ra if ra is not None else wait
                else:  # 4xx other than 429: the request itself is wrong; retrying will not help
                    return GenerationOutput(text="", error=f"{last}: {str(exc)[:200]}")
            except (openai.APITimeoutError, openai.APIConnectionError) as exc:
                kind = "timeout" if isinstance(exc, openai.APITimeoutError) else "connection error"
                self.stats[kind] += 1
                cause = exc.__cause__ or exc.__context__
                last = f"{kind} ({cause})" if cause is not None and str(cause) else kind
            except RemoteError as exc:
                last = str(exc)
                self.stats["malformed"] += 1
            if attempt < s.retries:
                logger.info("teacher %s for %s (attempt %d); retrying in %.2fs", last, r.key, attempt + 1, wait)
                await asyncio.sleep(wait)
        n = s.retries + 1
        return GenerationOutput(text="", error=f"{last} after {n} attempt{'s' if n > 1 else ''}")
