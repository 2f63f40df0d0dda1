"""A stand-in for ``VLLM_SERVER_DEV_MODE=1 vllm serve --enable-scale-out``: the HTTP endpoints TRL 1.16's
``VLLMClient`` calls in GRPO server mode, on loopback, with a scripted policy instead of a model.

Endpoints: ``/health``, ``/v1/models`` (with ``max_model_len``), ``/server_info``, ``/reset_prefix_cache``,
``/v1/chat/completions/render`` (image features) and ``/inference/v1/generate`` (token ids + features), plus
``/v1/completions`` for prompts without images. Like vLLM it answers 400 when prompt + ``max_tokens`` exceeds the
context, and it checks what a real server would trip over: one run of image tokens per image, in place.

The policy reads a tag the test puts in each record's question, ``[case 7 tools]`` or ``[case 8 plain]``. A
``tools`` case calls ``crop`` until it has two tool results, then answers; a ``plain`` case answers at once. Every
turn names its case, so a completion that lands in another rollout is visible.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from mmreward.protocol import format_turn

CASE = re.compile(r"\[case (\d+) (tools|plain)\]")
TOOL_ROUNDS = 2


class FakeVLLM:
    def __init__(self, tokenizer, max_model_len: int) -> None:
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len
        self.image_token_id = tokenizer.convert_tokens_to_ids("<|image_pad|>")
        self.requests: list[dict] = []  # one row per generation request: case, prompt length, max_tokens, ...
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    # ---- the policy

    def completion(self, token_ids: list[int]) -> str:
        text = self.tokenizer.decode(token_ids, skip_special_tokens=False)
        found = CASE.search(text)
        if found is None:
            return format_turn("no case tag in the prompt", answer="Image 1 is better")
        case, kind = found.groups()
        done = text.count("<tool_response>")
        if kind == "tools" and done < TOOL_ROUNDS:
            return format_turn(
                f"case {case}: look closer ({done + 1})",
                tool=("crop", {"image": "image_1", "bbox_2d": [0, 0, 200, 200]}),
            )
        return format_turn(f"case {case}: decided after {done} tool results", answer="Answer 1 is better")

    def generate(self, token_ids: list[int], params: dict) -> list[dict]:
        """vLLM's choices for one prompt, or raises ValueError with vLLM's 400 message."""
        max_tokens = int(params["max_tokens"])
        if len(token_ids) + max_tokens > self.max_model_len:
            raise ValueError(
                f"This model's maximum context length is {self.max_model_len} tokens. However, you requested "
                f"{max_tokens} output tokens and your prompt contains {len(token_ids)} input tokens"
            )
        text = self.tokenizer.decode(token_ids, skip_special_tokens=False)
        case = CASE.search(text)
        with self.lock:
            self.requests.append({
                "case": case.group(0) if case else None,
                "prompt_tokens": len(token_ids),
                "max_tokens": max_tokens,
                "n": int(params.get("n", 1)),
                "logit_bias": sorted(int(k) for k in (params.get("logit_bias") or {})),
            })  # fmt: skip
        ids = self.tokenizer(self.completion(token_ids) + "<|im_end|>", add_special_tokens=False)["input_ids"]
        ids, finish = (ids[:max_tokens], "length") if len(ids) > max_tokens else (ids, "stop")
        return [{"index": j, "token_ids": ids, "finish_reason": finish, "logprobs": logprobs(ids)}
                for j in range(int(params.get("n", 1)))]  # fmt: skip

    def check_placeholders(self, token_ids: list[int], features: dict | None) -> None:
        runs, i = [], 0
        while i < len(token_ids):
            if token_ids[i] == self.image_token_id:
                j = i
                while j < len(token_ids) and token_ids[j] == self.image_token_id:
                    j += 1
                runs.append({"offset": i, "length": j - i})
                i = j
            else:
                i += 1
        placed = (features or {}).get("mm_placeholders", {}).get("image", [])
        if runs != placed:
            raise ValueError(f"image placeholders {placed} do not match the prompt's image-token runs {runs}")

    # ---- HTTP

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, body: dict) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self):
                path = self.path.split("?")[0].rstrip("/")
                if path == "/health":
                    return self._send(200, {})
                if path == "/v1/models":
                    return self._send(200, {"object": "list", "data": [
                        {"id": "fake-judge", "object": "model", "max_model_len": fake.max_model_len}]})  # fmt: skip
                if path == "/server_info":
                    return self._send(200, {"vllm_config": {
                        "model_config": {"logprobs_mode": "processed_logprobs", "max_model_len": fake.max_model_len},
                        "weight_transfer_config": {"backend": "nccl"}}})  # fmt: skip
                return self._send(404, {"error": {"message": f"no route {path}"}})

            def do_POST(self):
                path = self.path.split("?")[0].rstrip("/")
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                try:
                    if path == "/reset_prefix_cache":
                        return self._send(200, {"success": True})
                    if path == "/v1/chat/completions/render":
                        images = [p for m in body["messages"] for p in m["content"] if p["type"] == "image_url"]
                        return self._send(200, {"features": {
                            "mm_hashes": {"image": [f"h{i}" for i in range(len(images))]},
                            "mm_placeholders": {"image": [{"offset": 0, "length": 1} for _ in images]}}})  # fmt: skip
                    if path == "/inference/v1/generate":
                        fake.check_placeholders(body["token_ids"], body.get("features"))
                        return self._send(200, {"request_id": body.get("request_id"),
                                                "choices": fake.generate(body["token_ids"], body["sampling_params"])})  # fmt: skip
                    if path == "/v1/completions":
                        choices = []
                        for ids in body["prompt"]:
                            for c in fake.generate(ids, body):
                                c["prompt_token_ids"] = ids
                                c["logprobs"] = completion_logprobs(c["token_ids"])
                                choices.append(c)
                        return self._send(200, {"choices": choices})
                except ValueError as exc:
                    with fake.lock:
                        fake.errors.append(str(exc))
                    return self._send(400, {"error": {"message": str(exc), "type": "BadRequestError", "code": 400}})
                return self._send(404, {"error": {"message": f"no route {path}"}})

        return Handler


def logprobs(ids: list[int]) -> dict:
    """Chat-style logprobs (what ``/inference/v1/generate`` returns with ``return_tokens_as_token_ids``)."""
    return {"content": [{"token": f"token_id:{t}", "logprob": -0.5, "top_logprobs": []} for t in ids]}


def completion_logprobs(ids: list[int]) -> dict:
    return {"tokens": [f"token_id:{t}" for t in ids], "token_logprobs": [-0.5] * len(ids),
            "top_logprobs": [{} for _ in ids]}  # fmt: skip
