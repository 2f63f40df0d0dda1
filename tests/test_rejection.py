"""Rejection sampling: acceptance (correct + strict + distinct, capped), the GRPO pool, the report, resuming, and a
real run with the tiny model."""

import json

from PIL import Image
from scripted_generator import ScriptedGenerator

from data_pipelines.records import PreferenceRecord, read_records
from data_pipelines.rejection import RejectionSettings, judge_records, rejection_sample
from mmreward.protocol import format_turn


def records(tmp_path):
    Image.new("RGB", (64, 64), (200, 30, 30)).save(tmp_path / "x.png")
    return [
        PreferenceRecord(
            id=f"r{i}",
            task="pairwise",
            modality="answer",
            prompt=f"Q{i}: what colour?",
            candidates=[f"good {i}", f"bad {i}"],
            media=["x.png"],
            preferred=0,
            category=cat,
        )
        for i, cat in enumerate(["easy", "hard", "mixed", "broken"])
    ]


def behaviour(request):
    """r0 always right (same words), r1 always wrong, r2 right on even samples (different words), r3 malformed."""
    rid, sample = request.key.split("|")
    j = int(sample[1:]) if sample[1:].isdigit() else 0
    text = " ".join(
        p["text"] for m in request.messages if m["role"] == "user" for p in m["content"] if p["type"] == "text"
    )
    good_first = text.index("good") < text.index("bad")
    good, bad = ("Answer 1", "Answer 2") if good_first else ("Answer 2", "Answer 1")
    if rid == "r0":
        return format_turn("it is red", answer=f"{good} is better")
    if rid == "r1":
        return format_turn("it is blue", answer=f"{bad} is better")
    if rid == "r2":
        return format_turn(f"look number {j}", answer=f"{good if j % 2 == 0 else bad} is better")
    return "I am not sure."


def test_acceptance_pool_report_and_resume(tmp_path):
    recs = records(tmp_path)
    gen = ScriptedGenerator(behaviour)
    out = tmp_path / "rej"
    report = rejection_sample(recs, gen, out, RejectionSettings(k=4, max_accept_per_item=2), media_root=tmp_path)
    accepted = [json.loads(x) for x in (out / "accepted.jsonl").read_text().splitlines()]
    by_item = {}
    for t in accepted:
        by_item.setdefault(t["id"].split("|")[0], []).append(t)
    assert {k: len(v) for k, v in by_item.items()} == {"r0": 2, "r2": 2}  # capped at 2 per item
    assert [r.id for r in read_records(out / "grpo_pool.jsonl")] == ["r1", "r2", "r3"]  # r0 is always right
    g = report["groups"]
    assert g["all"]["samples"] == 16 and g["all"]["pass@1"] == round((4 + 0 + 2 + 0) / 16, 4)
    assert g["all"]["pass@k"] == 0.5 and g["category=broken"]["parse_failure_rate"] == 1.0
    assert report["accept_rate"]["category=easy"] == 1.0 and report["always_right"] == 1
    calls = len(gen.requests)
    again = rejection_sample(recs, gen, out, RejectionSettings(k=4, max_accept_per_item=2), media_root=tmp_path)
    assert again["reused_from_cache"] == 16 and len(gen.requests) == calls
    keep = rejection_sample(
        recs,
        gen,
        tmp_path / "keep",
        RejectionSettings(k=4, drop_always_right=False, max_accept_per_item=4),
        media_root=tmp_path,
    )
    assert keep["grpo_pool"] == 4
    kept = [json.loads(x)["id"] for x in (tmp_path / "keep" / "accepted.jsonl").read_text().splitlines()]
    assert sum(k.startswith("r0|") for k in kept) == 2  # r0's 4 samples are 2 distinct texts (one per order)


def test_judge_records_and_the_tiny_model(tmp_path, tiny_model):
    from mmreward.generators import SamplingSettings, TransformersGenerator

    recs = records(tmp_path)
    report = judge_records(recs, ScriptedGenerator(behaviour), media_root=tmp_path)
    assert report["accuracy"] == 0.5 and report["items"] == 4  # r0 and r2 (sample 0) are right
    assert report["chance"] == 0.5  # four two-answer pairs
    model, processor = tiny_model
    gen = TransformersGenerator(model, processor, SamplingSettings(max_new_tokens=24, temperature=1.0, seed=1))
    rep = rejection_sample(recs[:2], gen, tmp_path / "tiny", RejectionSettings(k=2), media_root=tmp_path)
    assert rep["groups"]["all"]["samples"] == 4  # random weights: parse failures, but the loop runs for real


def test_position_bias_shows_in_the_report(tmp_path):
    """A judge that always names the first answer scores about chance; ``first_is_better`` gives it away (1.0),
    while a judge that reads the content names the first answer exactly where the right one was shown first."""
    from data_pipelines.rejection import sample_order

    recs = [
        PreferenceRecord(**{**r.to_dict(), "id": f"p{i}", "preferred": i % 2})
        for i, r in enumerate(records(tmp_path)[:1] * 40)
    ]
    positional = judge_records(
        recs, ScriptedGenerator(lambda _: format_turn("", answer="Answer 1 is better")), media_root=tmp_path
    )
    shown_first = [sample_order(r, 0, 0)[0] == r.preferred for r in recs]
    assert positional["groups"]["all"]["first_is_better"] == 1.0
    assert positional["accuracy"] == round(sum(shown_first) / len(recs), 4)

    def reader(request):
        text = " ".join(
            p["text"] for m in request.messages if m["role"] == "user" for p in m["content"] if p["type"] == "text"
        )
        good = "good" if int(request.key.split("|")[0][1:]) % 2 == 0 else "bad"  # the preferred candidate's words
        first = text.index("good") < text.index("bad")
        return format_turn("", answer=f"Answer {1 if first == (good == 'good') else 2} is better")

    reading = judge_records(recs, ScriptedGenerator(reader), media_root=tmp_path)
    assert reading["accuracy"] == 1.0
    assert reading["groups"]["all"]["first_is_better"] == round(sum(shown_first) / len(recs), 4)
    assert 0.25 < reading["groups"]["all"]["first_is_better"] < 0.75


def test_chance_level_of_a_random_valid_verdict():
    from data_pipelines.labels import chance_accuracy

    def rec(**kw):
        base = dict(id="c", task="pairwise", modality="image", prompt="p", candidates=["a", "b"], media=[])
        return PreferenceRecord(**{**base, **kw})

    assert chance_accuracy(rec(preferred=0)) == 0.5
    assert abs(chance_accuracy(rec(tie=True, allow_tie=True)) - 1 / 3) < 1e-9
    # pointwise: integer scores 1-10 within 1 of the label
    assert chance_accuracy(rec(task="pointwise", candidates=["a"], score=5.0)) == 0.3
    assert chance_accuracy(rec(task="pointwise", candidates=["a"], score=10.0)) == 0.2
    multi = rec(task="multi", preferred=1, allow_tie=True, dimension_labels={"alignment": 1, "quality": None})
    assert abs(chance_accuracy(multi) - 1 / 27) < 1e-9  # overall and both dimensions, three options each
