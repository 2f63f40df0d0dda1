"""The CLI as a user runs it: init-tiny, then judge the real image pair and the real video pair."""

import json
import subprocess
import sys
import time

import pytest


def mmreward(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "mmreward.cli", *map(str, args)], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def test_help_explains_itself():
    out = mmreward("--help").stdout
    assert "init-tiny" in out and "judge" in out
    assert "--question" in mmreward("judge", "--help").stdout


@pytest.fixture(scope="module")
def cli_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "m"
    start = time.perf_counter()
    proc = mmreward("init-tiny", out)
    assert time.perf_counter() - start < 60 and "wrote qwen2_5_vl tiny judge" in proc.stdout
    return out


def test_judge_image_pair_json(cli_model, real_image_pair):
    proc = mmreward(
        "judge", "--model", cli_model, "--prompt", "a room", "--image", real_image_pair[0], "--image", real_image_pair[1],
        "--swap", "both", "--max-new-tokens", "32", "--json",
    )  # fmt: skip
    record = json.loads(proc.stdout)
    assert record["outcome"] in {"prefer", "tie", "failed"} and len(record["trajectories"]) == 2
    traj = record["trajectories"][0]
    assert traj["task"]["candidates"] == [str(p) for p in real_image_pair]
    assert traj["stop_reason"] in {"answer", "parse_failure", "max_turns"} and traj["num_turns"] >= 1
    assert record["timing"]["judge_s"] < 60


def test_judge_video_pair_text(cli_model, real_video_pair):
    proc = mmreward(
        "judge", "--model", cli_model, "--prompt", "a girl sits", "--video", real_video_pair[0],
        "--video", real_video_pair[1], "--max-new-tokens", "16", "--overview-frames", "4",
    )  # fmt: skip
    assert "=== presented order [0, 1]" in proc.stdout and "verdict:" in proc.stdout


def test_judge_answers_and_errors(cli_model, real_image_pair, tmp_path):
    proc = mmreward(
        "judge", "--model", cli_model, "--question", "what is in the room?", "--answer", "a table",
        "--answer", "a car", "--image", real_image_pair[0], "--json", "--max-new-tokens", "8",
    )  # fmt: skip
    assert json.loads(proc.stdout)["trajectories"][0]["task"]["modality"] == "answer"
    bad = mmreward("judge", "--model", cli_model, "--prompt", "x", "--image", real_image_pair[0], check=False)
    assert bad.returncode != 0 and "need 2 --image" in bad.stderr
    broken = tmp_path / "b.png"
    broken.write_bytes(b"xx")
    proc = mmreward(
        "judge", "--model", cli_model, "--prompt", "x", "--image", broken, "--image", broken, "--json", check=False
    )
    assert proc.returncode == 2 and f"--image {broken}: not a recognised image" in proc.stderr and not proc.stdout
    image = real_image_pair[0]
    missing = mmreward(
        "judge", "--model", tmp_path / "nope", "--prompt", "x", "--image", image, "--image", image, check=False
    )
    assert missing.returncode == 2 and "--model" in missing.stderr and "no such folder" in missing.stderr
