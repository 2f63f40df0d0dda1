"""Judge aggregation: presented orders map back to candidates, swap agreement, majority votes, scores, and
the continuous reward from verdict-token probabilities on the real tiny model."""

import pytest
from scripted_generator import ScriptedGenerator

from mmreward.generators import SamplingSettings, TransformersGenerator
from mmreward.judge import Judge, JudgeSettings, candidate_verdict
from mmreward.protocol import JudgeTask, format_turn
from mmreward.rollout import RolloutEngine


def say(phrase):
    return format_turn("because", answer=phrase)


def judge_with(fn, **settings):
    """A judge whose scripted model answers ``fn(request)``."""
    return Judge(RolloutEngine(ScriptedGenerator(fn)), JudgeSettings(**settings))


def favours(displayed_text_of):
    """A model that prefers whichever displayed image is candidate ``x`` (position-consistent)."""

    def fn(request):
        first_shown = request.key.split("#")[1][0]  # the key carries the presented order
        return say(f"Image {1 if first_shown == displayed_text_of else 2} is better")

    return fn


@pytest.fixture
def pair(real_image_pair):
    return [str(p) for p in real_image_pair]


def test_swap_both_consistent_model_maps_back_to_the_candidate(pair):
    j = judge_with(favours("1"), swap="both").compare("p", pair)
    assert j.outcome == "prefer" and j.preferred == 1 and j.agreement is True
    assert [t.order for t in j.trajectories] == [[0, 1], [1, 0]]
    assert [candidate_verdict(t).winner for t in j.trajectories] == [1, 1]


def test_swap_both_position_biased_model_is_a_tie_or_abstain(pair):
    always_first = lambda r: say("Image 1 is better")  # noqa: E731
    j = judge_with(always_first, swap="both").compare("p", pair)
    assert j.outcome == "tie" and j.preferred is None and j.agreement is False
    j = judge_with(always_first, swap="both", disagreement="abstain").compare("p", pair)
    assert j.outcome == "abstain"


def test_majority_votes(pair):
    answers = iter(["Image 1 is better", "Image 2 is better", "Image 2 is better"])
    j = judge_with(lambda r: say(next(answers)), votes=3).compare("p", pair)
    assert j.outcome == "prefer" and j.preferred == 1 and j.vote_counts == {"0": 1, "1": 2}
    answers = iter(["Image 1 is better", "Image 2 is better"])
    j = judge_with(lambda r: say(next(answers)), votes=2).compare("p", pair)
    assert j.outcome == "tie"  # no majority


def test_failures_are_reported_not_scored(pair):
    answers = iter(["???", say("Image 2 is better"), "???"])
    j = judge_with(lambda r: next(answers), votes=3).compare("p", pair)
    assert j.outcome == "prefer" and j.preferred == 1 and len(j.failures) == 2
    j = judge_with(lambda r: "nonsense").compare("p", pair)
    assert j.outcome == "failed" and j.preferred is None and j.failures == ["no verdict found"]


def test_pointwise_and_multi(pair, real_video_pair):
    scores = iter([6, 8])
    j = judge_with(lambda r: say(f"Score: {next(scores)}"), votes=2, swap="both").score("p", pair[0])
    assert j.outcome == "score" and j.score == 7.0 and len(j.trajectories) == 2  # no swap for one candidate
    multi = lambda r: say("Motion: Video 1 is better\nOverall: Video 2 is better")  # noqa: E731
    j = judge_with(multi, swap="both").compare("p", [str(p) for p in real_video_pair], "video", dimensions=["Motion"])
    # both orders say displayed-1 for motion and displayed-2 overall: inconsistent, so ties
    assert j.outcome == "tie" and j.dimensions == {"Motion": None}
    j = judge_with(multi, swap="none").compare("p", [str(p) for p in real_video_pair], "video", dimensions=["Motion"])
    assert j.preferred == 1 and j.dimensions == {"Motion": 0}


def test_batch_versions_check_kinds(pair):
    judge = judge_with(lambda r: say("Image 1 is better"))
    tasks = [JudgeTask("p", pair, id=f"t{i}") for i in range(3)]
    assert [j.preferred for j in judge.compare_batch(tasks)] == [0, 0, 0]
    with pytest.raises(ValueError, match="pointwise"):
        judge.score_batch(tasks)


def test_continuous_reward_on_the_tiny_model(tiny_model, pair):
    """The reward is P(candidate 0 better) read at the verdict position after the model's own reasoning; with
    both orders it averages P(first shown) and 1 - P(first shown) of the swapped presentation."""
    import math

    from mmreward.protocol import build_conversation, resolve_images

    model, processor = tiny_model
    gen = TransformersGenerator(model, processor, SamplingSettings(max_new_tokens=8))

    class ScriptedWithLogits(ScriptedGenerator):
        option_logprobs = staticmethod(gen.option_logprobs)

    engine = RolloutEngine(ScriptedWithLogits(lambda r: say("Image 1 is better")))

    def p_first(order):
        conv = build_conversation(JudgeTask("a room", pair), order)
        msgs, images = resolve_images(conv.messages, conv.context.images, engine.settings.visual)
        tools = engine.tool_schemas(JudgeTask("a room", pair), True)
        lp = gen.option_logprobs(msgs, images, tools, "<think>because</think>\n<answer>Image", [" 1", " 2"])
        return math.exp(lp[0]) / (math.exp(lp[0]) + math.exp(lp[1]))

    one = Judge(engine, JudgeSettings(swap="none", reward=True)).compare("a room", pair)
    assert one.reward == pytest.approx(p_first([0, 1]), abs=1e-6) and 0.0 < one.reward < 1.0
    both = Judge(engine, JudgeSettings(swap="both", reward=True)).compare("a room", pair)
    assert both.reward == pytest.approx((p_first([0, 1]) + 1 - p_first([1, 0])) / 2, abs=1e-6)
