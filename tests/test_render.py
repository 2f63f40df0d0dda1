"""Rendering trajectories for training: the exact loss mask, the same tokens the engine sees at inference, and
padding-free packing that gives the same logits and loss as padded batches."""

import pytest
import torch
from scripted_generator import ScriptedGenerator

from mmreward.generators import TransformersGenerator
from mmreward.protocol import JudgeTask, format_turn
from mmreward.rollout import RolloutEngine
from mmreward.settings import EngineSettings
from mmreward.tools import Budget
from train.collate import PackedCollator, PaddedCollator, rope_function
from train.render import ANSWER, END, IGNORE, THINK, TOOL_CALL, Renderer

TURN_1 = format_turn("the corner is small; zoom in", tool=("crop", {"image": "image_1", "bbox_2d": [0, 0, 500, 500]}))
TURN_2 = format_turn("the top-left is red, as answer 1 says", answer="Answer 1 is better")


@pytest.fixture
def trajectories(quadrant_png, real_image_pair):
    tasks = [
        JudgeTask(
            "What colour is the top-left?",
            ["It is red.", "It is blue."],
            modality="answer",
            media=[str(quadrant_png)],
            id="q",
        ),
        JudgeTask("a room", [str(p) for p in real_image_pair], id="img"),
        JudgeTask("a room, scored", [str(real_image_pair[0])], kind="pointwise", id="pt"),
    ]
    script = {
        "q": [TURN_1, TURN_2],
        "img": [format_turn("image 1 fits the prompt", answer="Image 1 is better")],
        "pt": [format_turn("fine", answer="Score: 7")],
    }
    trajs = RolloutEngine(ScriptedGenerator(script)).run(tasks, orders=[[0, 1], [1, 0], [0]])
    assert all(t.stop_reason == "answer" for t in trajs)
    return trajs


def test_exact_loss_mask(tiny_model, trajectories):
    _, processor = tiny_model
    tok = processor.tokenizer
    ex = Renderer(processor).render(trajectories[0])
    ids, labels, kinds = ex.input_ids.tolist(), ex.labels.tolist(), ex.kinds.tolist()
    trained = [i for i, lab in enumerate(labels) if lab != IGNORE]
    # The trained positions are exactly two contiguous spans: each assistant turn and its <|im_end|>.
    spans, start = [], trained[0]
    for a, b in zip(trained, trained[1:] + [None]):
        if b != a + 1:
            spans.append((start, a + 1))
            start = b
    assert [tok.decode(ids[s:e]) for s, e in spans] == [TURN_1 + "<|im_end|>", TURN_2 + "<|im_end|>"]
    # Everything else is masked: the system prompt, the user prompt, the images and the tool observation.
    masked_text = tok.decode([t for t, lab in zip(ids, labels) if lab == IGNORE])
    assert "obs_1: crop of image_1" in masked_text and "What colour is the top-left?" in masked_text
    image_pad = tok.convert_tokens_to_ids("<|image_pad|>")
    assert all(lab == IGNORE for t, lab in zip(ids, labels) if t == image_pad)
    assert ids.count(image_pad) > 0 and ex.image_grid_thw.shape[0] == 2  # the input image and the crop
    # Kinds: the reasoning, the tool call, the verdict and the end-of-turn tokens are told apart.
    by_kind = {k: tok.decode([t for t, kk in zip(ids, kinds) if kk == k]) for k in (THINK, TOOL_CALL, ANSWER, END)}
    assert by_kind[TOOL_CALL].startswith("<tool_call>") and '"bbox_2d": [0, 0, 500, 500]' in by_kind[TOOL_CALL]
    assert by_kind[ANSWER] == "<answer>Answer 1 is better</answer>"
    assert by_kind[END] == "<|im_end|><|im_end|>"
    assert "zoom in" in by_kind[THINK] and "answer 1 says" in by_kind[THINK]
    assert all(k == 0 for k, lab in zip(kinds, labels) if lab == IGNORE)


def test_training_text_is_what_the_engine_renders(tiny_model, trajectories):
    """Every assistant turn is trained in exactly the context the engine gave the model when it generated it."""
    model, processor = tiny_model
    renderer = Renderer(processor)
    t = trajectories[0]
    full = renderer.text(t)
    messages, images, tools = renderer.conversation(t)
    gen = TransformersGenerator(model, processor)
    for k, m in enumerate(messages):
        if m["role"] == "assistant":
            prompt = gen.render(messages[:k], tools)  # what the engine sent for this turn
            assert full.startswith(prompt + m["content"][0]["text"])


@pytest.mark.parametrize("one_row", [True, False], ids=["one-row", "bounded-rows"])
def test_packing_matches_padding(tiny_model, trajectories, one_row):
    model, processor = tiny_model
    examples = [Renderer(processor).render(t) for t in trajectories]
    padded = PaddedCollator(processor.tokenizer.pad_token_id)(examples)
    longest = max(len(e) for e in examples)
    collator = PackedCollator(rope_function(model), row_tokens=None if one_row else longest)
    packed = collator(examples)
    rows = collator.bins(examples)
    assert "attention_mask" not in packed and packed["position_ids"].shape[:2] == (4, len(rows))
    if one_row:  # a varlen kernel's plan: everything in one row, no filler
        assert len(rows) == 1 and packed["input_ids"].shape[1] == sum(len(e) for e in examples)
    else:
        assert len(rows) > 1 and packed["input_ids"].shape[1] <= longest

    def forward(batch):
        inputs = {k: v for k, v in batch.items() if k not in ("labels", "loss_kinds")}
        with torch.no_grad():
            return model(**inputs, use_cache=False).logits.float()

    a, b = forward(padded), forward(packed)
    nll_a, nll_b, n = 0.0, 0.0, 0
    for r, row in enumerate(rows):
        off = 0
        for i in row:
            L = len(examples[i])
            torch.testing.assert_close(a[i, :L], b[r, off : off + L], atol=1e-4, rtol=1e-4)
            lab = examples[i].labels[1:]
            keep = lab != IGNORE
            nll_a += torch.nn.functional.cross_entropy(a[i, : L - 1][keep], lab[keep], reduction="sum").item()
            nll_b += torch.nn.functional.cross_entropy(
                b[r, off : off + L - 1][keep], lab[keep], reduction="sum"
            ).item()
            n += int(keep.sum())
            off += L
    assert abs(nll_a / n - nll_b / n) < 1e-4
    if one_row:
        # 1-D positions (what TRL's flattening collator would give) are *not* equivalent: mRoPE matters.
        flat = dict(packed)
        flat["position_ids"] = torch.cat([torch.arange(len(e)) for e in examples])[None]
        c = forward(flat)[0]
        assert (c[: len(examples[0])] - a[0, : len(examples[0])]).abs().max() > 1e-3


def test_packing_plan_follows_the_cost_model():
    """Rows are planned per batch: with a varlen kernel one row (no filler); with masked attention the split whose
    modelled cost (filler and row-length-squared attention) is lowest, never more than the padded batch's."""

    class Seq:
        def __init__(self, n: int) -> None:
            self.n = n

        def __len__(self) -> int:
            return self.n

    batch = [Seq(n) for n in (1800, 1000, 950, 900, 850, 800, 780, 400)]
    total, longest = sum(map(len, batch)), 1800
    varlen = PackedCollator(None)
    assert varlen.bins(batch) == [list(range(8))]
    masked = PackedCollator(None, attention_width=6 * 256)
    rows = masked.bins(batch)
    width = max(sum(len(batch[i]) for i in r) for r in rows)
    assert sorted(i for r in rows for i in r) == list(range(8))
    # cheaper than the padded batch's shape and than one long row; here 5 rows of at most the longest example
    assert masked.cost(len(rows), width) < min(masked.cost(8, longest), masked.cost(1, total))
    assert len(rows) == 5 and width == longest
    capped = PackedCollator(None, row_tokens=longest)
    assert max(sum(len(batch[i]) for i in r) for r in capped.bins(batch)) <= longest


def test_engine_settings_travel_with_the_trajectory(trajectories, tiny_model):
    """The pixel budgets a trajectory was judged under are recorded, so rendering it later uses the same ones."""
    from mmreward.media import PixelBudget
    from mmreward.protocol import VisualSettings
    from mmreward.trajectory import settings_of

    visual = VisualSettings(image_budget=PixelBudget(56 * 56, 112 * 112))
    task = JudgeTask("a room", [trajectories[1].task["candidates"][0]] * 2, id="img2")
    (t,) = RolloutEngine(
        ScriptedGenerator({"img2": [format_turn("ok", answer="Image 1 is better")]}),
        settings=EngineSettings(visual=visual),
    ).run([task])
    assert settings_of(t).visual == visual
    ex = Renderer(tiny_model[1]).render(t)
    assert ex.image_grid_thw.tolist() == [[1, 8, 8], [1, 8, 8]]  # 112x112 under patch 14


def crop_turn(box):
    return format_turn("look closer", tool=("crop", {"image": "image_1", "bbox_2d": box}))


@pytest.mark.parametrize("window", [0, 1, 2])
def test_visual_window_training_context_is_the_engines_context(tiny_model, real_image_pair, window):
    """Under a visual memory window, every assistant turn is trained in exactly the context the engine gave the
    model for that turn (evicted observation images replaced by stubs), token for token; a trajectory with
    evictions becomes several segments, each turn trained once."""
    model, processor = tiny_model
    task = JudgeTask("a room", [str(p) for p in real_image_pair], id="w")
    boxes = [[0, 0, 500, 500], [500, 0, 1000, 500], [0, 500, 500, 1000]]
    script = {"w": [crop_turn(b) for b in boxes] + [format_turn("done", answer="Image 1 is better")]}
    gen = ScriptedGenerator(script)
    settings = EngineSettings(visual_window=window, budget=Budget(max_tool_calls=4))
    (t,) = RolloutEngine(gen, settings=settings).run([task])
    assert t.stop_reason == "answer" and t.settings["visual_window"] == window
    n_images = [len(r.images) for r in gen.requests]
    assert max(n_images) <= 2 + window  # the two inputs plus at most `window` observations, however many calls

    renderer = Renderer(processor)
    segments = renderer.segments(t)
    views = renderer.segment_views(t)
    assert sum(n for _, n in views) == 4  # every turn trained exactly once
    assert sum(int((ex.labels != IGNORE).any()) for ex in segments) == len(segments)
    tools = RolloutEngine(None, settings=settings).tool_schemas(task, True)
    tg = TransformersGenerator(model, processor)
    turn = 0
    for (_view, n_train), ex in zip(views, segments):
        ids = ex.input_ids.tolist()
        for _ in range(n_train):
            request = gen.requests[turn]
            prompt = tg.render(request.messages, tools)
            prompt_ids = list(processor(text=[prompt], images=request.images or None)["input_ids"][0])
            assert ids[: len(prompt_ids)] == prompt_ids, f"turn {turn}: training context differs from the engine's"
            start = len(prompt_ids)
            assert (ex.labels[start : start + 3] != IGNORE).all()  # this turn's tokens are trained here
            turn += 1
    assert turn == 4
    # W=0: observations are never shown, the view only grows: one segment. W=1: each new crop evicts the last
    # one (turns 3 and 4 start new segments). W=2: the third crop evicts the first once.
    assert len(segments) == {0: 1, 1: 3, 2: 2}[window]
