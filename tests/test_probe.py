"""The teacher-forced match-call probe (mmreward_tiny/probe.py) finds every call in the rendered oracle trajectories and
scores a judge's choice there: a judge that always predicts the true next token scores 1.0, one that always says
"But" scores the share of no-match calls."""

import random
from types import SimpleNamespace

import pytest
import torch

from data_pipelines.records import read_records
from data_pipelines.synthetic.generate import WORLD_TOOLS, WORLD_VISUAL, generate_world
from data_pipelines.synthetic.oracle import OracleTeacher
from mmreward.rollout import RolloutEngine
from mmreward.settings import EngineSettings
from mmreward_tiny.probe import call_positions, call_tokens, oracle_calls, probe_calls
from train.render import Renderer


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    generate_world(out, seed=5, splits={"val": 60}, kinds=["image"])
    records = [r for r in read_records(out / "val.jsonl") if r.task == "pairwise"][:12]
    engine = RolloutEngine(
        OracleTeacher({r.id: r for r in records}, crop_policy="each"),
        settings=EngineSettings(visual=WORLD_VISUAL, tools=WORLD_TOOLS, verdict_mode="strict"),
    )
    rng = random.Random(0)
    trajs = engine.run(
        [r.to_task(out) for r in records],
        orders=[rng.sample([0, 1], 2) for _ in records],
        tools_on=True,
        keys=[f"{r.id}|p" for r in records],
    )
    return records, trajs


class Fake(torch.nn.Module):
    """Logits from a rule: ``rule(input_ids) -> (L,) next-token ids`` as one-hot rows."""

    def __init__(self, vocab: int, rule) -> None:
        super().__init__()
        self.vocab, self.rule = vocab, rule

    def forward(self, input_ids, **_):
        nxt = self.rule(input_ids[0])
        return SimpleNamespace(logits=torch.nn.functional.one_hot(nxt, self.vocab).float()[None])


def test_probe_finds_every_call_and_scores_it(pairs, tiny_model):
    model, processor = tiny_model
    records, trajs = pairs
    renderer = Renderer(processor)
    tok = processor.tokenizer
    but, match = call_tokens(tok)
    truth = [oracle_calls(t) for t in trajs]
    assert all(len(c) == 2 for c in truth), truth  # crop_policy="each" describes both images
    n_but = sum(not v for c in truth for v in c.values())
    assert 0 < n_but < 2 * len(trajs)

    # Each found position holds the call's first token, and they come in the order the views were described.
    for t, calls in zip(trajs, truth):
        found = [f for ex in renderer.segments(t) for f in call_positions(ex, tok)]
        assert [image for image, _ in found] == list(calls), (found, calls)
        for ex in renderer.segments(t):
            for image, k in call_positions(ex, tok):
                assert (int(ex.input_ids[k]) == but) == (not calls[image])
                assert int(ex.input_ids[k]) in match | {but}

    vocab = model.config.get_text_config().vocab_size
    teacher = Fake(vocab, lambda ids: torch.cat([ids[1:], ids[-1:]]))  # always the true next token
    r = probe_calls(teacher, renderer, trajs, truth)
    assert r["calls"] == 2 * len(trajs) and r["call_right"] == 1.0 and r["first_view"] == 1.0, r
    assert r["says_but"] == r["but_share"] == round(n_but / (2 * len(trajs)), 4), r

    always_but = Fake(vocab, lambda ids: torch.full_like(ids, but))
    r = probe_calls(always_but, renderer, trajs, truth)
    assert r["says_but"] == 1.0 and r["call_right"] == r["but_share"], r

    # The real (untrained) tiny model runs through the same path, images and all.
    r = probe_calls(model, renderer, trajs[:2], truth[:2])
    assert r["calls"] == 4 and 0.0 <= r["call_right"] <= 1.0, r
