"""Scoring rules against hand-computed cases (SCORING.md), the official GenAI-Bench numbers from the real
prediction files, and `mmreward eval run/score/compare` end to end."""

import json
import math

import pytest
from conftest import BENCH

from eval import metrics as M


def test_vlrb_parser_is_greedy_and_needs_the_prefix():
    assert M.vlrb_parse("Therefore, Answer 1 is better. Overall Judgment: Answer 2 is slightly better") == 2
    assert M.vlrb_parse("Overall Judgment: Answer 1 is the better one") == 1
    assert M.vlrb_parse("<answer>Answer 1 is better</answer>") is None  # no 'Overall Judgment'/'Therefore'
    assert M.vlrb_label(None, 2) == "doesntMatch" and M.vlrb_label(2, 2) == "reject" and M.vlrb_label(1, 2) == "agree"


def test_vlrb_aggregation_drops_unmatched_and_uses_majority():
    items = [
        {"key": "a", "group": "general", "labels": ["agree", "agree", "reject"]},  # agree (2 > 1.5)
        {"key": "b", "group": "general", "labels": ["reject"]},
        {"key": "c", "group": "general", "labels": ["doesntMatch"]},  # dropped from the official denominator
        {"key": "d", "group": "hallucination", "labels": ["agree", "reject"]},  # no majority: 'other', dropped
        {"key": "e", "group": "reasoning", "labels": ["agree"]},
    ]
    s = M.vlrb_score(items)
    assert s["groups"]["general"]["official"] == 0.5 and s["groups"]["general"]["strict"] == pytest.approx(1 / 3)
    assert s["groups"]["hallucination"]["official"] is None and s["groups"]["hallucination"]["dropped"] == 1
    assert s["official"]["overall"] == pytest.approx(2 / 3)  # agree 2 / (agree 2 + reject 1)
    assert s["official"]["macro"] == pytest.approx((0.5 + 1.0) / 2)  # groups with a denominator
    assert s["strict"]["overall"] == pytest.approx(2 / 5)


def test_mmrb_seeded_coin_for_failures():
    # random.seed(123): draws 0.052, 0.087, 0.407, 0.108, 0.901 -> failures 1-4 are A, failure 5 is B.
    rows = [{"id": f"x{i}", "label": "A", "output": "no verdict", "category": "vqa"} for i in range(5)]
    s = M.mmrb_score(rows)
    assert s["official"]["all"] == pytest.approx(0.8) and s["strict"]["all"] == 0.0
    rows = [
        {"id": "pairs_1", "label": "B", "output": "... [[B]]", "category": "safety"},
        {"id": "math_2", "label": "A", "output": "[[A]] then [[B]]", "category": "reasoning"},
    ]
    s = M.mmrb_score(rows)
    assert s["official"]["safety/bias"] == 1.0 and s["official"]["reasoning/math"] == 1.0  # '[[A]]' is checked first


def test_genai_parser_and_official_numbers():
    assert M.genai_parse("x [[A>B]] y [[B>A]] z") == "[[A>B]] y [[B>A]]"  # greedy: a wrong, compound match
    assert M.genai_parse("[[A>B\n]]") is None  # '.' does not cross a newline
    assert M.genai_correct("[[A=B]]", "tievote") and M.genai_correct("[[A=B]]", "bothbad_vote")
    assert not M.genai_correct("[[A=B=Good]]", "bothbad_vote") and M.genai_correct("[[B>>A]]", "rightvote")

    def rows(name):
        lines = [json.loads(x) for x in (BENCH / "genai_bench" / name).read_text().splitlines()]
        return [{"response": r["response"], "human_vote": r["human_vote"]} for r in lines]  # no 'correct' field

    s = M.genai_score(
        {
            "image_generation": rows("image_generation_test_v1_random_predictions.jsonl"),
            "image_edition": rows("image_edition_test_v1_random_predictions.jsonl"),
            "video_generation": rows("video_generation_test_v1_random_predictions.jsonl"),
        }
    )
    assert [round(100 * s["official"][t], 2) for t in ("image_generation", "image_edition", "video_generation")] == [
        25.36,
        25.90,
        25.16,
    ]
    gpt4o = M.genai_score({"video_generation": rows("video_generation_test_v1_gpt4o_predictions.jsonl")})
    assert round(100 * gpt4o["official"]["video_generation"], 2) == 48.46


def test_videogen_rules():
    # w/o ties: m == 0 counts as discordant; human ties are left out.
    assert M.videogen_wo_ties([1, -1, 1, 0], [0.3, 0.2, 0.0, 0.5]) == pytest.approx(1 / 3)
    # Tie-calibrated with repeated |m|: the official loop scores a partial state no threshold reaches.
    h, m = [0, 1], [0.5, 0.5]
    assert M.videogen_w_ties_official(h, m) == 1.0
    assert M.videogen_w_ties_threshold(h, m) == 0.5
    # Distinct |m|: both agree (max over thresholds of 3-class accuracy).
    h, m = [1, 0, -1, 1], [0.9, 0.1, -0.4, -0.2]
    assert M.videogen_w_ties_official(h, m) == M.videogen_w_ties_threshold(h, m) == 0.75
    # The generative-judge convention's example from SCORING.md.
    out = M.videogen_generative(
        ["A", "B", "same", "A", "same", "B"],
        [
            "Video 1 is better",
            "Video 1 is better",
            "none",
            "Video 2 is better",
            "Video 1 is better",
            "Video 2 is better",
        ],
    )
    assert out == {"w_tie": 0.5, "wo_tie": 0.5}


def test_mjbench_mjvideo_mmrlhf_rules():
    assert (
        M.mjbench_pred(0.3, 0.3) == "tie"
        and M.mjbench_pred(0.5, 0.2) == "0"
        and M.mjbench_pred(0.1, 0.2, 0.2) == "tie"
    )
    s = M.mjbench_score(["0", "tie", "1", "0"], [0, 0, 0, 1])
    assert s == {"w_tie": 0.25, "wo_tie": pytest.approx(1 / 3), "tie_aware": pytest.approx(1.5 / 4)}
    v = M.mjvideo_score([0, None, 1], [0, 1, 0])
    assert v == {"strict": pytest.approx(1 / 3), "tie_aware": pytest.approx(1.5 / 3)}
    pairs = [
        {"group": "p1", "category": "mcq", "rewards": [2.0, 1.0]},
        {"group": "p1", "category": "mcq", "rewards": [1.0, 1.0]},  # equal rewards are wrong
        {"group": "p2", "category": "mcq", "rewards": [3.0, 0.0]},
        {"group": "p3", "category": "video", "rewards": [0.0, 1.0]},
    ]
    s = M.mmrlhf_score(pairs)
    assert s["acc"]["all"] == 0.5 and s["acc_plus"]["all"] == pytest.approx(1 / 3) and s["acc_plus"]["mcq"] == 0.5


def test_bootstrap_and_position():
    lo, hi = M.bootstrap_ci([1.0] * 30 + [0.0] * 10)
    assert lo < 0.75 < hi and lo > 0.5 and hi < 0.95
    stats = M.position_stats([True, True, False], [True, False])
    assert stats["first_is_better"] == pytest.approx(2 / 3) and stats["consistency"] == 0.5
    assert stats["n_decided"] == 3 and stats["n_order_pairs"] == 2
    assert stats["first_is_better_ci95"][0] <= 2 / 3 <= stats["first_is_better_ci95"][1]
    assert 0.0 <= stats["consistency_ci95"][0] <= 0.5 <= stats["consistency_ci95"][1] <= 1.0
    assert M.position_stats([], [])["first_is_better_ci95"] is None
    assert all(math.isnan(x) for x in M.bootstrap_ci([]))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from data_pipelines.synthetic.generate import generate_world

    root = tmp_path_factory.mktemp("evalworld")
    generate_world(root, seed=4, splits={"test": 24})
    return root


def test_eval_run_with_the_oracle_scores_and_resumes(world, tmp_path):
    from data_pipelines.records import read_records
    from data_pipelines.synthetic.oracle import OracleTeacher
    from eval.run import RunSettings, read_predictions, run_suite
    from eval.score import score_predictions, write_report
    from eval.suites import get_suite, load_suite

    suite = get_suite("synthetic_test")
    records = read_records(world / "test.jsonl")
    oracle = OracleTeacher(lambda key: {r.id: r for r in records}[key.split("|")[0]])
    out = tmp_path / "run"
    m = run_suite(suite, oracle, out, RunSettings(swap="both"), data=str(world))
    rows = read_predictions(out / "predictions.jsonl")
    assert m["items"] == 24 and len(rows) == sum(1 if r.task == "pointwise" else 2 for r in records)
    again = run_suite(suite, oracle, out, RunSettings(swap="both"), data=str(world))
    assert again["new_predictions"] == 0 and len(read_predictions(out / "predictions.jsonl")) == len(rows)
    metrics = score_predictions(suite, rows, load_suite(suite, str(world))[0])
    o = metrics["ours"]
    assert o["accuracy"] > 0.85 and o["consistency"] > 0.85 and 0.3 < o["first_is_better"] < 0.7
    assert o["tool_call_rate"] > 0.5 and o["ci95"][0] <= o["accuracy"] <= o["ci95"][1]
    paths = write_report(metrics, out)
    assert "| accuracy |" in (out / "report.md").read_text() and (out / "accuracy.png").is_file() and paths["plot"]
    needs = get_suite("synthetic_needs_tool")
    assert all(r.metadata["world"]["needs_tool"] for r in load_suite(needs, str(world))[0])


def test_official_rules_on_our_predictions(tmp_path):
    """Our verdicts mapped into each benchmark's terms; items without media are skipped, so rows are hand-made."""
    from data_pipelines.records import PreferenceRecord
    from eval.score import official_metrics
    from eval.suites import get_suite

    rec = PreferenceRecord(
        id="v1",
        task="pairwise",
        modality="answer",
        prompt="q",
        candidates=["good", "bad"],
        media=["x.png"],
        preferred=0,
        category="general",
    )
    rows = [
        {
            "record_id": "v1",
            "order": [1, 0],
            "raw": "Overall Judgment: Answer 2 is better",
            "verdict": {"winner": 1, "dimensions": {}},
            "vote": 0,
        },
    ]
    s = official_metrics(get_suite("vl_rewardbench"), rows, {"v1": rec})
    # Shown second, the chosen answer is "Answer 2": agree under both the official parser and ours.
    assert s["official_parser"]["official"]["overall"] == 1.0
    assert s["official_rule_our_parser"]["official"]["overall"] == 1.0


def test_cli_score_native_files_and_compare(tmp_path, capsys):
    from mmreward.cli import main

    assert (
        main(
            [
                "eval",
                "score",
                "--suite",
                "genai_bench_image_edition",
                "--predictions",
                str(BENCH / "genai_bench" / "image_edition_test_v1_random_predictions.jsonl"),
                "--out",
                str(tmp_path / "a"),
                "--json",
            ]
        )
        == 0
    )
    s = json.loads(capsys.readouterr().out)
    assert round(100 * s["official"]["official"]["image_edition"], 2) == 25.90
    assert (
        main(
            [
                "eval",
                "score",
                "--suite",
                "multimodal_rewardbench",
                "--predictions",
                str(BENCH / "multimodal_rewardbench" / "example_predictions.jsonl"),
                "--out",
                str(tmp_path / "b"),
                "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["official"]["n"]["all"] == 2
    (tmp_path / "m1.json").write_text(json.dumps({"ours": {"accuracy": 0.5, "by_category": {"x": {"accuracy": 0.5}}}}))
    (tmp_path / "m2.json").write_text(json.dumps({"ours": {"accuracy": 0.7, "by_category": {"x": {"accuracy": 0.9}}}}))
    assert main(["eval", "compare", str(tmp_path / "m1.json"), str(tmp_path / "m2.json")]) == 0
    assert "| accuracy | 0.500 | 0.700 |" in capsys.readouterr().out


def test_cli_eval_run_tiny_model_writes_the_report(world, tiny_model_dir, tmp_path, capsys):
    from mmreward.cli import main

    out = tmp_path / "tiny"
    assert (
        main(
            [
                "eval",
                "run",
                "--suite",
                "synthetic_test",
                "--model",
                str(tiny_model_dir),
                "--data",
                str(world),
                "--out",
                str(out),
                "--limit",
                "3",
                "--max-new-tokens",
                "24",
            ]
        )
        == 0
    )
    assert {"predictions.jsonl", "metrics.json", "report.md", "accuracy.png", "run.json"} <= {
        p.name for p in out.iterdir()
    }
    assert "synthetic_test: accuracy" in capsys.readouterr().out
    # A public suite whose media is not on disk: nothing can be judged, which is a failure (exit 1) that says where
    # the media were looked for, before any model loads; nothing is written.
    code = main(["eval", "run", "--suite", "mm_rlhf", "--model", str(tiny_model_dir), "--out", str(tmp_path / "mm")])
    assert code == 1 and "none of its 170 items has its media on disk" in capsys.readouterr().err
    assert not (tmp_path / "mm").exists()


def test_sharded_run_with_two_processes(world, tiny_model_dir, tmp_path):
    """`accelerate launch` with two processes: each judges its share; scoring the folder reads both shards."""
    import os
    import subprocess
    import sys

    from eval.run import read_predictions

    out = tmp_path / "sharded"
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        "train/accelerate/ddp_cpu_2proc.yaml",
        "-m",
        "mmreward.cli",
        "eval",
        "run",
        "--suite",
        "synthetic_test",
        "--model",
        str(tiny_model_dir),
        "--data",
        str(world),
        "--out",
        str(out),
        "--limit",
        "4",
        "--max-new-tokens",
        "16",
        "--swap",
        "none",
        "--batch-size",
        "1",  # one row per generate call, so both runs compute every judgment alike
    ]
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=root, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "predictions.rank0.jsonl").is_file() and (out / "predictions.rank1.jsonl").is_file()
    rows = read_predictions(out)
    assert len(rows) == 4 and len({x["key"] for x in rows}) == 4
    # The same run in one process gives the same judgments and, scored, the same metrics.
    single = tmp_path / "single"
    launch = cmd.index("-m", 3)  # everything after accelerate's own arguments
    one = [sys.executable, *cmd[launch:]]
    one[one.index(str(out))] = str(single)
    r = subprocess.run(one, capture_output=True, text=True, timeout=600, cwd=root, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert {x["key"]: x["raw"] for x in read_predictions(single)} == {x["key"]: x["raw"] for x in rows}
    scored = []
    for folder in (out, single):
        r = subprocess.run([sys.executable, "-m", "mmreward.cli", "eval", "score", "--suite", "synthetic_test",
                            "--predictions", str(folder), "--data", str(world)],
                           capture_output=True, text=True, timeout=300, cwd=root, env=env)  # fmt: skip
        assert r.returncode == 0, r.stderr[-3000:]
        metrics = json.loads((folder / "metrics.json").read_text())
        metrics["ours"].pop("mean_latency_s")  # how long, not what: the one field that differs
        scored.append({k: metrics[k] for k in ("ours", "official")})
    assert scored[0] == scored[1]


def test_scalar_judge_pairs_from_scores(world, tmp_path):
    """--pointwise: each candidate scored alone; pairs from score differences, with MJ-Bench's threshold rule."""
    from scripted_generator import ScriptedGenerator

    from data_pipelines.records import read_records
    from eval.run import RunSettings, read_predictions, run_suite
    from eval.score import pair_rows, scalar_official, score_predictions
    from eval.suites import get_suite, load_suite
    from mmreward.protocol import format_turn

    records = {r.id: r for r in read_records(world / "test.jsonl")}

    def scorer(request):  # 9 for the preferred candidate, 3 for the other: a perfect scalar judge
        rid, _, cand = request.key.split("|")
        rec = records[rid]
        if rec.task == "pointwise":  # the world's own pointwise items are judged as they are
            return format_turn("scored", answer=f"Score: {int(rec.score)}")
        good = rec.preferred if rec.preferred is not None else -1
        return format_turn("scored", answer=f"Score: {9 if int(cand[1:]) == good else 3}")

    out = tmp_path / "scalar"
    run_suite(
        get_suite("synthetic_test"), ScriptedGenerator(scorer), out, RunSettings(pointwise=True), data=str(world)
    )
    rows = read_predictions(out)
    recs, _ = load_suite(get_suite("synthetic_test"), str(world))
    m = score_predictions(get_suite("synthetic_test"), rows, recs)
    pairwise = [r for r in recs if r.task != "pointwise"]
    assert m["ours"]["n"] == len(pairwise)
    assert m["ours"]["accuracy"] == sum(not r.tie for r in pairwise) / len(pairwise)
    table = {r.id: r for r in recs}
    pairs = pair_rows(rows, table)
    mj = scalar_official(get_suite("mj_bench_alignment"), pairs, table)["mjbench_threshold_0"]
    assert mj["w_tie"] == 1.0 and mj["wo_tie"] == 1.0


def test_calibration_of_a_continuous_reward_in_the_report(world, tmp_path):
    """`eval run --reward` stores each judgment's P(candidate 0 is better); the report gets the reliability table,
    ECE, abstention curve and plots. A judge that always puts 0.8 on the candidate shown first, judged in both
    orders, is right half the time at confidence 0.8: ECE 0.3 exactly."""
    from pathlib import Path

    from data_pipelines.records import read_records
    from data_pipelines.synthetic.oracle import OracleTeacher
    from eval.run import RunSettings, read_predictions, run_suite
    from eval.score import score_predictions, write_report
    from eval.suites import get_suite, load_suite

    class FirstShownAtPoint8(OracleTeacher):
        def option_logprobs(self, messages, images, tools, prefix, options):
            if options != [" 1", " 2"]:  # a pointwise item's score: uniform over 1-10
                return [0.0] * len(options)
            return [math.log(0.8), math.log(0.2)]

    suite = get_suite("synthetic_test")
    records = read_records(world / "test.jsonl")
    judge = FirstShownAtPoint8({r.id: r for r in records})
    out = tmp_path / "cal"
    run_suite(suite, judge, out, RunSettings(swap="both", reward=True), data=str(world))
    rows = read_predictions(out)
    pairs = [r for r in rows if r.get("reward") is not None and 0 < r["reward"] < 1]
    assert pairs and {round(r["reward"], 6) for r in pairs} == {0.8, 0.2}
    assert all(r["reward"] == pytest.approx(0.8 if r["order"][0] == 0 else 0.2) for r in pairs)
    metrics = score_predictions(suite, rows, load_suite(suite, str(world))[0])
    c = metrics["calibration"]["pairwise"]
    assert c["accuracy"] == pytest.approx(0.5) and c["ece"] == pytest.approx(0.3)
    assert c["brier"] == pytest.approx(0.5 * 0.2**2 + 0.5 * 0.8**2)
    assert [b["n"] for b in c["reliability"]] == [c["n"]] and c["abstention"][-1]["coverage"] == 0.0
    o = metrics["ours"]
    assert o["first_is_better_ci95"][0] <= o["first_is_better"] <= o["first_is_better_ci95"][1]
    paths = write_report(metrics, out)
    report = (out / "report.md").read_text()
    assert "expected calibration error 0.300" in report and "![reliability and abstention](calibration.png)" in report
    assert "## Position" in report and Path(paths["calibration"]).is_file() and Path(paths["position"]).is_file()


def test_missing_scalar_scores_count_as_failures():
    """A scalar judge that gave no score for a candidate fails that pair; the pair is never dropped. On
    MM-RLHF-RewardBench's 170 pairs, a judge right on every pair it scored but silent on 27 gets Acc 143/170, not
    143/143; under MJ-Bench's rule the silent pairs are wrong with and without ties."""
    from eval.score import scalar_official
    from eval.suites import get_suite, load_suite

    suite = get_suite("mm_rlhf")
    records, _ = load_suite(suite, str(BENCH))
    table = {r.id: r for r in records}
    assert len(records) == 170
    pairs = []
    for k, r in enumerate(records):
        right = [2.0, 1.0] if r.preferred == 0 else [1.0, 2.0]
        pairs.append({"record_id": r.id, "scores": [None, 1.0] if k % 6 == 0 and k < 162 else right})
    silent = sum(None in p["scores"] for p in pairs)
    assert silent == 27
    official = scalar_official(suite, pairs, table)
    assert official["missing_scores"] == 27 and official["pairs"] == 170
    assert official["mmrlhf"]["acc"]["all"] == pytest.approx(143 / 170)
    mj = scalar_official(get_suite("mj_bench_alignment"), pairs, table)
    assert mj["mjbench_threshold_0"]["w_tie"] == pytest.approx(143 / 170)
    assert mj["mjbench_threshold_0"]["wo_tie"] == pytest.approx(143 / 170)
    assert mj["mjbench_threshold_0"]["tie_aware"] == pytest.approx(143 / 170)


def test_mmrb_coins_fall_in_the_benchmark_files_order():
    """Multimodal RewardBench's official coin (seed 123) is drawn by unparseable outputs in its file's order: the
    same predictions written in another order (shards, resumes) score the same."""
    from eval.score import official_metrics
    from eval.suites import get_suite, load_suite

    suite = get_suite("multimodal_rewardbench")
    records, _ = load_suite(suite, str(BENCH))
    table = {r.id: r for r in records}
    rows = []
    for r in records:
        for vote in range(6):
            first = vote % 2 if r.preferred == 0 else vote // 3
            rows.append({"key": f"{r.id}|v{vote}|o{first}", "record_id": r.id, "vote": vote,
                         "order": [first, 1 - first], "raw": "no verdict here", "verdict": None})  # fmt: skip
    backwards = rows[::-1]
    # Taken as written, the two orders draw the coins differently: the sort is what makes them agree.
    labels = [("A" if x["order"][0] == table[x["record_id"]].preferred else "B") for x in rows]
    as_written = [{"id": x["record_id"], "label": lab, "output": x["raw"]} for x, lab in zip(rows, labels)]
    assert M.mmrb_score(as_written) != M.mmrb_score(as_written[::-1])
    a = official_metrics(suite, rows, table)["official_parser"]
    assert official_metrics(suite, backwards, table)["official_parser"] == a and a["n"]["all"] == len(rows)


def test_genai_official_number_comes_from_the_raw_text():
    """GenAI-Bench's official parser reads the judge's own text; our parse, mapped onto "[[A>B]]", stands beside it.
    The three ways they part, worked out by hand: a tie with a Good suffix on a both-bad item, spaces inside the
    brackets, and a verdict on two lines (the official regex reads the first)."""
    from eval.score import official_metrics
    from eval.suites import get_suite, load_suite

    suite = get_suite("genai_bench_video_generation")
    records, _ = load_suite(suite, str(BENCH))
    table = {r.id: r for r in records}
    by_vote = {}
    for r in records:
        by_vote.setdefault(r.metadata["vote_type"], r)
    cases = [  # (item, the judge's raw text, our verdict's winner in display terms)
        (by_vote["bothbad_vote"], "Both fail the prompt. [[A=B=Good]]", None),
        (by_vote["leftvote"], "The left one follows it: [[ A>B ]]", 0),
        (by_vote["leftvote"], "[[B>A]] at first sight,\nbut on a closer look [[A>B]]", 0),
    ]
    rows = [{"key": f"{rec.id}|v{k}|o0", "record_id": rec.id, "vote": k, "order": [0, 1], "raw": raw,
             "verdict": {"winner": w, "dimensions": {}}} for k, (rec, raw, w) in enumerate(cases)]  # fmt: skip
    m = official_metrics(suite, rows, table)
    assert m["official_parser"]["official"]["average"] == 0.0
    assert m["official_rule_our_parser"]["official"]["average"] == 1.0


def test_vlrb_sources_rates_strict_macro_and_k_run_table():
    """cal.py's extras, worked out by hand: four items of three runs each. A (povid) agrees every run, B
    (vlfeedback) rejects every run, C (reasoning_tasks) agrees every run, D (rlaif-v) splits agree, reject,
    doesntMatch (no majority: 'other', dropped). Any shuffle leaves A, B and C as they are; D at k = 1 takes one of
    its three runs, whatever it is."""
    runs = []
    for key, source, group, labels in [
        ("A", "povid", "hallucination", ["agree"] * 3),
        ("B", "vlfeedback", "general", ["reject"] * 3),
        ("C", "reasoning_tasks", "reasoning", ["agree"] * 3),
        ("D", "rlaif-v", "hallucination", ["agree", "reject", "doesntMatch"]),
    ]:
        runs += [{"key": key, "source": source, "group": group, "label": lab} for lab in labels]
    items = {}
    for r in runs:
        items.setdefault(r["key"], {**r, "labels": []})["labels"].append(r["label"])
    s = M.vlrb_score(list(items.values()))
    assert s["official"]["overall"] == pytest.approx(2 / 3)  # A and C agree, B rejects, D dropped
    assert s["official"]["macro"] == pytest.approx((0.0 + 1.0 + 1.0) / 3)
    assert s["strict"]["overall"] == pytest.approx(2 / 4)
    assert s["strict"]["macro"] == pytest.approx((0.0 + 0.5 + 1.0) / 3)  # general B; hallucination A, D; C
    assert s["rates"] == {"agree": 0.5, "reject": 0.25, "doesntMatch": 0.0, "other": 0.25}
    assert s["sources"]["povid"]["official"] == 1.0 and s["sources"]["vlfeedback"]["official"] == 0.0
    assert s["sources"]["rlaif-v"] == {"official": None, "n": 1}
    table = M.vlrb_k_table(runs, ks=(1, 3))
    assert table["k=3"]["official"] == s["official"] and table["k=3"]["rates"] == s["rates"]
    k1 = table["k=1"]
    assert k1["groups"]["general"]["official"] == 0.0 and k1["groups"]["reasoning"]["official"] == 1.0
    d = k1["sources"]["rlaif-v"]["official"]  # D's one run: agree (1.0), reject (0.0) or doesntMatch (None)
    hallucination = {1.0: 1.0, 0.0: 0.5, None: 1.0}[d]
    assert k1["groups"]["hallucination"]["official"] == pytest.approx(hallucination)
    assert M.vlrb_k_table(runs, ks=(1, 3)) == table  # seeded: the same table every time


def test_mjbench_agreement_threshold_and_subsets():
    """MJ-Bench's test-script statistics, worked out by hand on four pairs, then its score threshold and per-subset
    numbers for a scalar judge."""
    import math

    from eval.score import scalar_official
    from eval.suites import get_suite, load_suite

    a = M.mjbench_agreement(["0", "1", "tie", "0"], [0, 1, 1, 1])
    # judge 0, 1, 0.5, 0 against human 0, 1, 1, 1: r = 0.375 / sqrt(0.6875 * 0.75); then the tie counts as 0:
    # agreement 0.5, chance 0.25 * 0.75 + 0.75 * 0.25 = 0.375, kappa 0.125 / 0.625; squared errors 0, 0, 1, 1.
    assert a["pearson"] == pytest.approx(0.375 / math.sqrt(0.6875 * 0.75))
    assert a["cohen_kappa"] == pytest.approx(0.2) and a["mse"] == pytest.approx(0.5) and a["n"] == 4
    assert M.mjbench_agreement(["0", "0"], [0, 0])["pearson"] is None  # a constant side has no correlation

    records, _ = load_suite(get_suite("mm_rlhf"), str(BENCH))
    table = {r.id: r for r in records}
    pairs = [{"record_id": r.id, "scores": [2.0, 1.5] if r.preferred == 0 else [1.5, 2.0]} for r in records]
    suite = get_suite("mj_bench_alignment")
    strict = scalar_official(suite, pairs, table)["mjbench_threshold_0"]
    assert strict["w_tie"] == 1.0 and len(strict["subsets"]) > 1
    assert all(v["w_tie"] == 1.0 for v in strict["subsets"].values())
    loose = scalar_official(suite, pairs, table, threshold=0.5)["mjbench_threshold_0.5"]
    assert loose["w_tie"] == 0.0 and loose["tie_aware"] == 0.5  # every difference is 0.5: all ties


def test_scalar_mjvideo_numbers_and_the_generative_videogen_convention():
    """A scalar judge on MJ-Bench-Video gets MJ-Video's numbers (equal or missing scores are undecided), and
    VideoGen-RewardBench shows UnifiedReward-Think's generative convention on the raw text, in displayed terms."""
    import dataclasses

    from eval.score import official_metrics, scalar_official
    from eval.suites import get_suite, load_suite

    suite = get_suite("mj_bench_video")
    records, _ = load_suite(suite, str(BENCH))
    table = {r.id: r for r in records}
    decisive = [r for r in records if r.preferred is not None]
    assert len(decisive) == 118
    pairs = []
    for k, r in enumerate(decisive):
        right = [2.0, 1.0] if r.preferred == 0 else [1.0, 2.0]
        pairs.append({"record_id": r.id, "scores": right if k < 100 else [1.0, 1.0] if k < 110 else [None, 1.0]})
    got = scalar_official(suite, pairs, table)
    assert got["missing_scores"] == 8
    assert got["mjvideo"]["strict"] == pytest.approx(100 / 118)
    assert got["mjvideo"]["tie_aware"] == pytest.approx((100 + 0.5 * 18) / 118)

    vg = get_suite("videogen_rewardbench")
    base, _ = load_suite(vg, str(BENCH))
    recs = [dataclasses.replace(base[0], id="p0", preferred=0), dataclasses.replace(base[1], id="p1", preferred=1),
            dataclasses.replace(base[2], id="t", preferred=None, tie=True)]  # fmt: skip
    rows = [  # shown swapped, "Video 2" is candidate 0: right; shown as is, "Video 1" is candidate 0: wrong
        {"record_id": "p0", "order": [1, 0], "raw": "<answer>Video 2 is better</answer>", "verdict": None},
        {"record_id": "p1", "order": [0, 1], "raw": "Video 1 is better", "verdict": None},
        {"record_id": "t", "order": [0, 1], "raw": "cannot tell", "verdict": None},  # read as a tie: right
    ]
    gen = official_metrics(vg, rows, {r.id: r for r in recs})["unifiedreward_generative"]
    assert gen["w_tie"] == pytest.approx(2 / 3) and gen["wo_tie"] == pytest.approx(1 / 2)
