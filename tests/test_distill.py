"""Teacher distillation against a real HTTP teacher on loopback that injects faults, the oracle teacher on the
synthetic world, and a kill -9 in the middle of a run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_teacher import FakeTeacher
from PIL import Image

from data_pipelines.batch import JobCache
from data_pipelines.distill import DistillSettings, OpenAITeacher, TeacherSettings, distill
from data_pipelines.records import PreferenceRecord, read_records, write_records
from data_pipelines.synthetic.generate import WORLD_TOOLS, WORLD_VISUAL, generate_world
from data_pipelines.synthetic.oracle import OracleTeacher
from mmreward.settings import EngineSettings
from mmreward.trajectory import Trajectory, materialize

REPO = Path(__file__).resolve().parents[1]


def answer_records(tmp_path: Path, faults: list[str]) -> list[PreferenceRecord]:
    img = tmp_path / "scene.png"
    if not img.exists():
        Image.new("RGB", (96, 96), (200, 30, 30)).save(img)
    return [
        PreferenceRecord(
            id=f"item-{i}",
            task="pairwise",
            modality="answer",
            prompt=f"Q{i} [fault={fault}] What colour is the picture?",
            candidates=[f"good-{i}: it is red.", f"bad-{i}: it is blue."],
            media=["scene.png"],
            preferred=0,
            category=f"fault/{fault}",
        )
        for i, fault in enumerate(faults)
    ]


def teacher_for(fake: FakeTeacher, **kw) -> OpenAITeacher:
    s = dict(base_url=fake.url, model="fake", timeout_s=0.5, retries=3, backoff_s=0.05, concurrency=4)
    s.update(kw)
    return OpenAITeacher(TeacherSettings(**s))


FAULTS = [
    "ok",
    "tool",
    "500once",
    "429once",
    "timeout_once",
    "malformed_once",
    "nochoices_once",
    "wrong",
    "garbage",
    "always500",
]


def test_distill_survives_faults(tmp_path):
    records = answer_records(tmp_path, FAULTS)
    out = tmp_path / "distill"
    with FakeTeacher(sleep_for_timeout=1.0) as fake:
        teacher = teacher_for(fake)
        summary = distill(records, teacher, out, DistillSettings(swap="none", chunk=4), media_root=tmp_path)
        assert summary["kept"] == 7
        assert summary["rejected"] == {"wrong verdict": 1, "unparseable": 1}
        assert summary["failed"] == {"HTTP 500": 1}
        kept = {t["id"].split("|")[0]: t for t in map(json.loads, (out / "kept.jsonl").read_text().splitlines())}
        assert set(kept) == {f"item-{i}" for i, f in enumerate(FAULTS) if f not in ("wrong", "garbage", "always500")}
        # The API teacher's tool call ran through our crop tool, and the teacher saw the observation.
        tool = Trajectory.from_dict(kept["item-1"])
        assert [c["name"] for c in tool.tool_trace] == ["crop"] and tool.tool_trace[0]["ok"]
        assert "after zooming in" in tool.final_text and "2 image(s)" in tool.final_text
        # 429 with Retry-After: the retry waited at least that long.
        times = [t for t, text, _ in fake.log if "[fault=429once]" in text]
        assert len(times) == 2 and times[1] - times[0] >= 0.2
        assert teacher.stats["HTTP 429"] == 1 and teacher.stats["timeout"] == 1 and teacher.stats["malformed"] == 2
        failed = [json.loads(x) for x in (out / "failed.jsonl").read_text().splitlines()]
        assert failed[0]["record_id"] == "item-9" and "after 4 attempts" in failed[0]["error"]
        rejected = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
        assert {r["reason"] for r in rejected} == {"wrong verdict", "unparseable"}
        assert json.loads((out / "summary.json").read_text())["per_category"]["fault/ok"] == {"kept": 1}

        # A re-run reuses every finished trajectory and retries only the failed one.
        before = len(fake.log)
        again = distill(records, teacher_for(fake), out, DistillSettings(swap="none", chunk=4), media_root=tmp_path)
        assert again["reused_from_cache"] == 9 and again["kept"] == 7
        new = fake.log[before:]
        assert new and all("[fault=always500]" in text for _, text, _ in new)


def test_swap_both_maps_positions_back(tmp_path):
    records = answer_records(tmp_path, ["ok", "ok"])
    with FakeTeacher() as fake:
        summary = distill(
            records, teacher_for(fake), tmp_path / "d", DistillSettings(swap="both"), media_root=tmp_path
        )
    assert summary["kept"] == 4 and summary["trajectories"] == 4
    kept = [json.loads(x) for x in (tmp_path / "d" / "kept.jsonl").read_text().splitlines()]
    assert sorted(tuple(t["order"]) for t in kept) == [(0, 1), (0, 1), (1, 0), (1, 0)]
    # Shown second, the good answer is "Answer 2": the verdict is right in displayed terms.
    assert all(t["verdict"]["winner"] == t["order"].index(0) for t in kept)


def test_metadata_only_records_are_skipped_and_counted(tmp_path):
    records = answer_records(tmp_path, ["ok"])
    records.append(
        PreferenceRecord(
            id="x",
            task="pairwise",
            modality="image",
            prompt="p",
            candidates=["a.png", "b.png"],
            preferred=0,
            metadata_only=True,
        )
    )
    with FakeTeacher() as fake:
        summary = distill(
            records, teacher_for(fake), tmp_path / "d", DistillSettings(swap="none"), media_root=tmp_path
        )
    assert summary["skipped_without_media"] == 1 and summary["kept"] == 1


def test_oracle_distillation_on_the_world(tmp_path):
    generate_world(tmp_path / "w", seed=5, splits={"train": 24})
    records = read_records(tmp_path / "w" / "train.jsonl")
    settings = DistillSettings(swap="both", engine=EngineSettings(visual=WORLD_VISUAL, tools=WORLD_TOOLS))
    summary = distill(
        records, OracleTeacher({r.id: r for r in records}), tmp_path / "d", settings, media_root=tmp_path / "w"
    )
    assert summary["kept"] / summary["trajectories"] >= 0.9
    assert summary["tool_calls_per_kept"] > 0.5
    kept = [Trajectory.from_dict(json.loads(x)) for x in (tmp_path / "d" / "kept.jsonl").read_text().splitlines()]
    # Kept trajectories are strict and replay exactly (what SFT rendering relies on).
    with_tools = [t for t in kept if t.tool_trace]
    assert with_tools and all(t.format_ok for t in kept)
    ctx = materialize(with_tools[0], settings=settings.engine)
    assert set(ctx.images) >= set(with_tools[0].images)


def test_kill_and_resume(tmp_path):
    records = answer_records(tmp_path, ["ok"] * 24)
    write_records(records, tmp_path / "records.jsonl")
    out = tmp_path / "d"
    cmd = [
        sys.executable,
        "-m",
        "mmreward.cli",
        "data",
        "distill",
        "--records",
        str(tmp_path / "records.jsonl"),
        "--out",
        str(out),
        "--swap",
        "both",
        "--chunk",
        "4",
        "--concurrency",
        "4",
        "--timeout",
        "5",
    ]
    env = {**os.environ, "OPENAI_API_KEY": "test"}
    with FakeTeacher(delay=0.08) as fake:
        proc = subprocess.Popen(
            [*cmd, "--teacher", fake.url],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.time() + 60
        cache = out / "cache.jsonl"
        while time.time() < deadline:
            if cache.exists() and len(cache.read_text().splitlines()) >= 12:
                break
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_at = time.time()
        done = JobCache(cache).done
        assert 12 <= len(done) < 48, "the run should be killed part-way"
        done_texts = set()
        for e in done.values():
            user = e["trajectory"]["messages"][1]
            done_texts.add(" ".join(p["text"] for p in user["content"] if p["type"] == "text"))
        r = subprocess.run([*cmd, "--teacher", fake.url], env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        summary = json.loads(r.stdout[r.stdout.index("{") :])
        assert summary["kept"] == 48 and summary["reused_from_cache"] == len(done)
        repeated = [text for t, text, _ in fake.log if t > killed_at and text in done_texts]
        assert not repeated, "finished trajectories were requested again after the restart"
    kept = [json.loads(x) for x in (out / "kept.jsonl").read_text().splitlines()]
    assert len({(t["id"]) for t in kept}) == 48


@pytest.mark.parametrize("teacher", ["ftp://x", "gpt-4o"])
def test_cli_rejects_bad_teacher(tmp_path, teacher, capsys):
    from mmreward.cli import main

    write_records(answer_records(tmp_path, ["ok"]), tmp_path / "r.jsonl")
    assert (
        main(
            [
                "data",
                "distill",
                "--records",
                str(tmp_path / "r.jsonl"),
                "--teacher",
                teacher,
                "--out",
                str(tmp_path / "d"),
            ]
        )
        == 2
    )
    assert "--teacher must be 'oracle' or an http(s) base URL" in capsys.readouterr().err
