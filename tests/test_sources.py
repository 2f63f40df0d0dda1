"""Converters on the real benchmark files in ../shared/benchmarks: counts must match the READMEs, labels and
grouping must follow SCORING.md, and bad input must say what is wrong."""

import json
from collections import Counter

import pytest
from conftest import BENCH

from data_pipelines.records import read_records, write_records
from data_pipelines.sources import SourceError, convert
from data_pipelines.sources.multimodal_rewardbench import official_category
from data_pipelines.sources.vl_rewardbench import fine_group
from mmreward.protocol import build_conversation
from mmreward.verdict import AnswerSpec, parse_verdict


def test_vl_rewardbench_groups_and_labels():
    c = convert("vl_rewardbench", BENCH / "vl_rewardbench" / "vl_rewardbench_1250.json")
    s = c.summary()
    assert s["records"] == 1250
    assert s["by_category"] == {"general": 183, "hallucination": 749, "reasoning": 318}
    # human_ranking is [1, 0] for exactly 5 items: there response[1] is the chosen one.
    assert s["by_label"] == {"candidate 0": 1245, "candidate 1": 5}
    assert len({r.id for r in c.records}) == 1250  # 25 repeated ids get key-derived suffixes
    assert s["metadata_only"] == 1250  # images are not shipped
    assert Counter(r.subset for r in c.records)["povid"] == 448
    assert fine_group("hallucination_pair-1003") == "povid" and fine_group("RLAIF-V_123") == "rlaif-v"
    assert fine_group("LRVInstruction_7") == "vlfeedback"
    r = next(r for r in c.records if r.metadata["raw_id"].startswith("mmmu"))
    assert r.modality == "answer" and r.media == [r.media[0]] and r.media[0].startswith("images/")


def test_multimodal_rewardbench_predictions_and_release_format(tmp_path):
    c = convert("multimodal_rewardbench", BENCH / "multimodal_rewardbench" / "example_predictions.jsonl")
    assert len(c.records) == 2 and all(r.metadata_only for r in c.records)
    assert [r.preferred for r in c.records] == [1, 1]  # Label "B"
    assert official_category("safety", "pairs_12") == "safety/bias"
    assert official_category("safety", "hateful_3") == "safety/toxicity"
    assert official_category("reasoning", "math_1") == "reasoning/math"
    assert official_category("reasoning", "code_1") == "reasoning/coding"
    release = tmp_path / "all_data_release.json"
    release.write_text(
        json.dumps(
            [
                {
                    "ID": "nocaps_1",
                    "Text": "Caption this.",
                    "Image": "images/nocaps/1.jpg",
                    "Output1": "a cat",
                    "Output2": "a dog",
                    "Better": "Output2",
                    "Category": "open_generation/correctness_task",
                },
                {
                    "ID": "pairs_3",
                    "Text": "Who is this?",
                    "Image": "images/pairs/3.jpg",
                    "Output1": "x",
                    "Output2": "y",
                    "Better": "Output1",
                    "Category": "safety",
                },
            ]
        )
    )
    c = convert("multimodal_rewardbench", release)
    assert [r.preferred for r in c.records] == [1, 0]
    assert [r.category for r in c.records] == ["open_generation/correctness_task", "safety/bias"]
    assert c.records[0].candidates == ["a cat", "a dog"]


def test_mm_rlhf_categories_and_groups():
    c = convert("mm_rlhf", BENCH / "mm_rlhf_rewardbench" / "mm_reward_bench.jsonl")
    s = c.summary()
    assert s["records"] == 170
    assert s["by_category"] == {"long": 37, "mcq": 42, "safety": 32, "short": 34, "video": 25}
    groups = {}
    for r in c.records:
        groups.setdefault(r.category, set()).add(r.metadata["group"])
    assert {k: len(v) for k, v in groups.items()} == {"mcq": 10, "long": 10, "short": 10, "safety": 6, "video": 10}
    assert all(r.preferred == 0 for r in c.records)  # chosen first: eval must shuffle
    assert {r.media_kind for r in c.records if r.category == "video"} == {"video"}


@pytest.mark.parametrize(
    ("name", "n", "votes"),
    [
        (
            "image_generation_test_v1_random_predictions.jsonl",
            1735,
            {"rightvote": 663, "leftvote": 643, "bothbad_vote": 273, "tievote": 156},
        ),
        (
            "image_edition_test_v1_random_predictions.jsonl",
            919,
            {"bothbad_vote": 392, "rightvote": 263, "leftvote": 240, "tievote": 24},
        ),
        (
            "video_generation_test_v1_random_predictions.jsonl",
            1069,
            {"rightvote": 375, "leftvote": 325, "bothbad_vote": 231, "tievote": 138},
        ),
        (
            "genai_bench_video_1889_unifiedreward_copy.json",
            1889,
            {"rightvote": 651, "leftvote": 619, "bothbad_vote": 404, "tievote": 215},
        ),
    ],
)
def test_genai_bench_four_way_votes(name, n, votes):
    c = convert("genai_bench", BENCH / "genai_bench" / name)
    assert len(c.records) == n
    assert dict(Counter(r.metadata["vote_type"] for r in c.records)) == votes
    for r in c.records:
        assert r.allow_tie
        assert (r.preferred, r.tie) == {"leftvote": (0, False), "rightvote": (1, False)}.get(
            r.metadata["vote_type"], (None, True)
        )
    task = "video_generation" if "video" in name else ("image_edition" if "edition" in name else "image_generation")
    assert {r.category for r in c.records} == {task}


def test_mj_bench_alignment_and_quality():
    c = convert("mj_bench", BENCH / "mj_bench" / "alignment")
    assert c.summary()["by_category"] == {
        "alignment/actions": 117,
        "alignment/attributes": 229,
        "alignment/existence": 251,
        "alignment/other": 243,
        "alignment/spatial": 76,
    }
    q = convert("mj_bench", BENCH / "mj_bench" / "quality_objects_indoor_sample" / "captions_objects_all100.json")
    assert len(q.records) == 100 and q.summary()["with_media"] == 4
    assert all(r.preferred == 0 for r in q.records)  # the original (image_0) is preferred
    judgeable = [r for r in q.records if not r.metadata_only]
    conv = build_conversation(judgeable[0].to_task(q.media_root), [1, 0], tools_on=True)
    assert set(conv.context.images) == {"image_1", "image_2"}


def test_mj_bench_video_preferences():
    c = convert("mj_bench_video", BENCH / "mj_bench_video" / "test.json")
    s = c.summary()
    assert s["records"] == 1085
    # "Video 1 better" (66) and "Video 1 Better" (6) are one label after normalising case.
    assert s["by_category"] == {"hard to judge": 8, "same": 959, "video 1 better": 72, "video 2 better": 46}
    decisive = [r for r in c.records if r.preferred is not None]
    assert len(decisive) == 118
    r = decisive[0]
    assert r.task == "multi" and set(r.dimension_labels) <= {
        "Alignment",
        "Safety",
        "Fineness",
        "Coherence & Consistency",
        "Bias",
    }
    # The multi answer form names the benchmark's aspects, "&" included, and parses.
    spec = AnswerSpec("multi", "video", allow_tie=True, dimensions=tuple(r.dimension_labels))
    body = "\n".join(f"{d}: Video 1 is better" for d in r.dimension_labels) + "\nOverall: Tie"
    v = parse_verdict(f"<think>x</think><answer>{body}</answer>", spec, "strict")
    assert v.winner is None and set(v.dimensions) == set(r.dimension_labels)


def test_videogen_rewardbench_csv_with_real_videos(tmp_path):
    c = convert("videogen_rewardbench", BENCH / "videogen_rewardbench" / "videoalign_train_example.csv")
    assert len(c.records) == 12 and c.summary()["with_media"] == 4
    r = c.records[0]
    assert r.candidates == ["videos/example_1_A.mp4", "videos/example_1_B.mp4"]  # "./" normalised
    assert r.dimension_labels == {"VQ": 1, "MQ": 1, "TA": 0}
    assert r.preferred is None and not r.tie  # the training CSV has no Overall column
    assert c.records[1].dimension_labels["VQ"] is None  # "same" is a tie
    conv = build_conversation(r.to_task(c.media_root), tools_on=True)
    assert set(conv.context.videos) == {"video_1", "video_2"}
    # Round trip through Parquet keeps the labels.
    write_records(c.records, tmp_path / "vg.parquet")
    assert read_records(tmp_path / "vg.parquet")[0].dimension_labels == {"VQ": 1, "MQ": 1, "TA": 0}


def test_generic_mappings(tmp_path, real_image_pair):
    root = real_image_pair[0].parent
    pap = tmp_path / "pap.csv"
    pap.write_text(
        "caption,jpg_0,jpg_1,label_0\n"
        f"a room,{real_image_pair[0].name},{real_image_pair[1].name},1\n"
        f"a room,{real_image_pair[0].name},{real_image_pair[1].name},0\n"
        f"a room,{real_image_pair[0].name},{real_image_pair[1].name},0.5\n"
    )
    c = convert(
        "generic",
        pap,
        media_root=root,
        mapping="prompt=caption,candidate_0=jpg_0,candidate_1=jpg_1,label=label_0",
        label_values={"1": 0, "0": 1, "0.5": "tie"},
        name="pick_a_pic",
    )
    assert [(r.preferred, r.tie) for r in c.records] == [(0, False), (1, False), (None, True)]
    assert all(not r.metadata_only for r in c.records) and c.records[0].source == "pick_a_pic"

    hpd = tmp_path / "hpd.jsonl"
    hpd.write_text(json.dumps({"prompt": "p", "image_path": ["a.png", "b.png"], "human_preference": [0, 1]}) + "\n")
    c = convert("generic", hpd, mapping={"prompt": "prompt", "candidates": "image_path", "label": "human_preference"})
    assert c.records[0].preferred == 1 and c.records[0].metadata_only

    scores = tmp_path / "scores.jsonl"
    scores.write_text(json.dumps({"text": "a cat", "video_path": "v.mp4", "visual_quality": 3}) + "\n")
    c = convert("generic", scores, mapping="prompt=text candidate=video_path score=visual_quality", modality="video")
    assert c.records[0].task == "pointwise" and c.records[0].score == 3.0


@pytest.mark.parametrize(
    ("source", "mapping", "message"),
    [
        ("generic", "prompt=caption", "one label layout"),
        ("generic", "prompt=caption,chosen=a,rejected=missing_col", "not found"),
        ("generic", "prompt=caption,colour=a", "unknown mapping field"),
        ("vl_rewardbench", None, "missing field"),
    ],
)
def test_bad_input_is_explained(tmp_path, source, mapping, message):
    f = tmp_path / "rows.jsonl"
    f.write_text(json.dumps({"caption": "c", "a": "x"}) + "\n")
    kw = {"mapping": mapping} if mapping else {}
    with pytest.raises(SourceError, match=message):
        convert(source, f, **kw)


def test_unknown_source_and_missing_file(tmp_path):
    with pytest.raises(SourceError, match="unknown source"):
        convert("hpsv3", tmp_path / "x.json")
    with pytest.raises(SourceError, match="no such file"):
        convert("vl_rewardbench", tmp_path / "x.json")
