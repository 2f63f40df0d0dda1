"""Preference records: validation names the record and field; JSONL and Parquet round-trips; media checks."""

import json

import pytest

from data_pipelines.records import PreferenceRecord, RecordError, media_report, read_records, write_records


def pair_record(real_image_pair, **kw):
    base = dict(
        id="mj-0",
        task="pairwise",
        modality="image",
        prompt="A large room with a long wooden table and many chairs.",
        candidates=[real_image_pair[0].name, real_image_pair[1].name],
        preferred=0,
        category="quality/objects",
        source="mj_bench",
        metadata={"caption_id": 0},
    )
    base.update(kw)
    return PreferenceRecord(**base)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"task": "ranking"}, "field 'task'"),
        ({"modality": "audio"}, "field 'modality'"),
        ({"prompt": ""}, "field 'prompt'"),
        ({"candidates": ["a.png"]}, "needs 2 candidate"),
        ({"preferred": 2}, "field 'preferred'"),
        ({"preferred": 0, "tie": True}, "must be null when tie"),
        ({"task": "multi"}, "field 'dimension_labels'"),
        ({"task": "pointwise", "candidates": ["a.png"]}, "numeric score"),
    ],
)
def test_validation_names_record_and_field(real_image_pair, kw, message):
    with pytest.raises(RecordError, match=message) as info:
        pair_record(real_image_pair, **kw)
    assert "'mj-0'" in str(info.value)


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_roundtrip(real_image_pair, tmp_path, suffix):
    records = [
        pair_record(real_image_pair),
        pair_record(real_image_pair, id="tie", preferred=None, tie=True, allow_tie=True),
        pair_record(
            real_image_pair,
            id="multi",
            task="multi",
            dimension_labels={"Alignment": 1, "Quality": None},
            preferred=1,
        ),
        PreferenceRecord(
            id="q",
            task="pointwise",
            modality="answer",
            prompt="What is it?",
            candidates=["a table"],
            media=["x.png"],
            score=7.5,
            metadata_only=True,
        ),  # fmt: skip
    ]
    path = write_records(records, tmp_path / f"r{suffix}")
    assert [r.to_dict() for r in read_records(path)] == [r.to_dict() for r in records]
    assert not list(tmp_path.glob(".*tmp"))


def test_read_errors_name_file_and_line(tmp_path, real_image_pair):
    path = tmp_path / "bad.jsonl"
    good = json.dumps(pair_record(real_image_pair).to_dict())
    path.write_text(good + "\n{broken\n")
    with pytest.raises(RecordError, match="bad.jsonl:2: invalid JSON"):
        read_records(path)
    bad = dict(pair_record(real_image_pair).to_dict(), preferred=5)
    path.write_text(good + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(RecordError, match="bad.jsonl:2: record 'mj-0': field 'preferred'"):
        read_records(path)
    path.write_text(json.dumps(dict(bad, preferred=0, colour="red")) + "\n")
    with pytest.raises(RecordError, match=r"unknown field\(s\) \['colour'\]"):
        read_records(path)


def test_media_resolution_and_report(real_image_pair, tmp_path):
    root = real_image_pair[0].parent
    ok = pair_record(real_image_pair)
    gone = pair_record(real_image_pair, id="gone", candidates=["nope_0.jpg", "nope_1.jpg"], category="other")
    meta = pair_record(real_image_pair, id="meta", metadata_only=True)
    assert ok.has_media(root) and not gone.has_media(root) and not meta.has_media(root)
    report = media_report([ok, gone, meta], root)
    assert report == {
        "total": 3,
        "with_media": 1,
        "without_media": 2,
        "without_media_by_category": {"other": 1, "quality/objects": 1},
    }
    task = ok.to_task(root)
    assert task.candidates == [str(p) for p in real_image_pair] and task.id == "mj-0"
    with pytest.raises(RecordError, match="metadata-only"):
        meta.to_task(root)
