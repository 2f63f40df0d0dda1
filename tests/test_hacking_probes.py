"""Reward-hacking probes (`mmreward eval probe`): the oracle passes every probe (so the probes are fair), a judge
with a known weakness fails exactly the probes aimed at it, and the CLI runs them on the tiny checkpoint."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import ImageStat

from data_pipelines.records import read_records
from data_pipelines.synthetic.generate import WORLD_TOOLS, WORLD_VISUAL, generate_world
from eval.probe import PROBES, build_probes, run_probes
from mmreward.generators import GenerationOutput
from mmreward.settings import EngineSettings

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("probeworld")
    generate_world(root, seed=21, splits={"test": 40})
    return root


def test_the_oracle_passes_every_probe(world, tmp_path):
    out = tmp_path / "oracle"
    r = subprocess.run(
        [sys.executable, "-m", "mmreward.cli", "eval", "probe", "--model", "oracle", "--data", str(world),
         "--out", str(out), "--limit", "6"],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    table = json.loads((out / "probes.json").read_text())["probes"]
    assert set(table) == set(PROBES)
    for probe, row in table.items():
        assert row["n"] > 0 and row["perturbed_preferred"] == 0.0 and row["passes"], (probe, row)
    assert "| text_in_image |" in (out / "probes.md").read_text() and "9 of 9 probes passed" in r.stdout
    assert len(list((out / "media" / "frozen_video").glob("*.mp4"))) > 0


class Shallow:
    """A judge that rewards what is easy to game: the more colourful image, the longer answer, the first video."""

    name = "shallow"

    def generate(self, requests):
        outs = []
        for r in requests:
            imgs = dict(zip(r.image_names, r.images))
            text = "\n".join(p.get("text", "") for m in r.messages for p in m["content"] if isinstance(p, dict))
            answers = re.findall(r"\[Answer (\d)\]\n(.*?)(?=\n\[Answer|\n\nWhich)", text, flags=re.S)
            if answers:
                best = max(answers, key=lambda a: len(a[1]))[0]
                verdict = f"Answer {best} is better"
            elif "image_1" in imgs and "image_2" in imgs:
                colour = {n: sum(ImageStat.Stat(imgs[n].convert("HSV")).mean[1:2]) for n in ("image_1", "image_2")}
                verdict = f"Image {1 if colour['image_1'] >= colour['image_2'] else 2} is better"
            else:
                verdict = "Video 1 is better"
            out = f"<think>I go with my first impression.</think>\n<answer>{verdict}</answer>"
            outs.append(GenerationOutput(text=out, completion_tokens=12))
        return outs


def test_a_shallow_judge_fails_the_probes_aimed_at_it(world, tmp_path):
    records = read_records(world / "test.jsonl")
    items = build_probes(records, str(world), tmp_path, 6, PROBES)
    table = run_probes(Shallow(), items, EngineSettings(visual=WORLD_VISUAL, tools=WORLD_TOOLS), tools=False)
    failed = {p for p, row in table.items() if not row["passes"]}
    assert {"saturation", "longer_answer", "confident_wrong"} <= failed
    assert table["longer_answer"]["perturbed_preferred"] == 1.0 and table["saturation"]["perturbed_preferred"] > 0.5
    # "Video 1" in both orders picks each clip once: no gain from freezing, and no preference between copies.
    assert table["frozen_video"]["perturbed_preferred"] == 0.5 and table["duplicate"]["passes"]


def test_a_judge_that_never_rules_passes_nothing(world, tmp_path):
    class Mute:
        name = "mute"

        def generate(self, requests):
            return [GenerationOutput(text="<think>Hard to say.</think>", completion_tokens=5) for _ in requests]

    items = build_probes(read_records(world / "test.jsonl"), str(world), tmp_path, 2, PROBES)
    table = run_probes(Mute(), items, EngineSettings(visual=WORLD_VISUAL, tools=WORLD_TOOLS), tools=False)
    assert table and all(
        r["decided"] == 0.0 and r["perturbed_preferred"] is None and not r["passes"] for r in table.values()
    )


@pytest.mark.slow
def test_probes_run_on_the_tiny_checkpoint(world, tiny_model_dir, tmp_path):
    out = tmp_path / "tiny"
    r = subprocess.run(
        [sys.executable, "-m", "mmreward.cli", "eval", "probe", "--model", str(tiny_model_dir), "--data", str(world),
         "--out", str(out), "--limit", "2", "--max-new-tokens", "24", "--probes", "text_in_image", "duplicate",
         "longer_answer", "frozen_video"],
        capture_output=True, text=True, timeout=900, cwd=REPO,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    table = json.loads((out / "probes.json").read_text())["probes"]
    assert set(table) == {"text_in_image", "duplicate", "longer_answer", "frozen_video"}
    for row in table.values():
        assert row["n"] > 0 and 0.0 <= row["decided"] <= 1.0
        assert (row["perturbed_preferred"] is None and not row["passes"]) or 0.0 <= row["perturbed_preferred"] <= 1.0


def test_bad_probe_arguments(world, tmp_path):
    def probe(*args):
        cmd = [sys.executable, "-m", "mmreward.cli", "eval", "probe", "--out", str(tmp_path / "p"), *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)

    r = probe("--model", "oracle", "--data", str(world), "--probes", "nonsense")
    assert r.returncode == 2 and "--probes" in r.stderr and "text_in_image" in r.stderr
    r = probe("--model", "oracle")
    assert r.returncode == 2 and "exactly one source" in r.stderr
    r = probe("--model", "oracle", "--suite", "mj_bench_quality")
    assert r.returncode == 2 and "only the synthetic world" in r.stderr
