"""`mmreward view`: the site built from an eval run, distillation and rejection sampling, opened in a real headless
Chromium (Debian's package; scripts/test.sh installs it when missing): the DOM holds the items, the crop boxes and
the frames, the URL filters select exactly the items they should, and screenshots show a rendered page."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from data_pipelines.records import read_records
from data_pipelines.synthetic.generate import generate_world
from data_pipelines.synthetic.oracle import OracleTeacher

REPO = Path(__file__).resolve().parents[1]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if os.environ.get("MMREWARD_REQUIRE_CHROMIUM"):
        pytest.fail("no chromium on PATH although scripts/test.sh should have installed it (apt-get install chromium)")
    pytest.skip("no chromium on PATH (scripts/test.sh installs Debian's chromium)")


def browse(url: str, *args: str) -> str:
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args, url]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def rows(dom: str) -> list[str]:
    return re.findall(r'<tr class="item"[^>]*>(.*?)</tr>', dom, flags=re.S)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A world, an eval run by an oracle that is wrong on purpose on known items, and the oracle's distillation."""
    from data_pipelines.distill import distill
    from data_pipelines.rejection import rejection_sample
    from eval.run import RunSettings, run_suite
    from eval.suites import get_suite

    root = tmp_path_factory.mktemp("view")
    world = root / "world"
    generate_world(world, seed=11, splits={"test": 16})
    records = read_records(world / "test.jsonl")
    pairs = [r for r in records if r.task == "pairwise" and r.preferred is not None]
    always_wrong, wrong_once = {pairs[0].id, pairs[1].id}, {pairs[2].id}

    oracle = OracleTeacher({r.id: r for r in records})

    class WrongOnPurpose:
        """The oracle, with its final answer swapped on chosen items (on one presented order only for one)."""

        name = "oracle-wrong-on-purpose"

        def generate(self, requests):
            outs = oracle.generate(requests)
            for req, o in zip(requests, outs):
                rid = req.key.split("|")[0]
                if rid in always_wrong or (rid in wrong_once and req.key.endswith("|10")):
                    o.text = re.sub(r"([12]) is better", lambda m: f"{3 - int(m.group(1))} is better", o.text)
            return outs

    out = root / "runs"
    run_suite(get_suite("synthetic_test"), WrongOnPurpose(), out / "eval", RunSettings(swap="both"), str(world))
    distill(records, oracle, out / "distill", media_root=world)
    rejection_sample(records[:4], oracle, out / "reject", media_root=world)
    return {"root": root, "world": world, "out": out, "always_wrong": always_wrong, "wrong_once": wrong_once}


@pytest.fixture(scope="module")
def site(runs):
    site = runs["root"] / "site"
    cmd = [sys.executable, "-m", "mmreward.cli", "view", str(runs["out"]), "--out", str(site)]
    cmd += ["--records", str(runs["world"] / "test.jsonl")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "open " in r.stdout
    return site


def test_summary_counts_every_stage(runs, site):
    view = json.loads((site / "view.json").read_text())
    s = view["summary"]
    assert set(s["by_stage"]) == {"eval", "distill:kept", "distill:rejected", "reject"} - (
        set() if (runs["out"] / "distill" / "rejected.jsonl").read_text().strip() else {"distill:rejected"}
    )
    n_eval = sum(1 for _ in (runs["out"] / "eval" / "trajectories.jsonl").open())
    assert s["by_stage"]["eval"]["n"] == n_eval
    wrong = 2 * len(runs["always_wrong"]) + len(runs["wrong_once"])
    assert s["by_stage"]["eval"]["accuracy"] == pytest.approx(1 - wrong / n_eval)
    assert s["by_stage"]["distill:kept"]["accuracy"] == 1.0
    assert s["by_stage"]["reject"]["scored"] == s["by_stage"]["reject"]["n"] > 0  # labelled through --records
    assert 0 < s["tool_call_rate"] <= 1 and view["without_media"] == 0


def test_index_filters_in_chromium(runs, site):
    index = (site / "index.html").as_uri()
    everything = rows(browse(index, "--dump-dom"))
    view = json.loads((site / "view.json").read_text())
    assert len(everything) == min(100, view["pages"])
    wrong = rows(browse(index + "#stage=eval&result=wrong", "--dump-dom"))
    ids = {re.search(r">(synth-test-\d+)", r).group(1) for r in wrong}
    assert ids == runs["always_wrong"] | runs["wrong_once"]
    disagree = rows(browse(index + "#stage=eval&disagree=yes", "--dump-dom"))
    assert {re.search(r">(synth-test-\d+)", r).group(1) for r in disagree} == runs["wrong_once"]
    tools = rows(browse(index + "#stage=eval&needs_tool=True", "--dump-dom"))
    assert tools and len(tools) < len(everything)


def test_item_pages_show_boxes_frames_and_both_orders(runs, site):
    trajs = [json.loads(line) for line in (runs["out"] / "eval" / "trajectories.jsonl").open()]
    crop = next(t for t in trajs if any(c["name"] == "crop" and c["ok"] for c in t["trajectory"]["tool_trace"]))
    frames = next(t for t in trajs if any(c["name"] == "select_frames" for c in t["trajectory"]["tool_trace"]))
    pages = {}
    for page in sorted((site / "items").glob("*.html")):
        text = page.read_text()
        title = re.search(r"<h2>([^<]+)</h2>", text).group(1)
        pages.setdefault(title, page)

    dom = browse(pages[f"{crop['record_id']} (v0)"].as_uri(), "--dump-dom")
    assert dom.count('class="order"') == 2  # both presented orders, side by side
    box = [c for c in crop["trajectory"]["tool_trace"] if c["name"] == "crop"][0]["arguments"]["bbox_2d"]
    assert f"left:{box[0] / 10:.2f}%" in dom and 'class="box"' in dom
    assert all('src="../thumbs/' in dom for _ in [0]) and "obs_1" in dom

    dom = browse(pages[f"{frames['record_id']} (v0)"].as_uri(), "--dump-dom")
    assert re.search(r"video_1_frame_\d+ \(t=[\d.]+s\)", dom)  # overview frames with index and timestamp
    assert re.search(r"obs_\d+: video_\d frame \d+ at [\d.]+s", dom)  # the frames the judge selected
    shot = runs["root"] / "item.png"
    browse(pages[f"{crop['record_id']} (v0)"].as_uri(), f"--screenshot={shot}", "--window-size=1400,1600")
    _assert_rendered(shot)
    shot = runs["root"] / "index.png"
    browse((site / "index.html").as_uri(), f"--screenshot={shot}", "--window-size=1400,1000")
    _assert_rendered(shot)
    if os.environ.get("MMREWARD_SCREENSHOTS"):  # how the README's pictures are made
        for name in ("index.png", "item.png"):
            shutil.copy(runs["root"] / name, Path(os.environ["MMREWARD_SCREENSHOTS"]) / f"view-{name}")


def _assert_rendered(path: Path) -> None:
    img = Image.open(path).convert("RGB")
    assert img.size[0] >= 1000
    colours = len(img.getcolors(maxcolors=1 << 20) or [])
    assert colours > 200 and max(ImageStat.Stat(img).stddev) > 20  # text, tables and pictures, not a blank page


def test_second_build_reuses_thumbnails_and_file_input(runs, site, tmp_path):
    from eval.view import build_site, load_items

    items = load_items(runs["out"])
    again = build_site(items, site)
    assert again["thumbnails_made"] == 0 and again["thumbnails_reused"] > 0
    one = load_items(runs["out"] / "distill" / "kept.jsonl")
    assert one and all(i.stage == "kept" for i in one)


def test_bad_inputs_are_clear(runs, tmp_path):
    def view(*args):
        return subprocess.run(
            [sys.executable, "-m", "mmreward.cli", "view", *args], capture_output=True, text=True, cwd=REPO
        )

    r = view(str(tmp_path / "nothing"), "--out", str(tmp_path / "s"))
    assert r.returncode == 2 and "no such file or folder" in r.stderr
    (tmp_path / "empty").mkdir()
    r = view(str(tmp_path / "empty"), "--out", str(tmp_path / "s"))
    assert r.returncode == 2 and "nothing to show" in r.stderr
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    r = view(str(runs["out"] / "distill"), "--out", str(tmp_path / "mine"))
    assert r.returncode == 2 and "holds other files" in r.stderr
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
