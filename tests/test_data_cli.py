"""`mmreward data ...` end to end: convert a real benchmark file, synthesize a small world, count it, distill it."""

import json

from conftest import BENCH

from mmreward.cli import main


def test_convert_prints_counts(tmp_path, capsys):
    out = tmp_path / "mjv.jsonl"
    assert (
        main(
            [
                "data",
                "convert",
                "--source",
                "mj_bench_video",
                "--input",
                str(BENCH / "mj_bench_video" / "test.json"),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "1085 records" in text and "video 1 better" in text and "metadata only: 1085" in text
    assert len(out.read_text().splitlines()) == 1085


def test_convert_json_summary_and_parquet(tmp_path, capsys):
    out = tmp_path / "vg.parquet"
    assert (
        main(
            [
                "data",
                "convert",
                "--source",
                "genai_bench",
                "--input",
                str(BENCH / "genai_bench" / "video_generation_test_v1_gpt4o_predictions.jsonl"),
                "--output",
                str(out),
                "--json",
            ]
        )
        == 0
    )
    s = json.loads(capsys.readouterr().out)
    assert s["records"] == 1069 and s["by_subset"]["tievote"] == 138 and out.is_file()


def test_convert_bad_input_is_an_error_not_a_crash(tmp_path, capsys):
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"id": 1}\n{oops\n')
    assert (
        main(["data", "convert", "--source", "mm_rlhf", "--input", str(bad), "--output", str(tmp_path / "o.jsonl")])
        == 2
    )
    assert "invalid JSON" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


def test_synth_stats_and_oracle_distill(tmp_path, capsys):
    world = tmp_path / "world"
    assert (
        main(
            [
                "data",
                "synth",
                "--out",
                str(world),
                "--n",
                "16",
                "--seed",
                "2",
            ]
        )
        == 0
    )
    assert "items/min" in capsys.readouterr().out and not (world / "see").exists()  # judging items only
    curriculum = ["tiny", "curriculum", "--out", str(world), "--seed", "2", "--see", "10", "--lookup", "12",
                  "--compare", "14", "--crops", "6"]  # fmt: skip
    assert main(curriculum) == 0
    out = capsys.readouterr().out
    assert "learning-to-see examples" in out and "lookup warm-up rows" in out
    assert len((world / "see" / "lookup" / "train.jsonl").read_text().splitlines()) == 12
    assert "comparison rows" in out
    assert len((world / "see" / "compare" / "train.jsonl").read_text().splitlines()) == 14
    assert "one-crop rows" in out
    crops = [json.loads(x) for x in (world / "see" / "crops" / "train.jsonl").read_text().splitlines()]
    assert 6 <= len(crops) <= 12 and all((world / "see" / "crops" / r["images"][0]).is_file() for r in crops)
    assert (world / "see" / "crops" / "val.jsonl").read_text().strip()  # from the world's val items
    assert main(["data", "stats", str(world / "test.jsonl"), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["records"] == 8 and stats["media"]["with_media"] == 8 and stats["needs_tool"]
    assert (
        main(
            [
                "data",
                "distill",
                "--records",
                str(world / "test.jsonl"),
                "--teacher",
                "oracle",
                "--out",
                str(tmp_path / "d"),
            ]
        )
        == 0
    )
    capsys.readouterr()
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert summary["kept"] >= 0.9 * summary["trajectories"]
