"""`mmreward pipeline --fast` end to end: every step's artifact exists, every manifest is complete, the report
parses, the final checkpoint carries a model card, and a second run skips what is done."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_pipeline_fast_end_to_end(tmp_path):
    out = tmp_path / "quick"
    cmd = [sys.executable, "-m", "mmreward.cli", "pipeline", "--recipe", "tiny-cpu", "--fast", "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, cwd=REPO)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])

    for f in ("model/config.json", "world/manifest.json", "world/see/val.jsonl", "distill/kept.jsonl",
              "rejection/report.json", "serve/smoke.json", "eval/oracle.json", "report.md", "report.json",
              "accuracy.png", "grpo/README.md", "grpo/curves.png"):  # fmt: skip
        assert (out / f).is_file(), f
    for stage in ("see", "sft", "rft", "grpo"):
        m = json.loads((out / stage / "manifest.json").read_text())
        assert m["stage"] == stage and m["summary"]["global_step"] > 0 and m["code_version"], stage
        assert (out / stage / "model.safetensors").is_file(), stage
    assert "perception" in json.loads((out / "see" / "manifest.json").read_text())["summary"]
    # Stage 0 ends with the text-only comparison warm-up, then the one-crop warm-up, and SFT starts from that.
    for warmup, before in (("compare", "see"), ("crops", "compare")):
        m = json.loads((out / warmup / "manifest.json").read_text())
        assert Path(m["inputs"]["model"]).name == before, warmup  # (a reused stage-0 cache keeps its first path)
        assert m["summary"]["perception"]["groups"]["compare_match_call"]["n"] > 0, warmup
    sft = json.loads((out / "sft" / "manifest.json").read_text())
    assert Path(sft["inputs"]["model"]).name == "crops" and sft["summary"]["chat_examples"] == 50  # the mix
    for title in ("0b: comparing with the prompt", "0c: one crop at a time"):
        assert f"## Stage {title}" in (out / "report.md").read_text()
        assert f"| {title.replace(':', '')} |" in (out / "grpo" / "README.md").read_text()
    vision = json.loads((out / "vision" / "manifest.json").read_text())
    assert vision["stage"] == "vision" and vision["summary"]["after"]["colour"] >= 0
    # The recipe's oracle looks at each candidate in turn (distill --crop-policy each): two-image trajectories crop
    # image_1, then image_2.
    kept = [json.loads(line) for line in (out / "distill" / "kept.jsonl").read_text().splitlines()]
    pairs = [t for t in kept if t["task"]["modality"] == "image" and len(t["task"]["candidates"]) == 2]
    assert pairs and all([c["arguments"]["image"] for c in t["tool_trace"]] == ["image_1", "image_2"] for t in pairs)
    grpo = json.loads((out / "grpo" / "manifest.json").read_text())["summary"]
    assert grpo["eval_before"] and grpo["eval_after"]

    # Each step pushed the numbers it owns; the report was assembled from those sections.
    assert {f.stem for f in (out / "report").glob("*.json")} == {
        "see", "distill", "sft", "reject", "rft", "grpo", "eval", "serve"
    }  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    for stage in ("untrained", "see", "sft", "rft", "grpo"):
        for split in ("test", "compositional"):
            for tools in ("on", "off"):
                assert report["evals"][stage][split][tools]["n"]["all"] > 0, (stage, split, tools)
    assert {g["goal"].split(" >=")[0] for g in report["goals"]} >= {"test image tasks (tools on)"}
    assert report["serve"]["requests"] == 2 and report["serve"]["all_answered"]
    text = (out / "report.md").read_text()
    assert "| grpo |" in text and "oracle (tools)" in text and "## Goals" in text
    card = (out / "grpo" / "README.md").read_text()
    assert "Qwen2_5_VLForConditionalGeneration" in card and "mmreward serve" in card
    # Reward-hacking probes on the final judge and on the oracle, which passes all of them; both in report and card.
    oracle = json.loads((out / "eval" / "probes" / "oracle" / "probes.json").read_text())["probes"]
    assert len(oracle) == 9 and all(row["passes"] for row in oracle.values())
    assert (out / "eval" / "probes" / "grpo" / "probes.json").is_file()
    assert "## Robustness: reward-hacking probes" in text and "### oracle:" in text and "| duplicate |" in card
    # The viewer shows the pipeline's eval runs, distillation, rejection sampling and GRPO, each as a stage.
    from eval.view import load_items

    stages = {i.stage for i in load_items(out)}
    assert {"distill:kept", "rejection", "eval/grpo/test-tools_on"} <= stages

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("done already") == 10  # every step but the report is skipped


def test_stage0_cache_key_follows_the_code_that_writes_its_data(tmp_path, monkeypatch):
    """The stage-0 cache is keyed on settings *and* on the source that builds the model, writes the learning-to-see
    data and trains it: editing that code must not reuse a checkpoint trained on the old data."""
    import mmreward_tiny.pipeline as pl

    src = tmp_path / "repo"
    (src / "gen").mkdir(parents=True)
    (src / "gen" / "see.py").write_text("VIEWS = ('whole',)\n")
    (src / "gen" / "notes.txt").write_text("not code\n")
    monkeypatch.setattr(pl, "STAGE0_SOURCES", ("gen",))
    monkeypatch.setattr(pl, "REPO", src)
    p = pl.Pipeline.__new__(pl.Pipeline)
    p.cfg = {"model": {"hidden_size": 8}, "world": {"n": 4}, "see": {"num_train_epochs": 1}}
    p.fast, p.out = False, tmp_path / "run"
    recipe = tmp_path / "see.yaml"
    recipe.write_text("learning_rate: 1.0e-3\n")
    p.stage_recipe = lambda stage: recipe
    first = p._stage0_key()
    assert p._stage0_key() == first
    (src / "gen" / "notes.txt").write_text("edited, but not code\n")
    assert p._stage0_key() == first
    (src / "gen" / "see.py").write_text("VIEWS = ('whole', 'pair')\n")
    second = p._stage0_key()
    assert second != first
    p.cfg["see"]["num_train_epochs"] = 2
    third = p._stage0_key()
    recipe.write_text("learning_rate: 2.0e-3\n")
    fourth = p._stage0_key()
    p.cfg["vision"] = {"max_steps": 10}  # the vision pretraining that stage 0 starts from
    fifth = p._stage0_key()
    p.cfg["compare"] = {"max_steps": 10}  # the comparison warm-up that ends stage 0
    sixth = p._stage0_key()
    assert p._stage0_dirs() == ["vision", "see", "compare"] and p.sft_start.name == "compare"
    p.cfg["crops"] = {"max_steps": 10}  # the one-crop warm-up runs after it
    assert len({first, second, third, fourth, fifth, sixth, p._stage0_key()}) == 7
    assert p._stage0_dirs() == ["vision", "see", "compare", "crops"] and p.sft_start.name == "crops"


def test_report_shows_a_judge_that_answers_by_position(tmp_path):
    """The report's "first shown" column: the share of decided pairwise verdicts naming the first candidate shown.
    A judge that always says "Image 1" scores about chance on shuffled orders; this column is where it shows."""
    from data_pipelines.records import PreferenceRecord
    from mmreward_tiny.report import eval_groups, summary_table

    recs, rows = {}, []
    for i in range(8):
        rec = PreferenceRecord(
            id=f"r{i}", task="pairwise", modality="image", prompt="p", candidates=["a.png", "b.png"], media=[],
            preferred=0, metadata={"world": {"kind": "image", "needs_tool": False}},
        )  # fmt: skip
        recs[rec.id] = rec
        order = [0, 1] if i % 2 == 0 else [1, 0]
        verdict = {"kind": "pairwise", "winner": 0, "score": None, "dimensions": {}}
        rows.append(
            {"record_id": rec.id, "order": order, "verdict": verdict, "correct": order[0] == 0, "tool_calls": 0}
        )
    rows.append({"record_id": "r0", "order": [0, 1], "verdict": None, "correct": False, "tool_calls": 0})
    (tmp_path / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    g = eval_groups(tmp_path, recs)
    assert g["first_is_better"] == 1.0 and g["accuracy"]["all"] == round(4 / 9, 4) and g["parse_failure_rate"] > 0
    table = summary_table({"evals": {"sft": {"test": {"on": g}}}}, ["test"]).splitlines()
    assert table[0].split("|")[-2].strip() == "first shown"
    assert table[2].startswith("| sft |") and table[2].split("|")[-2].strip() == "1.000"
    assert table[3].startswith("| chance") and table[3].split("|")[-2].strip() == "0.500"


def test_warmups_chain_and_mix_into_sft(tmp_path, monkeypatch):
    """With ``compare`` and ``crops`` sections, stage 0 runs vision, see, compare, crops, each from the one before;
    the world step writes both kinds of rows, and SFT starts from the last warm-up with the first N rows of each."""
    import mmreward_tiny.pipeline as pl

    p = pl.Pipeline("tiny-cpu", tmp_path / "run", fast=True)
    recipes = {s: p.stage_recipe(s) for s in ("vision", "see", "compare", "crops", "sft")}
    p.stage_recipe = recipes.__getitem__
    monkeypatch.setattr(pl, "REPO", tmp_path / "repo")  # the stage-0 cache lands under tmp_path
    monkeypatch.setattr(pl, "STAGE0_SOURCES", ())
    p.cfg["world"]["crops"] = 7
    p.cfg["crops"] = {"max_steps": 3, "eval_see_limit": 5}
    p.cfg["sft"].update(compare_rows=9, crops_rows=4)
    calls = []

    def sh(step, args):  # record the command; make what a training step would have written
        calls.append([str(a) for a in args])
        if "--output_dir" in args:
            out = Path(args[args.index("--output_dir") + 1])
            out.mkdir(parents=True, exist_ok=True)
            (out / "manifest.json").write_text("{}")
        return ""

    p.command = sh
    p.step_world()
    assert calls[0][:2] == ["data", "synth"] and calls[1][:2] == ["tiny", "curriculum"]
    assert calls[1][calls[1].index("--compare") + 1] == "400" and calls[1][calls[1].index("--crops") + 1] == "7"
    p.step_see()
    starts = {c[c.index("--output_dir") + 1]: c[c.index("--model_name_or_path") + 1] for c in calls[2:]}
    assert starts == {
        str(p.path(b)): str(p.path(a))
        for a, b in (("model", "vision"), ("vision", "see"), ("see", "compare"), ("compare", "crops"))
    }
    crops = next(c for c in calls if str(p.path("crops")) in c)
    assert str(p.world / "see" / "crops" / "train.jsonl") in crops and crops[crops.index("--max_steps") + 1] == "3"
    p.step_sft()
    sft = calls[-1]
    assert sft[sft.index("--model_name_or_path") + 1] == str(p.path("crops"))
    i = sft.index("--chat_files")
    assert sft[i + 1 : i + 3] == [str(p.world / "see" / w / "train.jsonl") for w in ("compare", "crops")]
    j = sft.index("--chat_limit")
    assert sft[j + 1 : j + 3] == ["9", "4"]


def test_report_is_assembled_from_the_sections_steps_pushed(tmp_path):
    """The report reads only what steps pushed to <out>/report/, merged in step order, plus the step timings."""
    import mmreward_tiny.pipeline as pl
    from mmreward_tiny.report import collect, push_section

    p = pl.Pipeline("tiny-cpu", tmp_path / "run", fast=True)
    (p.path("sft")).mkdir(parents=True)
    (p.path("sft", "manifest.json")).write_text(json.dumps({"summary": {"global_step": 3}}))
    push_section(p, "sft")
    push_section(p, "world")  # a step with no numbers of its own pushes nothing
    (p.path("report", "serve.json")).write_text(json.dumps({"serve": {"requests": 2}}))
    p.state["steps"] = {"sft": {"seconds": 1.0}}
    data = collect(p)
    assert data["summaries"] == {"sft": {"global_step": 3}} and data["serve"] == {"requests": 2}
    assert data["evals"] == {} and data["steps"] == {"sft": {"seconds": 1.0}}
    assert sorted(f.name for f in p.path("report").iterdir()) == ["serve.json", "sft.json"]
