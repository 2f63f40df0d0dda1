"""The verdict parser on literal strings: correct, wrong, malformed, empty, several answers, answer in think."""

import pytest

from mmreward.verdict import AnswerSpec, ParseFailure, Verdict, parse_verdict

IMG = AnswerSpec("pairwise", "image")
IMG_TIE = AnswerSpec("pairwise", "image", allow_tie=True)
VID = AnswerSpec("pairwise", "video")
ANS = AnswerSpec("pairwise", "answer")
POINT = AnswerSpec("pointwise", "image")
POINT_DIMS = AnswerSpec("pointwise", "image", dimensions=("Alignment", "Quality"))
MULTI = AnswerSpec("multi", "video", allow_tie=True, dimensions=("Alignment", "Motion"))


@pytest.mark.parametrize(
    ("text", "spec", "winner"),
    [
        ("<think>the first is sharper</think><answer>Image 1 is better</answer>", IMG, 0),
        ("<think>x</think>\n<answer>Image 2 is better</answer>\n", IMG, 1),
        ("<think>x</think><answer> Video 2 is better. </answer>", VID, 1),
        ("<think>x</think><answer>Answer 1 is better</answer>", ANS, 0),
        ("<think>x</think><answer>Tie</answer>", IMG_TIE, None),
    ],
)
def test_strict_pairwise_correct(text, spec, winner):
    v = parse_verdict(text, spec, "strict")
    assert isinstance(v, Verdict) and v.winner == winner and v.strict


@pytest.mark.parametrize(
    ("text", "spec", "reason"),
    [
        ("", IMG, "empty output"),
        ("   ", IMG, "empty output"),
        ("Image 1 is better", IMG, "no <answer>"),
        ("<answer>Image 1 is better</answer>", IMG, "no <think>"),
        ("<think>x</think><answer>Video 1 is better</answer>", IMG, "not of the form"),
        ("<think>x</think><answer>Image 3 is better</answer>", IMG, "not of the form"),
        ("<think>x</think><answer>Tie</answer>", IMG, "tie not allowed"),
        ("<think>x</think><answer></answer>", IMG, "empty answer"),
        ("<think>x</think><answer>Image 1 is better</answer><answer>Image 2 is better</answer>", IMG, "more than one"),
        ("<think>so <answer>Image 1 is better</answer></think>", IMG, "inside <think>"),
        ("<think>x</think>Hmm <answer>Image 1 is better</answer>", IMG, "outside"),
        ("<think>x</think><answer>Image 1 is better</answer> trailing", IMG, "outside"),
    ],
)
def test_strict_failures_name_the_reason(text, spec, reason):
    r = parse_verdict(text, spec, "strict")
    assert isinstance(r, ParseFailure), r
    assert reason in r.reason


def test_pointwise_and_dimensions():
    v = parse_verdict("<think>ok</think><answer>Score: 7</answer>", POINT)
    assert v.score == 7.0 and v.kind == "pointwise"
    v = parse_verdict("<think>ok</think><answer>Alignment: 8\nQuality: 3\nScore: 6</answer>", POINT_DIMS)
    assert (v.score, v.dimensions) == (6.0, {"Alignment": 8.0, "Quality": 3.0})
    assert "outside 1-10" in parse_verdict("<think>x</think><answer>Score: 11</answer>", POINT).reason
    assert (
        "missing ['Quality']"
        in parse_verdict("<think>x</think><answer>Alignment: 8\nScore: 6</answer>", POINT_DIMS).reason
    )


def test_multi_dimensional():
    text = "<think>x</think><answer>Alignment: Video 1 is better\nMotion: Tie\nOverall: Video 2 is better</answer>"
    v = parse_verdict(text, MULTI)
    assert v.kind == "multi" and v.winner == 1 and v.dimensions == {"Alignment": 0, "Motion": None}
    r = parse_verdict("<think>x</think><answer>Alignment: Video 1 is better\nOverall: Tie</answer>", MULTI)
    assert isinstance(r, ParseFailure) and "Motion" in r.reason


@pytest.mark.parametrize(
    ("text", "spec", "winner", "source"),
    [
        ("Overall Judgment: Answer 2 is better", ANS, 1, "final_judgment"),
        (
            "Answer 1 is good. Overall Judgment: Answer 1 is worse... Answer 2 is slightly better",
            ANS,
            1,
            "final_judgment",
        ),
        ("My verdict: [[A>B]]", IMG, 0, "brackets"),
        ("[[B>>A]]", IMG, 1, "brackets"),
        ("[[A=B]]", IMG_TIE, None, "brackets"),
        ("[[B]]", ANS, 1, "brackets"),
        ("Video 1 is better since it is smooth.", VID, 0, "n_is_better"),
        ("<think>Image 2 is better?</think> Image 1 is better", IMG, 0, "n_is_better"),
        ("<think>x</think><answer>image 1 is better</answer>", IMG, 0, "n_is_better"),
    ],
)
def test_lenient_benchmark_forms(text, spec, winner, source):
    v = parse_verdict(text, spec, "lenient")
    assert isinstance(v, Verdict), v
    assert (v.winner, v.source, v.strict) == (winner, source, False)


@pytest.mark.parametrize(
    ("text", "spec", "reason"),
    [
        ("Image 1 is better. No wait, Image 2 is better.", IMG, "conflicting"),
        ("[[A>B]] and later [[B>A]]", IMG, "conflicting"),
        ("[[A=B]]", IMG, "does not allow ties"),
        ("<think>Image 1 is better</think>", IMG, "nothing outside"),
        ("<think>unclosed Image 1 is better", IMG, "unclosed"),
        ("I cannot decide.", IMG, "no verdict"),
        ("", IMG, "nothing outside"),
    ],
)
def test_lenient_never_guesses(text, spec, reason):
    r = parse_verdict(text, spec, "lenient")
    assert isinstance(r, ParseFailure), r
    assert reason in r.reason


def test_lenient_score():
    assert parse_verdict("Rating: 8/10", POINT, "lenient").score == 8.0
    assert isinstance(parse_verdict("Score: 0", POINT, "lenient"), ParseFailure)


def test_render_roundtrip():
    for spec, verdict in [
        (IMG_TIE, Verdict("pairwise", winner=None)),
        (VID, Verdict("pairwise", winner=1)),
        (POINT_DIMS, Verdict("pointwise", score=6, dimensions={"Alignment": 8, "Quality": 3})),
        (MULTI, Verdict("multi", winner=0, dimensions={"Alignment": None, "Motion": 1})),
    ]:
        text = f"<think>r</think><answer>{spec.render(verdict)}</answer>"
        parsed = parse_verdict(text, spec, "strict")
        assert isinstance(parsed, Verdict), (text, parsed)
        assert (parsed.winner, parsed.score, parsed.dimensions) == (verdict.winner, verdict.score, verdict.dimensions)
