"""A stand-in for ``vllm serve``'s chat endpoint with a real model behind its log-probabilities.

Turns are scripted (``policy``), but a request with ``continue_final_message`` and ``prompt_logprobs`` is scored by
the real tiny model: the messages are rendered with the checkpoint's chat template exactly as vLLM does, the images
decoded from their data URLs, and each prompt token's log-probability returned in vLLM's ``prompt_logprobs`` form.
So the vllm backend's continuous reward can be checked against the transformers backend's on the same model.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image


def to_hf_messages(messages: list[dict]) -> tuple[list[dict], list[Image.Image]]:
    out, images = [], []
    for m in messages:
        content = m["content"]
        if isinstance(content, list):
            parts = []
            for p in content:
                if p["type"] == "image_url":
                    data = p["image_url"]["url"].partition(",")[2]
                    images.append(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))
                    parts.append({"type": "image"})
                else:
                    parts.append(p)
            content = parts
        out.append({"role": m["role"], "content": content})
    return out, images


class FakeChatVLLM:
    def __init__(self, model, processor, policy: Callable[[dict], str]) -> None:
        self.model, self.processor, self.policy = model, processor, policy
        self.scored: list[str] = []  # the assistant prefixes whose log-probabilities were asked for
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def prompt_logprobs(self, body: dict) -> tuple[int, list]:
        import torch

        messages, images = to_hf_messages(body["messages"])
        text = self.processor.apply_chat_template(
            messages,
            tools=body.get("tools"),
            chat_template=body.get("chat_template"),
            add_generation_prompt=False,
            continue_final_message=True,
            tokenize=False,
        )
        with self.lock:  # one forward at a time: the model is shared
            self.scored.append(messages[-1]["content"])
            batch = self.processor(text=[text], images=images or None, return_tensors="pt")
            batch.pop("mm_token_type_ids", None)
            with torch.inference_mode():
                logp = torch.log_softmax(self.model(**batch).logits.float(), dim=-1)[0]
        ids = batch["input_ids"][0].tolist()
        entries: list = [None]
        for pos in range(1, len(ids)):
            entries.append(
                {str(ids[pos]): {"logprob": float(logp[pos - 1, ids[pos]]), "rank": 1, "decoded_token": ""}}
            )
        return len(ids), entries

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                reply = {"id": "x", "object": "chat.completion", "model": body["model"]}
                if body.get("continue_final_message"):
                    n, entries = fake.prompt_logprobs(body)
                    reply["choices"] = [{"index": 0, "message": {"role": "assistant", "content": "x"}}]
                    reply["usage"] = {"prompt_tokens": n, "completion_tokens": 1}
                    reply["prompt_logprobs"] = entries
                else:
                    text = fake.policy(body)
                    reply["choices"] = [{"index": 0, "message": {"role": "assistant", "content": text}}]
                    reply["usage"] = {"prompt_tokens": 10, "completion_tokens": len(text.split())}
                raw = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        return Handler
