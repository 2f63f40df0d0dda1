"""The README's examples run as written, in order, on the tiny model.

Blocks preceded by ``<!-- readme-test: run -->`` run through bash, ``serve`` starts the server in the background
for the blocks after it, ``python`` runs through this interpreter. Only three things are rewritten so the test
writes nowhere but a temporary folder: ``runs/`` (into the temporary folder), ``../shared/benchmarks`` (where this
checkout has them) and the port 8000 (a free one)."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import BENCH

REPO = Path(__file__).resolve().parents[1]
MARKED = re.compile(r"<!-- readme-test: (run|serve|python) -->\s*```(\w+)\n(.*?)```", re.S)


def readme_blocks() -> list[tuple[str, str]]:
    return [(kind, body) for kind, _, body in MARKED.findall((REPO / "README.md").read_text())]


def test_the_readme_marks_its_runnable_blocks():
    kinds = [k for k, _ in readme_blocks()]
    assert kinds.count("run") >= 4 and "serve" in kinds and "python" in kinds
    assert kinds.index("serve") < len(kinds) - 1 - kinds[::-1].index("run")  # the curl block follows the server


@pytest.mark.slow
def test_readme_examples_run_as_written(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def adapt(text: str) -> str:
        text = text.replace("../shared/benchmarks", str(BENCH)).replace("8000", str(port))
        return re.sub(r"(?<![\w/.])runs/", f"{tmp_path}/runs/", text)

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    server = None
    try:
        for i, (kind, body) in enumerate(readme_blocks()):
            if kind == "serve":
                command = adapt(body).strip()
                server = subprocess.Popen(
                    ["bash", "-c", f"exec {command}"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
                deadline = time.monotonic() + 120
                while True:
                    try:
                        if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    assert server.poll() is None and time.monotonic() < deadline, server.stdout.read().decode()
                    time.sleep(0.5)
                continue
            argv = [sys.executable, "-c", adapt(body)] if kind == "python" else ["bash", "-euo", "pipefail", "-c"]
            if kind == "run":
                argv.append(adapt(body))
            proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
            assert proc.returncode == 0, (
                f"README block {i} ({kind}) failed with exit {proc.returncode}:\n{body}\n"
                f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
            )
            if kind == "run" and "curl" in body:
                assert '"object":"judgment"' in proc.stdout.replace(" ", "") and '"rewards"' in proc.stdout
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(60)
    # What the examples promise to leave behind.
    runs = tmp_path / "runs"
    for path in ("tiny/config.json", "world/provenance.json", "distill/kept.jsonl", "data/vlrb.jsonl",
                 "eval/tiny/report.md", "eval/mjq/metrics.json", "eval/genai/report.md"):  # fmt: skip
        assert (runs / path).is_file(), path
