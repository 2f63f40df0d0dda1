"""The judge server, for real: uvicorn on loopback, the `openai` client, concurrent clients, a hostile-input
suite, a full queue, timeouts, graceful shutdown, the vLLM-style remote backend, and `mmreward serve`."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from fake_teacher import FakeTeacher
from PIL import Image
from scripted_generator import ScriptedGenerator

from mmreward.client import AsyncJudgeClient, JudgeAPIError, JudgeClient, encode_media
from mmreward.judge import Judge, JudgeSettings
from mmreward.protocol import format_turn
from mmreward.rollout import RolloutEngine
from mmreward.server import BackendSettings, BackgroundServer, RequestLimits, ServerSettings, build_judge
from mmreward.settings import EngineSettings

TOKEN = "s3cret-token-for-tests"


def red_image(level: int, size: int = 64) -> Image.Image:
    arr = np.zeros((size, size, 3), dtype=np.uint8)
    arr[..., 0] = level
    arr[..., 2] = 40
    return Image.fromarray(arr)


def png_bytes(image: Image.Image, **save) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", **save)
    return buf.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


class RednessModel(ScriptedGenerator):
    """A scripted judge that really looks at its inputs: it crops image_1 once, then prefers the redder image
    (or scores redness 1-10). Every answer depends on the request's own pixels, so a response routed to the
    wrong client, or a batch that mixes up its members, shows. Records the size of every batched call."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__(self.answer)
        self.delay = delay
        self.batch_sizes: list[int] = []

    def generate(self, requests):
        self.batch_sizes.append(len(requests))
        if self.delay:
            time.sleep(self.delay)
        return super().generate(requests)

    @staticmethod
    def answer(r) -> str:
        if r.turn == 0 and r.tools:
            return format_turn("look closer", tool=("crop", {"image": "image_1", "bbox_2d": [0, 0, 500, 500]}))
        red: dict[int, list[float]] = {}
        for name, image in zip(r.image_names, r.images):
            m = re.match(r"(?:image|video)_(\d)", name)
            if m:
                red.setdefault(int(m.group(1)), []).append(float(np.asarray(image)[..., 0].mean()))
        level = {k: sum(v) / len(v) for k, v in red.items()}
        user = " ".join(p.get("text", "") for p in r.messages[1]["content"] if p.get("type") == "text")
        answers = dict(re.findall(r"\[Answer (\d)\]\n(\S+)", user))
        if answers:  # a question about one image: the right answer names its colour
            colour = "red" if level[1] > 127 else "blue"
            return format_turn("read the colour", answer=f"Answer {1 if answers['1'] == colour else 2} is better")
        noun = "Video" if "video_1" in " ".join(r.image_names) else "Image"
        if 2 not in level:
            return format_turn("judging redness", answer=f"Score: {1 + round(level[1] / 255 * 9)}")
        if abs(level[1] - level[2]) < 1:
            return format_turn("the same", answer="Both are equally good")
        verdict = f"{noun} {1 if level[1] > level[2] else 2} is better"
        if "on each of these dimensions: Color" in user:
            return format_turn("redder wins", answer=f"Color: {verdict}\nOverall: {verdict}")
        return format_turn("redder wins", answer=verdict)


def scripted_judge(delay: float = 0.0) -> tuple[Judge, RednessModel]:
    model = RednessModel(delay)
    return Judge(RolloutEngine(model, settings=EngineSettings(batch_size=64)), JudgeSettings()), model


def settings(**kw) -> ServerSettings:
    base = dict(port=0, max_batch=16, batch_wait_ms=30)
    base.update(kw)
    return ServerSettings(**base)


# --------------------------------------------------------------------------------------------------------------------


def test_concurrent_clients_get_their_own_right_answers_in_shared_batches():
    judge, model = scripted_judge(delay=0.02)
    rng = np.random.default_rng(0)
    levels = [tuple(int(x) for x in rng.choice(np.arange(0, 256, 8), 2, replace=False)) for _ in range(24)]
    with BackgroundServer(judge, settings()) as srv:

        async def main():
            async with AsyncJudgeClient(srv.url) as client:
                return await asyncio.gather(
                    *(
                        client.judge("the reddest square", [red_image(a), red_image(b)], swap="both", id=f"c{k}")
                        for k, (a, b) in enumerate(levels)
                    )
                )

        results = asyncio.run(main())
        for (a, b), k, res in zip(levels, range(len(levels)), results):
            assert res["task_id"] == f"c{k}"
            assert res["outcome"] == "prefer" and res["preferred"] == (0 if a > b else 1), res
            assert res["agreement"] is True
            assert len(res["runs"]) == 2 and all(run["tool_trace"][0]["ok"] for run in res["runs"])
            assert set(res["timings"]) >= {"queue_s", "compute_s", "batch_tasks", "total_s"}
        assert max(model.batch_sizes) > 2, model.batch_sizes  # requests really shared engine calls

        # /v1/rewards: pointwise scores and Pref-GRPO-style win rates for one group
        group = [red_image(v) for v in (250, 10, 130, 130)]
        with JudgeClient(srv.url) as client:
            points = client.rewards("red", group, mode="pointwise")
            assert points["rewards"] == [10.0, 1.0, 6.0, 6.0] and points["failures"] == []
            wr = client.rewards("red", group, mode="pairwise_winrate", swap="both")
            assert wr["rewards"] == pytest.approx([1.0, 0.0, 0.5, 0.5])  # the two equal ones tie
            assert [d["comparisons"] for d in wr["details"]] == [3, 3, 3, 3]
            assert client.rewards("red", group[:2], normalize=True)["rewards"] == [1.0, 0.0]
            assert client.models() == ["mmreward-judge"]


def test_a_failed_item_is_reported_not_scored_zero():
    judge, _ = scripted_judge()
    with BackgroundServer(judge, settings()) as srv, JudgeClient(srv.url) as client:
        truncated = data_url(png_bytes(red_image(200))[:80])
        body = {"prompt": "red", "items": [encode_media(red_image(200)), truncated, encode_media(red_image(0))]}
        out = client.request("POST", "/v1/rewards", body)
        assert out["rewards"][0] == 8.0 and out["rewards"][1] is None and out["rewards"][2] == 1.0
        assert [f["index"] for f in out["failures"]] == [1] and "truncated" in out["failures"][0]["reason"]
        out = client.request("POST", "/v1/rewards", {**body, "mode": "pairwise_winrate"})
        assert out["rewards"] == [1.0, None, 0.0] and out["details"][0]["comparisons"] == 1


def test_answers_video_and_multi_dimensional_requests(real_video_pair, tmp_path):
    judge, _ = scripted_judge()
    with BackgroundServer(judge, settings()) as srv, JudgeClient(srv.url) as client:
        out = client.judge("which answer is right?", ["red", "blue"], modality="answer", media=[red_image(255)])
        assert out["outcome"] in ("prefer", "tie") and out["runs"][0]["tool_trace"][0]["name"] == "crop"
        video = client.judge("a ball rolls", list(real_video_pair), modality="video", tools=False)
        assert video["runs"][0]["num_turns"] == 1  # the overview frames arrived and the model answered
        multi = client.judge("red", [red_image(9), red_image(99)], dimensions=["Color"], return_trajectories=True)
        assert multi["trajectories"][0]["task"]["kind"] == "multi"


def test_the_openai_client_unchanged(tiny_model_dir):
    """The real tiny model behind the real `openai` package: n choices, usage, and mmreward's options."""
    judge = build_judge(BackendSettings(model=str(tiny_model_dir), max_new_tokens=12, max_turns=2))
    with BackgroundServer(judge, settings(token=TOKEN)) as srv:
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key=TOKEN, max_retries=0)
        assert [m.id for m in client.models.list()] == ["mmreward-judge"]
        image = {"type": "image_url", "image_url": {"url": encode_media(red_image(120))}}
        out = client.chat.completions.create(
            model="mmreward-judge",
            messages=[{"role": "user", "content": [{"type": "text", "text": "a red square"}, image, image]}],
            n=3,
            max_tokens=12,
            extra_body={"mmreward": {"tools": True}},
        )
        assert len(out.choices) == 3 and all(isinstance(c.message.content, str) for c in out.choices)
        assert out.usage.prompt_tokens > 0 and out.usage.completion_tokens > 0
        assert out.model_extra["mmreward"]["object"] == "judgment"
        # a system prompt the judge would not use is refused, not dropped
        with pytest.raises(openai.BadRequestError, match="system message"):
            client.chat.completions.create(
                model="mmreward-judge",
                messages=[
                    {"role": "system", "content": "You are a judge."},
                    {"role": "user", "content": [{"type": "text", "text": "a red square"}, image, image]},
                ],
            )
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=srv.url + "/v1", api_key="wrong-token", max_retries=0).models.list()
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.BadRequestError, match="max_n"):
            client.chat.completions.create(
                model="mmreward-judge",
                messages=[{"role": "user", "content": [{"type": "text", "text": "x"}, image]}],
                n=99,
            )
        # /v1/rewards on the real model: every item is either rewarded or listed as a failure, never 0 by default
        with JudgeClient(srv.url, token=TOKEN) as jc:
            r = jc.rewards("a red square", [red_image(10), red_image(200)], mode="pointwise")
            assert len(r["rewards"]) == 2
            failed = {f["index"] for f in r["failures"]}
            assert all((v is None) == (i in failed) for i, v in enumerate(r["rewards"]))
        metrics = httpx.get(srv.url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
        assert 'mmreward_requests_total{endpoint="/v1/chat/completions",status="200"}' in metrics
        assert "mmreward_batch_tasks_bucket" in metrics and 'mmreward_errors_total{kind="unauthorized"}' in metrics


# --------------------------------------------------------------------------------------------------------------------
# Hostile input: every bad request is refused with a clean 4xx JSON error while valid ones keep working.


def _bomb_png() -> bytes:
    """A real decompression bomb: a few KB of PNG that decodes to 400 million pixels."""
    return png_bytes(Image.new("1", (20_000, 20_000)), optimize=True)


def _hundred_megapixel_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (10_000, 10_000), 128).save(buf, format="JPEG", quality=10)
    return buf.getvalue()


@pytest.fixture(scope="module")
def hostile_server(real_video_pair):
    judge, model = scripted_judge()
    lim = RequestLimits(
        max_body_bytes=3 * 1024 * 1024,
        max_images=4,
        max_items=4,
        max_n=4,
        max_tokens=512,
        max_text_chars=2000,
        max_video_seconds=0.5,  # the benchmark clip is longer
    )
    s = settings(token=TOKEN, limits=lim, allow_url_hosts=["127.0.0.1", "localhost"])
    with BackgroundServer(judge, s) as srv:
        yield srv


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _good_body() -> dict:
    return {"prompt": "red", "candidates": [encode_media(red_image(200)), encode_media(red_image(20))]}


def _pair_with(bad: str) -> dict:
    return {"prompt": "red", "candidates": [bad, encode_media(red_image(20))]}


def _hostile_cases(video_path: Path):
    long_video = data_url(video_path.read_bytes(), "video/mp4")
    image = {"type": "image_url", "image_url": {"url": encode_media(red_image(5))}}
    return [
        ("invalid base64", "/v1/judge", _pair_with("data:image/png;base64,@@@not-base64@@@"), 400, "invalid_media"),
        ("truncated png", "/v1/judge", _pair_with(data_url(png_bytes(red_image(9))[:100])), 400, "invalid_media"),
        ("decompression bomb", "/v1/judge", _pair_with(data_url(_bomb_png())), 400, "limit_exceeded"),
        ("100 MP image", "/v1/judge", _pair_with(data_url(_hundred_megapixel_jpeg())), 400, "limit_exceeded"),
        ("file url", "/v1/judge", _pair_with("file:///etc/passwd"), 400, "local_paths_disabled"),
        ("bare path", "/v1/judge", _pair_with("/etc/passwd"), 400, "local_paths_disabled"),
        ("relative path", "/v1/judge", _pair_with("../../etc/passwd"), 400, "local_paths_disabled"),
        ("loopback url", "/v1/judge", _pair_with("http://127.0.0.1:1/x.png"), 403, "address_not_allowed"),
        ("unlisted host", "/v1/judge", _pair_with("http://example.com/x.png"), 400, "url_fetch_disabled"),
        ("ftp url", "/v1/judge", _pair_with("ftp://example.com/x.png"), 400, "invalid_media"),
        ("wrong types", "/v1/judge", {"prompt": ["x"], "candidates": 5}, 422, "invalid_request"),
        ("unknown field", "/v1/judge", {**_good_body(), "temprature": 1}, 422, "invalid_request"),
        ("three candidates", "/v1/judge", {"prompt": "x", "candidates": ["a", "b", "c"]}, 422, "invalid_request"),
        ("huge votes", "/v1/judge", {**_good_body(), "votes": 1000, "temperature": 1}, 400, "limit_exceeded"),
        ("huge max_tokens", "/v1/judge", {**_good_body(), "max_tokens": 10**9}, 400, "limit_exceeded"),
        ("long prompt", "/v1/judge", {**_good_body(), "prompt": "x" * 5000}, 400, "limit_exceeded"),
        (
            "too many reward items",
            "/v1/rewards",
            {"prompt": "r", "items": [encode_media(red_image(1))] * 5},
            400,
            "limit_exceeded",
        ),
        (
            "video too long",
            "/v1/judge",
            {"prompt": "v", "candidates": [long_video] * 2, "modality": "video"},
            400,
            "limit_exceeded",
        ),
        (
            "huge n",
            "/v1/chat/completions",
            {
                "model": "mmreward-judge",
                "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}, image]}],
                "n": 10**6,
            },
            400,
            "limit_exceeded",
        ),
        (
            "three images in chat",
            "/v1/chat/completions",
            {
                "model": "mmreward-judge",
                "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}] + [image] * 3}],
            },
            400,
            "invalid_request",
        ),
        (
            "chat stream",
            "/v1/chat/completions",
            {"model": "mmreward-judge", "messages": [{"role": "user", "content": "x"}], "stream": True},
            400,
            "unsupported",
        ),
        (
            "chat garbage parts",
            "/v1/chat/completions",
            {"model": "mmreward-judge", "messages": [{"role": "user", "content": [7]}]},
            400,
            "invalid_request",
        ),
    ]


def test_hostile_inputs_are_refused_cleanly_while_valid_requests_succeed(hostile_server, real_video_pair):
    srv = hostile_server
    with httpx.Client(base_url=srv.url, headers=AUTH, timeout=60) as http:
        for name, path, body, status, code in _hostile_cases(real_video_pair[0]):
            r = http.post(path, json=body)
            assert r.status_code == status, (name, r.status_code, r.text[:300])
            err = r.json()["error"]
            assert err["code"] == code, (name, err)
            assert "Traceback" not in r.text and 'File "' not in r.text, name
            ok = http.post("/v1/judge", json=_good_body())
            assert ok.status_code == 200 and ok.json()["preferred"] == 0, (name, ok.text[:300])
        # bodies that are not JSON, too big, or unauthenticated
        r = http.post("/v1/judge", content=b"{not json", headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json", r.text
        assert r.json()["error"]["param"] is None and "not valid JSON" in r.json()["error"]["message"]
        big = http.post("/v1/judge", content=b"x" * (4 * 1024 * 1024), headers={"Content-Type": "application/json"})
        assert big.status_code == 413 and big.json()["error"]["param"] == "max_body_bytes"
        limit_named = http.post("/v1/judge", json={**_good_body(), "votes": 99, "temperature": 1}).json()["error"]
        assert limit_named["param"] == "max_n" and "max_n" in limit_named["message"]
    assert httpx.post(srv.url + "/v1/judge", json=_good_body()).status_code == 401
    assert (
        httpx.post(srv.url + "/v1/judge", json=_good_body(), headers={"Authorization": "Bearer nope"}).status_code
        == 401
    )
    assert httpx.get(srv.url + "/health").json()["status"] == "ok"  # health needs no token
    assert httpx.get(srv.url + "/nowhere", headers=AUTH).status_code == 404
    metrics = httpx.get(srv.url + "/metrics", headers=AUTH).text
    assert 'mmreward_errors_total{kind="local_paths_disabled"} 3.0' in metrics
    assert 'mmreward_errors_total{kind="limit_exceeded"}' in metrics


def test_allowed_local_roots_and_no_escape(tmp_path):
    root = tmp_path / "media"
    root.mkdir()
    red_image(250).save(root / "a.png")
    red_image(5).save(root / "b.png")
    (tmp_path / "secret.png").write_bytes(png_bytes(red_image(1)))
    (root / "link.png").symlink_to(tmp_path / "secret.png")
    judge, _ = scripted_judge()
    with BackgroundServer(judge, settings(allow_local_roots=[str(root)])) as srv:
        ok = httpx.post(
            srv.url + "/v1/judge",
            json={"prompt": "r", "candidates": [str(root / "a.png"), f"file://{root / 'b.png'}"]},
        )
        assert ok.status_code == 200 and ok.json()["preferred"] == 0
        for bad in (str(root / ".." / "secret.png"), str(root / "link.png"), "/etc/passwd"):
            r = httpx.post(srv.url + "/v1/judge", json={"prompt": "r", "candidates": [bad, str(root / "a.png")]})
            assert r.status_code == 403 and r.json()["error"]["code"] == "path_not_allowed", bad


# --------------------------------------------------------------------------------------------------------------------
# Load: a bounded queue, per-request timeouts, graceful shutdown.


def test_full_queue_answers_503_with_retry_after_and_clients_retry():
    judge, _ = scripted_judge(delay=0.15)
    with BackgroundServer(judge, settings(max_batch=1, batch_wait_ms=0, max_queue=2)) as srv:
        body = {**_good_body(), "tools": False}
        with ThreadPoolExecutor(12) as pool:
            responses = list(pool.map(lambda _: httpx.post(srv.url + "/v1/judge", json=body, timeout=60), range(12)))
        codes = [r.status_code for r in responses]
        assert 503 in codes and 200 in codes, codes
        busy = next(r for r in responses if r.status_code == 503)
        assert busy.headers["Retry-After"] == "1" and busy.json()["error"]["code"] == "queue_full"
        # the client's retries honour Retry-After and get through once the queue drains
        with ThreadPoolExecutor(6) as pool:
            ok = list(
                pool.map(
                    lambda _: JudgeClient(srv.url, retries=8).judge("red", [red_image(9), red_image(99)]), range(6)
                )
            )
        assert all(o["preferred"] == 1 for o in ok)


def test_request_timeout_is_504_and_the_server_stays_up():
    judge, _ = scripted_judge(delay=0.6)
    with BackgroundServer(judge, settings(request_timeout_s=0.3)) as srv:
        r = httpx.post(srv.url + "/v1/judge", json={**_good_body(), "tools": False}, timeout=30)
        assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
        with pytest.raises(JudgeAPIError) as err:
            JudgeClient(srv.url, retries=0).judge("red", [red_image(1), red_image(2)], tools=False)
        assert err.value.status == 504
        assert httpx.get(srv.url + "/health").status_code == 200


def test_graceful_shutdown_finishes_in_flight_requests():
    judge, model = scripted_judge(delay=0.5)
    srv = BackgroundServer(judge, settings())
    srv.__enter__()
    result = {}

    def call():
        result["r"] = httpx.post(srv.url + "/v1/judge", json={**_good_body(), "tools": False}, timeout=30)

    t = threading.Thread(target=call)
    t.start()
    deadline = time.monotonic() + 10
    while not model.batch_sizes and time.monotonic() < deadline:  # the request is being computed
        time.sleep(0.01)
    srv.__exit__(None, None, None)
    t.join(10)
    assert result["r"].status_code == 200 and result["r"].json()["preferred"] == 0


# --------------------------------------------------------------------------------------------------------------------
# The remote (vLLM-style) backend and the command line.


def test_vllm_backend_drives_the_tool_loop_against_an_openai_compatible_server():
    with FakeTeacher() as fake:
        judge = build_judge(BackendSettings(backend="vllm", vllm_url=fake.url, vllm_model="fake", max_new_tokens=64))
        with BackgroundServer(judge, settings()) as srv, JudgeClient(srv.url) as client:
            media = [red_image(100)]
            out = client.judge("which is right? [fault=tool]", ["bad one", "good one"], modality="answer", media=media)
            assert out["preferred"] == 1 and out["runs"][0]["tool_trace"][0]["ok"]  # our crop ran between turns
            out = client.judge(
                "which is right? [fault=429once]", ["good one", "bad one"], modality="answer", media=media
            )
            assert out["preferred"] == 0  # the remote generator retried the rate-limited turn
        tool_turns = [text for _, text, _ in fake.log if "[fault=tool]" in text]
        assert len(tool_turns) == 2  # first turn, then the turn after the observation
        # Sampling as the transformers backend judges, not the served folder's generation config (vLLM's default).
        assert fake.bodies and all(b["repetition_penalty"] == 1.0 and b["temperature"] == 0.0 for b in fake.bodies)


def test_mmreward_serve_command_answers_and_stops_gracefully(tiny_model_dir, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "mmreward.cli", "serve", "--model", str(tiny_model_dir), "--port", str(port)]
    cmd += ["--token-file", str(token_file), "--max-new-tokens", "8", "--max-turns", "1", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()[-2000:]
            time.sleep(0.3)
        with JudgeClient(url, token=TOKEN) as client:
            out = client.judge("a red square", [red_image(200), red_image(10)], tools=False)
            assert out["object"] == "judgment" and len(out["runs"]) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so process managers see how it ended
    assert code in (0, -signal.SIGTERM), proc.stdout.read().decode()[-2000:]


def test_openapi_schema_documents_the_request_bodies():
    """/docs and /openapi.json describe every endpoint's body (public even with a token: they hold no data);
    --no-docs turns them off."""
    judge, _ = scripted_judge()
    with BackgroundServer(judge, settings(token=TOKEN)) as srv:
        schema = httpx.get(srv.url + "/openapi.json").json()
        assert {"/v1/judge", "/v1/rewards", "/v1/chat/completions"} <= set(schema["paths"])
        body = schema["paths"]["/v1/rewards"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        fields = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]["properties"]
        assert {"prompt", "items", "groups", "mode", "group_size"} <= set(fields)
        page = httpx.get(srv.url + "/docs")
        assert page.status_code == 200 and "swagger" in page.text.lower()
        assert httpx.get(srv.url + "/v1/models").status_code == 401  # the API itself still needs the token
    with BackgroundServer(judge, settings(docs=False)) as srv:
        assert (
            httpx.get(srv.url + "/openapi.json").status_code == 404 and httpx.get(srv.url + "/docs").status_code == 404
        )


def test_the_batcher_gathers_a_burst_until_it_goes_quiet():
    """Requests of a burst arrive with gaps; the worker keeps gathering while they come (``batch_wait_ms`` of quiet
    ends a batch, ``batch_max_wait_ms`` caps it), and a lone request waits only the quiet period."""
    from types import SimpleNamespace

    from mmreward.generators import SamplingSettings
    from mmreward.protocol import JudgeTask
    from mmreward.server.batcher import Batcher

    class CountingJudge:
        def __init__(self) -> None:
            self.batches: list[int] = []
            self.engine = SimpleNamespace(settings=None, generator=SimpleNamespace(sampling=None))

        def judge(self, tasks, settings, cancelled):
            import torch

            self.batches.append(len(tasks))
            self.threads = torch.get_num_threads()
            return [None] * len(tasks)

    async def burst(batcher: Batcher, n: int, gap_s: float) -> float:
        jobs = []
        for k in range(n):
            jobs.append(batcher.enqueue([JudgeTask(f"p{k}", ["a", "b"])], [JudgeSettings()], SamplingSettings(8)))
            await asyncio.sleep(gap_s)
        await asyncio.gather(*(j.future for j in jobs))
        return max(j.started - j.enqueued for j in jobs)

    def run(n: int, gap_s: float, **kw) -> tuple[list[int], float]:
        judge = run.judge = CountingJudge()
        batcher = Batcher(judge, max_batch=32, **kw)
        batcher.start()
        try:
            waited = asyncio.run(burst(batcher, n, gap_s))
        finally:
            batcher.stop(5)
        return judge.batches, waited

    assert run(8, 0.015, batch_wait_ms=60)[0] == [8]  # gaps of 15 ms: one batch
    assert len(run(8, 0.015, batch_wait_ms=5)[0]) > 1  # a 5 ms quiet period cuts the same burst up
    capped = run(12, 0.015, batch_wait_ms=60, batch_max_wait_ms=60)[0]
    assert len(capped) > 1 and capped[0] < 12  # the cap ends a batch that keeps growing
    batches, waited = run(1, 0.0, batch_wait_ms=60)
    assert batches == [1] and 0.055 < waited < 0.5
    # The model's thread gets its own intra-op thread count (`mmreward serve` keeps its main thread at one).
    run(1, 0.0, batch_wait_ms=0, threads=1)
    assert run.judge.threads == 1
