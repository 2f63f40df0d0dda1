"""GRPO rewards on literal completions: right, wrong, malformed, right after a failed tool call, many calls."""

import pytest

from data_pipelines.records import PreferenceRecord
from mmreward.protocol import format_turn
from train.rewards import REWARDS, RewardSettings, Rollout, make_reward_funcs, split_turns

S = RewardSettings(tool_bonus=0.5, invalid_penalty=0.1, length_target=100)
CROP = ("crop", {"image": "image_1", "bbox_2d": [0, 0, 500, 500]})
OK_CALL = {"name": "crop", "ok": True, "error": None}
BAD_CALL = {"name": "crop", "ok": False, "error": "bbox_2d is out of range"}


def pair(preferred=1, **kw) -> PreferenceRecord:
    return PreferenceRecord(
        id="r1", task="pairwise", modality="image", prompt="a red circle", candidates=["a.png", "b.png"],
        preferred=preferred, **kw,
    )  # fmt: skip


def rewards(r: Rollout) -> dict[str, float]:
    return {name: fn(r, S) for name, fn in REWARDS.items()}


def test_right_and_wrong_verdicts_map_through_the_presented_order():
    answer = format_turn("the second is red", answer="Image 2 is better")
    right = Rollout([answer], pair(preferred=1), order=[0, 1])
    assert rewards(right) == {"accuracy": 1.0, "format": 1.0, "tool": 0.0, "length": 0.0}
    swapped = Rollout([answer], pair(preferred=1), order=[1, 0])  # displayed 2 is candidate 0: wrong
    assert rewards(swapped)["accuracy"] == 0.0 and rewards(swapped)["format"] == 1.0


def test_malformed_turns_lose_format_and_lenient_verdicts_still_count():
    loose = Rollout(["I think Image 2 is better."], pair(), order=[0, 1])
    assert rewards(loose)["format"] == 0.0
    assert rewards(loose)["accuracy"] == 1.0  # the engine's lenient reading, as in eval
    garbage = Rollout(["<think>hmm"], pair(), order=[0, 1])
    assert rewards(garbage)["accuracy"] == 0.0 and rewards(garbage)["format"] == 0.0
    truncated = Rollout([format_turn("x", answer="Image 2 is better")], pair(), order=[0, 1], truncated=True)
    assert rewards(truncated)["accuracy"] == 0.0 and rewards(truncated)["format"] == 0.0
    ran_out = Rollout([format_turn("x", tool=CROP)] * 2, pair(), order=[0, 1], tool_trace=[OK_CALL] * 2)
    assert rewards(ran_out)["accuracy"] == 0.0 and rewards(ran_out)["format"] == 0.0


def test_tool_bonus_only_for_a_right_verdict_after_a_successful_call():
    turns = [format_turn("look", tool=CROP), format_turn("red", answer="Image 2 is better")]
    right = Rollout(turns, pair(preferred=1), order=[0, 1], tool_trace=[OK_CALL])
    assert rewards(right)["tool"] == 0.5 and rewards(right)["format"] == 1.0
    wrong = Rollout(turns, pair(preferred=0), order=[0, 1], tool_trace=[OK_CALL])
    assert rewards(wrong)["tool"] == 0.0  # nothing for tool calls on a wrong verdict
    after_failed = Rollout(
        [
            format_turn("look", tool=CROP),
            format_turn("again", tool=CROP),
            format_turn("red", answer="Image 2 is better"),
        ],
        pair(preferred=1),
        order=[0, 1],
        tool_trace=[BAD_CALL, OK_CALL],
    )
    assert rewards(after_failed)["tool"] == pytest.approx(0.4)  # bonus minus one invalid call
    only_failed = Rollout(
        [format_turn("look", tool=CROP), format_turn("red", answer="Image 2 is better")],
        pair(preferred=1),
        order=[0, 1],
        tool_trace=[BAD_CALL],
    )
    assert rewards(only_failed)["tool"] == pytest.approx(-0.1) and rewards(only_failed)["accuracy"] == 1.0


def test_many_and_malformed_tool_calls_are_penalised():
    malformed = '<think>x</think>\n<tool_call>{"name": "crop", "arguments": {</tool_call>'
    turns = [malformed] + [format_turn("look", tool=CROP)] * 4 + [format_turn("red", answer="Image 1 is better")]
    trace = [BAD_CALL] * 3 + [OK_CALL]
    r = Rollout(turns, pair(preferred=0), order=[0, 1], tool_trace=trace, completion_tokens=150)
    out = rewards(r)
    assert out["format"] == 0.0  # the malformed call breaks the strict grammar
    assert out["tool"] == pytest.approx(0.5 - 0.1 * 4)  # right after a successful call, 3 refused + 1 malformed
    assert out["length"] == pytest.approx(-0.5)


def test_multi_dimensional_partial_credit_ties_and_pointwise_tolerance():
    multi = PreferenceRecord(
        id="m", task="multi", modality="image", prompt="p", candidates=["a", "b"], preferred=0,
        dimension_labels={"quality": 0, "alignment": 1},
    )  # fmt: skip
    text = format_turn(
        "x", answer="quality: Image 1 is better\nalignment: Image 1 is better\nOverall: Image 1 is better"
    )
    assert REWARDS["accuracy"](Rollout([text], multi, [0, 1]), S) == pytest.approx(2 / 3)
    tie = PreferenceRecord(
        id="t", task="pairwise", modality="image", prompt="p", candidates=["a", "b"], tie=True, allow_tie=True
    )
    assert REWARDS["accuracy"](Rollout([format_turn("same", answer="Tie")], tie, [0, 1]), S) == 1.0
    assert REWARDS["accuracy"](Rollout([format_turn("x", answer="Image 1 is better")], tie, [0, 1]), S) == 0.0
    point = PreferenceRecord(id="s", task="pointwise", modality="image", prompt="p", candidates=["a"], score=7)
    assert REWARDS["accuracy"](Rollout([format_turn("x", answer="Score: 8")], point, [0]), S) == 1.0
    assert REWARDS["accuracy"](Rollout([format_turn("x", answer="Score: 3")], point, [0]), S) == 0.0


def test_trl_signature_decodes_multi_turn_completions(tiny_model):
    _, processor = tiny_model
    tok = processor.tokenizer
    text = (
        format_turn("look", tool=CROP)
        + "<|im_end|>\n<|im_start|>user\n<tool_response>\nobs_1: crop of image_1\n</tool_response><|im_end|>\n"
        + "<|im_start|>assistant\n"
        + format_turn("red", answer="Image 2 is better")
        + "<|im_end|>"
    )
    assert split_turns(text) == [format_turn("look", tool=CROP), format_turn("red", answer="Image 2 is better")]
    ids = tok(text, add_special_tokens=False)["input_ids"]

    class Env:
        trace = [OK_CALL]

    funcs = make_reward_funcs(["accuracy", "format", "tool"], tok, S)
    assert [f.__name__ for f in funcs] == ["accuracy", "format", "tool"]
    record = pair(preferred=1).to_dict()
    out = [
        f(
            prompts=[None],
            completions=[None],
            completion_ids=[ids],
            record=[record],
            order=[[0, 1]],
            environments=[Env()],
        )
        for f in funcs
    ]
    assert out == [[1.0], [1.0], [0.5]]
    with pytest.raises(ValueError, match="unknown reward"):
        make_reward_funcs(["accuracy", "vibes"], tok)
