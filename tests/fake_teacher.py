"""A stand-in teacher: an OpenAI-compatible HTTP server on loopback that answers judging prompts and injects
faults on request. Items are text-answer tasks whose question carries a tag such as ``[fault=500once]``; the
correct answer text starts with "good".

Faults: ok, tool (crop first, then answer), 500once, 429once (Retry-After), timeout_once (sleeps past the
client's timeout), malformed_once (a body that is not JSON), nochoices_once (JSON without choices), wrong
(answers the bad one), garbage (no verdict), always500.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeTeacher:
    def __init__(self, delay: float = 0.0, sleep_for_timeout: float = 2.0) -> None:
        self.delay = delay
        self.sleep_for_timeout = sleep_for_timeout
        self.seen: Counter = Counter()  # requests per (user text, turn)
        self.log: list[tuple[float, str, str]] = []  # (arrival time, user text, path)
        self.bodies: list[dict] = []  # every request body as received, images included
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

    def reply(self, body: dict) -> tuple[int, dict, bytes]:
        """(status, headers, body) for one chat-completions request."""
        with self.lock:
            self.bodies.append(body)
        messages = body["messages"]
        user = next(m for m in messages if m["role"] == "user")
        text = " ".join(p["text"] for p in user["content"] if p["type"] == "text")
        n_images = sum(
            p["type"] == "image_url" for m in messages if isinstance(m["content"], list) for p in m["content"]
        )
        turn = sum(m["role"] == "assistant" for m in messages)
        key = (text, turn)
        with self.lock:
            self.seen[key] += 1
            count = self.seen[key]
        fault = (re.search(r"\[fault=(\w+)\]", text) or [None, "ok"])[1]
        once = count == 1
        if fault == "always500" or (fault == "500once" and once):
            return 500, {}, b'{"error": {"message": "internal error"}}'
        if fault == "429once" and once:
            return 429, {"Retry-After": "0.2"}, b'{"error": {"message": "rate limited"}}'
        if fault == "timeout_once" and once:
            time.sleep(self.sleep_for_timeout)
        if fault == "malformed_once" and once:
            return 200, {}, b"<html>proxy error</html>"
        if fault == "nochoices_once" and once:
            return 200, {}, json.dumps({"id": "x", "object": "chat.completion"}).encode()
        if self.delay:
            time.sleep(self.delay)
        answers = dict(
            re.findall(r"\[Answer (\d)\]\n(\S+)", "\n".join(p["text"] for p in user["content"] if p["type"] == "text"))
        )
        good = next((k for k, v in answers.items() if v.startswith("good")), "1")
        bad = next((k for k, v in answers.items() if k != good), "2")
        if fault == "tool" and turn == 0:
            content = '<think>Let me look closer.</think>\n<tool_call>\n{"name": "crop", "arguments": {"image": "image_1", "bbox_2d": [0, 0, 500, 500]}}'
        elif fault == "garbage":
            content = "Both answers look fine to me."
        else:
            pick = bad if fault == "wrong" else good
            seen_tool = "Tool result:" in json.dumps(messages)
            content = f"<think>I compared both answers{' after zooming in' if seen_tool else ''}; {n_images} image(s).</think>\n<answer>Answer {pick} is better"
        payload = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 100, "completion_tokens": len(content.split()), "total_tokens": 100},
        }
        return 200, {"Content-Type": "application/json"}, json.dumps(payload).encode()

    def _handler(self):
        teacher = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                user = next(m for m in body["messages"] if m["role"] == "user")
                text = " ".join(p["text"] for p in user["content"] if p["type"] == "text")
                with teacher.lock:  # logged on arrival, so a slow reply cannot reorder the log
                    teacher.log.append((time.time(), text, self.path))
                status, headers, data = teacher.reply(body)
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler
