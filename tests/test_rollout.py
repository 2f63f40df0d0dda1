"""The tool loop with a scripted generator (exact observations, budgets, errors, records) and with the real
tiny model (plumbing: batching, token ids, images per turn)."""

import json

import pytest
import torch
from scripted_generator import ScriptedGenerator

from mmreward.generators import SamplingSettings, TransformersGenerator
from mmreward.protocol import JudgeTask, format_turn
from mmreward.rollout import RolloutEngine
from mmreward.settings import EngineSettings
from mmreward.tools import Budget
from mmreward.trajectory import Trajectory, materialize, read_trajectories, write_trajectories

CROP_TL = format_turn("check the corner", tool=("crop", {"image": "image_1", "bbox_2d": [0, 0, 500, 500]}))
ANSWER_1 = format_turn("image 1 matches", answer="Image 1 is better")


@pytest.fixture
def image_task(real_image_pair):
    return JudgeTask("a room", [str(p) for p in real_image_pair], id="img")


def run(script, tasks, settings=None, tools_on=True, orders=None):
    gen = ScriptedGenerator(script)
    traj = RolloutEngine(gen, settings=settings or EngineSettings()).run(tasks, orders, tools_on=tools_on)
    return traj, gen


def test_tool_call_then_answer(image_task):
    (t,), gen = run({"img": [CROP_TL, ANSWER_1]}, [image_task])
    assert t.stop_reason == "answer" and t.format_ok and t.num_turns == 2
    assert t.verdict["winner"] == 0 and t.verdict["strict"]
    assert [m["role"] for m in t.messages] == ["system", "user", "assistant", "tool", "assistant"]
    tool_msg = t.messages[3]
    assert tool_msg["content"][0] == {"type": "image", "ref": "obs_1"}
    assert "obs_1: crop of image_1 at [0, 0, 500, 500]." in tool_msg["content"][1]["text"]
    assert t.tool_trace[0]["ok"] and t.tool_trace[0]["observations"] == ["obs_1"]
    assert t.images["obs_1"] == {"tool": "crop", "image": "image_1", "bbox_2d": [0, 0, 500, 500]}
    # the second turn saw the observation image: 2 inputs + 1 crop
    assert len(gen.requests[0].images) == 2 and len(gen.requests[1].images) == 3
    assert gen.requests[0].tools[0]["function"]["name"] == "crop"


def test_bad_tool_call_gets_error_observation_and_loop_continues(image_task):
    bad_box = format_turn("zoom", tool=("crop", {"image": "image_1", "bbox_2d": [600, 0, 100, 500]}))
    bad_json = "<think>zoom</think><tool_call>{not json}</tool_call>"
    (t,), _ = run({"img": [bad_box, bad_json, CROP_TL, ANSWER_1]}, [image_task])
    assert t.stop_reason == "answer" and t.verdict["winner"] == 0
    assert [c["ok"] for c in t.tool_trace] == [False, False, True]
    assert "inverted" in t.tool_trace[0]["error"] and "not valid JSON" in t.tool_trace[1]["error"]
    assert t.messages[3]["content"][-1]["text"].startswith("Error:")
    assert not t.format_ok  # a malformed turn happened on the way


def test_garbage_is_a_parse_failure(image_task):
    (t,), _ = run({"img": ["lorem ipsum"]}, [image_task])
    assert t.stop_reason == "parse_failure" and t.verdict is None and "no verdict" in t.parse_failure


def test_lenient_reading_of_a_loose_answer(image_task):
    (t,), _ = run({"img": ["I think Image 2 is better."]}, [image_task])
    assert t.stop_reason == "answer" and t.verdict["winner"] == 1 and not t.format_ok
    (t,), _ = run({"img": ["I think Image 2 is better."]}, [image_task], EngineSettings(verdict_mode="strict"))
    assert t.stop_reason == "parse_failure"


def test_budgets(image_task):
    (t,), _ = run({"img": [CROP_TL] * 10}, [image_task], EngineSettings(max_turns=4, budget=Budget(max_tool_calls=2)))
    assert t.stop_reason == "max_turns" and t.num_turns == 4
    assert [c["ok"] for c in t.tool_trace] == [True, True, False, False]
    assert "budget used up" in t.tool_trace[2]["error"]
    (t,), _ = run({"img": [CROP_TL] * 10}, [image_task], EngineSettings(budget=Budget(max_tokens=5)))
    assert t.stop_reason == "max_tokens"


def test_tools_off_refuses_calls(image_task):
    (t,), gen = run({"img": [CROP_TL, ANSWER_1]}, [image_task], tools_on=False)
    assert gen.requests[0].tools is None
    assert not t.tool_trace[0]["ok"] and "not available" in t.tool_trace[0]["error"]
    assert t.verdict["winner"] == 0


def test_video_select_frames_loop(real_video_pair):
    task = JudgeTask("a girl sits", [str(p) for p in real_video_pair], modality="video", id="vid")
    look = format_turn("frame 60", tool=("select_frames", {"video": "video_2", "frames": [60, 61]}))
    (t,), gen = run({"vid": [look, format_turn("ok", answer="Video 2 is better")]}, [task])
    assert t.stop_reason == "answer" and t.verdict["winner"] == 1
    assert t.tool_trace[0]["observations"] == ["obs_1", "obs_2"]
    assert "video_2 frame 60 at 2.00s" in t.messages[3]["content"][-1]["text"]
    assert [s["function"]["name"] for s in gen.requests[0].tools] == ["crop", "select_frames"]
    assert len(gen.requests[1].images) == len(gen.requests[0].images) + 2


def test_batch_mixes_items_and_bad_media(image_task, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"nope")
    bad = JudgeTask("x", [str(broken), str(broken)], id="bad")
    script = {"img": [ANSWER_1], "img2": [CROP_TL, format_turn("no", answer="Image 2 is better")]}
    other = JudgeTask(image_task.prompt, image_task.candidates, id="img2")
    trajs, _ = run(script, [image_task, bad, other])
    assert [t.stop_reason for t in trajs] == ["answer", "input_error", "answer"]
    assert "broken.png" in trajs[1].error
    assert [t.verdict["winner"] for t in (trajs[0], trajs[2])] == [0, 1]


def test_records_roundtrip(image_task, tmp_path):
    trajs, _ = run({"img": [CROP_TL, ANSWER_1]}, [image_task])
    path = tmp_path / "t.jsonl"
    write_trajectories(trajs, path)
    back = read_trajectories(path)
    assert [b.to_dict() for b in back] == [t.to_dict() for t in trajs]
    assert isinstance(back[0], Trajectory) and back[0].judge_task.prompt == "a room"
    json.dumps(back[0].to_dict())  # plain JSON


def test_materialize_replays_observations(real_video_pair):
    task = JudgeTask("a girl sits", [str(p) for p in real_video_pair], modality="video", id="vid")
    script = {
        "vid": [
            format_turn("frames", tool=("select_frames", {"video": "video_1", "frames": [60, 90]})),
            format_turn("bad", tool=("crop", {"image": "obs_9", "bbox_2d": [0, 0, 500, 500]})),
            format_turn("zoom", tool=("crop", {"image": "obs_2", "bbox_2d": [100, 100, 600, 700]})),
            format_turn("ok", answer="Video 1 is better"),
        ]
    }
    (t,), _ = run(script, [task])
    live = t.context.images
    ctx = materialize(Trajectory.from_dict(json.loads(json.dumps(t.to_dict()))))
    assert set(ctx.images) == set(live) and {"obs_1", "obs_2", "obs_3"} <= set(ctx.images)
    for name in live:
        assert ctx.images[name].tobytes() == live[name].tobytes(), name
    t.tool_trace[2]["observations"] = ["obs_7"]
    with pytest.raises(ValueError, match="replaying crop"):
        materialize(t)


def test_real_tiny_model_plumbing(tiny_model, real_image_pair, real_video_pair):
    model, processor = tiny_model
    gen = TransformersGenerator(model, processor, SamplingSettings(max_new_tokens=12))
    engine = RolloutEngine(gen, settings=EngineSettings(max_turns=2, batch_size=4))
    tasks = [
        JudgeTask("a room", [str(p) for p in real_image_pair], id="a"),
        JudgeTask("a girl", [str(p) for p in real_video_pair], modality="video", id="b"),
    ]
    trajs = engine.run(tasks, [[0, 1], [1, 0]])
    for t in trajs:
        assert t.num_turns >= 1 and t.completion_tokens <= 24 and t.prompt_tokens > 0
        assert t.stop_reason in {"answer", "parse_failure", "max_turns"}
    # The prompt's image tokens match the images' grids: one <|image_pad|> per merged 2x2 patch group.
    from mmreward.protocol import build_conversation, resolve_images

    conv = build_conversation(tasks[0])
    msgs, images = resolve_images(conv.messages, conv.context.images, engine.settings.visual)
    text = gen.render(msgs, engine.tool_schemas(tasks[0], True))
    batch = processor(text=[text], images=images, return_tensors="pt")
    pad_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    n_pad = int((batch["input_ids"] == pad_id).sum())
    assert n_pad == int(batch["image_grid_thw"].prod(dim=1).sum()) // 4
    assert batch["image_grid_thw"].shape == (2, 3)
    # Greedy decoding is reproducible.
    again = engine.run(tasks, [[0, 1], [1, 0]])
    assert [t.final_text for t in again] == [t.final_text for t in trajs]
    # min_new_tokens suppresses end of turn: every first turn is exactly that long (fixed-work benchmarks)
    gen.sampling = SamplingSettings(max_new_tokens=10, min_new_tokens=10, temperature=1.0, seed=3)
    fixed = RolloutEngine(gen, settings=EngineSettings(max_turns=1, batch_size=4)).run(tasks)
    assert [t.completion_tokens for t in fixed] == [10, 10]


def test_cached_continuation_equals_reencoding(tiny_model, real_image_pair):
    """After a crop, encoding only the appended turn and observation image on top of the kept KV cache gives the
    logits of encoding the whole conversation again (3-D rope positions of the new image included)."""
    from mmreward.protocol import assistant_message, build_conversation, resolve_images, tool_message
    from mmreward.tools import default_registry

    model, processor = tiny_model
    task = JudgeTask("a room", [str(p) for p in real_image_pair])
    conv = build_conversation(task)
    tools = default_registry().schemas(["crop"])
    turn = format_turn("look", tool=("crop", {"image": "image_1", "bbox_2d": [0, 0, 500, 500]}))
    result = default_registry().call(conv.context, "crop", {"image": "image_1", "bbox_2d": [0, 0, 500, 500]})
    second = conv.messages + [assistant_message(turn), tool_message(result.text, [n for n, _ in result.images])]
    cached = TransformersGenerator(model, processor, reuse_cache=True)
    fresh = TransformersGenerator(model, processor, reuse_cache=True)

    def prompt(messages):
        msgs, images = resolve_images(messages, conv.context.images, EngineSettings().visual)
        return cached.render(msgs, tools), images

    cached.extend("t", *prompt(conv.messages))
    logits_cached, encoded, ids, _ = cached.extend("t", *prompt(second))
    logits_full, encoded_full, _, _ = fresh.extend("u", *prompt(second))
    assert encoded_full == len(ids) and encoded < len(ids) // 2  # only the new turn and the crop were encoded
    torch.testing.assert_close(logits_cached, logits_full, atol=1e-4, rtol=1e-4)


def test_cache_under_visual_window_rebuilds_from_the_eviction_point(tiny_model, real_image_pair):
    """With a visual memory window of one round, the third crop evicts the first crop's image: the kept cache is
    cut where the stub replaces that image and only what follows is encoded again; the logits still equal
    encoding the windowed conversation from scratch at every turn."""
    from mmreward.protocol import assistant_message, build_conversation, resolve_images, tool_message, windowed
    from mmreward.tools import default_registry

    model, processor = tiny_model
    task = JudgeTask("a room", [str(p) for p in real_image_pair])
    conv = build_conversation(task)
    registry = default_registry()
    tools = registry.schemas(["crop"])
    cached = TransformersGenerator(model, processor, reuse_cache=True)
    messages = list(conv.messages)
    boxes = [[0, 0, 500, 500], [500, 0, 1000, 500], [0, 500, 500, 1000]]
    evicted_at = []
    for turn, box in enumerate(boxes):
        args = {"image": f"image_{turn % 2 + 1}", "bbox_2d": box}
        result = registry.call(conv.context, "crop", args)
        messages += [
            assistant_message(format_turn(f"look {turn}", tool=("crop", args))),
            tool_message(result.text, [n for n, _ in result.images]),
        ]
        view = windowed(messages, 1)
        msgs, images = resolve_images(view, conv.context.images, EngineSettings().visual)
        text = cached.render(msgs, tools)
        previous = list(cached._caches.get("t", ([], None))[0])
        logits, encoded, ids, _ = cached.extend("t", text, images)
        fresh = TransformersGenerator(model, processor, reuse_cache=True)
        logits_full, encoded_full, ids_full, _ = fresh.extend("u", text, images)
        assert ids == ids_full and encoded_full == len(ids)
        torch.testing.assert_close(logits, logits_full, atol=1e-4, rtol=1e-4)
        # what was encoded starts exactly where the new context leaves the cached one
        common = next((k for k, (a, b) in enumerate(zip(previous, ids)) if a != b), min(len(previous), len(ids)))
        assert encoded == len(ids) - common
        evicted_at.append(len(images))
    # the window held the context at the two overviews plus one crop once the third round came
    assert evicted_at == [3, 3, 3]
    assert "[obs_1 dropped from view]" in text and "[obs_2 dropped from view]" in text
    assert encoded > len(ids) - len(previous)  # the eviction forced re-encoding of more than the new turn


def test_reuse_cache_generates_what_reencoding_generates(tiny_model, real_image_pair, real_video_pair):
    model, processor = tiny_model
    tasks = [
        JudgeTask("a room", [str(p) for p in real_image_pair], id="a"),
        JudgeTask("a girl", [str(p) for p in real_video_pair], modality="video", id="b"),
    ]
    runs = []
    for reuse in (False, True):
        gen = TransformersGenerator(model, processor, SamplingSettings(max_new_tokens=16), reuse_cache=reuse)
        engine = RolloutEngine(gen, settings=EngineSettings(max_turns=2, batch_size=1))
        runs.append([(t.final_text, t.prompt_tokens) for t in engine.run(tasks, [[0, 1], [1, 0]])])
        assert not gen._caches  # finished trajectories release their cache
    assert runs[0] == runs[1]


def test_batched_cache_reuse_generates_what_one_trajectory_at_a_time_generates(
    tiny_model, real_image_pair, real_video_pair
):
    """Cache reuse inside a batch (caches left-padded together for decoding, cut apart afterwards) picks the same
    tokens as the one-trajectory loop, turn after turn, greedy and sampled, images and video, both orders."""
    model, processor = tiny_model
    tasks = [
        JudgeTask("a room", [str(p) for p in real_image_pair], id="a"),
        JudgeTask("a girl", [str(p) for p in real_video_pair], modality="video", id="b"),
        JudgeTask("which is right?", ["a red one", "a blue one"], modality="answer", media=[str(real_image_pair[0])]),
    ]
    for sampling in (SamplingSettings(max_new_tokens=12), SamplingSettings(max_new_tokens=12, temperature=1.0)):
        runs = []
        for batch in (1, 6):
            gen = TransformersGenerator(model, processor, sampling, reuse_cache=True)
            engine = RolloutEngine(gen, settings=EngineSettings(max_turns=3, batch_size=batch))
            trajs = engine.run(tasks * 2, [[0, 1], [1, 0], [0, 1], [1, 0], [0, 1], [1, 0]])
            runs.append([(t.final_text, t.num_turns, t.prompt_tokens, t.completion_tokens) for t in trajs])
            assert not gen._caches
        assert runs[0] == runs[1], sampling

    # Tool turns: the second turn of each trajectory reuses the cache the batched first turn left, encoding only
    # the turn it generated and the tool observation, and still equals the one-trajectory loop.
    from mmreward.generators import GenerationRequest
    from mmreward.protocol import assistant_message, build_conversation, resolve_images, tool_message
    from mmreward.tools import default_registry

    registry = default_registry()
    convs = [build_conversation(tasks[0], order) for order in ([0, 1], [1, 0])]
    convs.append(build_conversation(tasks[2]))
    tools = registry.schemas(["crop"])
    visual = EngineSettings().visual

    def requests(turn: int) -> list[GenerationRequest]:
        out = []
        for k, conv in enumerate(convs):
            messages = list(conv.messages)
            if turn:
                args = {"image": "image_1", "bbox_2d": [0, 0, 400 + 100 * k, 500]}
                result = registry.call(conv.context, "crop", args)
                messages += [
                    assistant_message(format_turn("look", tool=("crop", args))),
                    tool_message(result.text, [n for n, _ in result.images]),
                ]
            msgs, images = resolve_images(messages, conv.context.images, visual)
            out.append(GenerationRequest(f"t{k}", turn, msgs, images, tools, 10))
        return out

    texts = {}
    for mode in ("one", "batch"):
        gen = TransformersGenerator(model, processor, SamplingSettings(max_new_tokens=10), reuse_cache=True)
        encoded: list[tuple[int, int]] = []  # (tokens to encode, tokens in the context) per cached turn

        def spy(key, text, images, plan=gen._plan, encoded=encoded):
            result = plan(key, text, images)
            encoded.append((len(result["ids"]) - result["p"], len(result["ids"])))
            return result

        gen._plan = spy
        first, second = requests(0), requests(1)
        if mode == "one":
            texts[mode] = [gen.generate([r])[0].text for r in first] + [gen.generate([r])[0].text for r in second]
        else:
            texts[mode] = [o.text for o in gen.generate(first)] + [o.text for o in gen.generate(second)]
        assert len(encoded) >= len(convs)
        assert all(n < total // 2 for n, total in encoded[-len(convs) :]), encoded  # turn 2: only what was appended
    assert texts["one"] == texts["batch"]


def test_checkpoint_generation_config_does_not_change_the_judge(tiny_model, real_image_pair, monkeypatch):
    """Qwen2.5-VL's release asks for repetition_penalty 1.05 in generation_config.json. The judge sets its own
    (1.0, as GRPO trains), so re-encoding (transformers' generate) and the KV-reusing loop pick the same tokens, at
    any setting."""
    model, processor = tiny_model
    task = JudgeTask("a room", [str(p) for p in real_image_pair], id="a")
    decoded: list[list[int]] = []  # the tokens each turn generated (the random model's text is mostly markers)
    decode = processor.tokenizer.decode
    monkeypatch.setattr(
        processor.tokenizer, "decode", lambda ids, **kw: decoded.append(list(ids)) or decode(ids, **kw)
    )
    monkeypatch.setattr(model.generation_config, "repetition_penalty", 1.05)  # as the release ships it
    tokens = {}
    for penalty in (1.0, 100.0):
        for reuse in (False, True):
            sampling = SamplingSettings(max_new_tokens=24, min_new_tokens=24, repetition_penalty=penalty)
            gen = TransformersGenerator(model, processor, sampling, reuse_cache=reuse)
            RolloutEngine(gen, settings=EngineSettings(max_turns=1, batch_size=1)).run([task], [[0, 1]])
            tokens[penalty, reuse] = decoded[-1]
        assert tokens[penalty, False] == tokens[penalty, True], penalty
    assert tokens[1.0, False] != tokens[100.0, False]  # the setting reaches generation


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_context_encoding_preprocesses_only_new_images_and_equals_the_processor(tmp_path, family):
    import numpy as np
    from PIL import Image
    from transformers import AutoProcessor

    from mmreward.release_like import init_like

    folder = init_like(tmp_path / family, family)
    processor = AutoProcessor.from_pretrained(folder)

    class NoModel:  # encode_context needs the processor and tokenizer only
        generation_config = type("G", (), {"eos_token_id": None})()

        def forward(self, input_ids=None):
            raise AssertionError("no forward pass here")

    gen = TransformersGenerator(NoModel(), processor)
    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in ((64, 96), (120, 80), (56, 56))
    ]
    calls = []
    reference = AutoProcessor.from_pretrained(folder)

    class Counting:  # the generator's image processor, counting the images it is asked to preprocess
        def __init__(self, inner):
            self.inner = inner

        def __call__(self, *args, **kwargs):
            calls.append(len(kwargs["images"]))
            return self.inner(*args, **kwargs)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    processor.image_processor = Counting(processor.image_processor)
    for n in (2, 3):  # a turn adds a tool observation
        text = "".join(f"<|vision_start|><|image_pad|><|vision_end|>view {i}. " for i in range(n))
        ours = gen.encode_context("t", text, [im.copy() for im in images[:n]])
        ref = reference(text=[text], images=images[:n], return_tensors="pt")
        assert ours["input_ids"].tolist() == ref["input_ids"].tolist()
        assert torch.equal(ours["image_grid_thw"], ref["image_grid_thw"])
        torch.testing.assert_close(ours["pixel_values"], ref["pixel_values"], rtol=0, atol=0)
    assert calls[:2] == [2, 1]  # the second turn preprocessed only its new image
    gen.release("t")
    assert not gen._pixels


def test_a_run_that_raises_leaves_no_cache_behind(tiny_model, real_image_pair):
    """Trajectory keys recur across runs (the server's "chat#01#0"); a cache left by a failed run would be matched
    by token ids alone and carry another request's images, so a run that raises releases every cache it made."""
    model, processor = tiny_model
    gen = TransformersGenerator(model, processor, SamplingSettings(max_new_tokens=4), reuse_cache=True)

    class FailsOnSecondTurn:
        sampling = gen.sampling

        def generate(self, requests):
            outs = gen.generate(requests)
            if requests[0].turn == 1:
                raise RuntimeError("the device went away")
            for o in outs:
                o.text = format_turn("look", tool=("crop", {"image": "image_1", "bbox_2d": [0, 0, 500, 500]}))
            return outs

        def release(self, key):
            gen.release(key)

    engine = RolloutEngine(FailsOnSecondTurn(), settings=EngineSettings(max_turns=3, batch_size=4))
    tasks = [JudgeTask("a room", [str(p) for p in real_image_pair], id="chat")] * 3
    with pytest.raises(RuntimeError, match="went away"):
        engine.run(tasks)  # three trajectories with one id: the generator still tells them apart
    assert not gen._caches and not gen._pixels


def test_cache_reuse_under_a_lora_adapter(tiny_model_dir, real_image_pair):
    """A LoRA stage's output loads as a PEFT model, whose attribute forwarding hides where Qwen-VL's rope index
    lives; cache reuse (the server's default) finds it and generates what re-encoding generates."""
    from peft import LoraConfig, get_peft_model

    from mmreward.modeling import load_model

    model, processor = load_model(tiny_model_dir)
    peft_model = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    tasks = [JudgeTask("a room", [str(p) for p in real_image_pair], id=f"t{k}") for k in range(3)]
    texts = []
    for reuse in (False, True):
        gen = TransformersGenerator(peft_model, processor, SamplingSettings(max_new_tokens=8), reuse_cache=reuse)
        trajs = RolloutEngine(gen, settings=EngineSettings(max_turns=1, batch_size=1)).run(tasks[:1])
        texts.append(trajs[0].final_text)
        if reuse:  # and batched
            RolloutEngine(gen, settings=EngineSettings(max_turns=1, batch_size=3)).run(tasks)
    assert texts[0] == texts[1]


def test_batched_sampling_draws_each_row_from_its_own_distribution():
    """The decode loop samples every row in one step: each row's token follows its own probabilities (top-p
    applied), never lands on a masked token, and does not depend on the rows beside it."""
    from types import SimpleNamespace

    import torch

    from mmreward.generators import SamplingSettings, TransformersGenerator

    def sample(scores, seeds, top_p=1.0):
        gen = SimpleNamespace(sampling=SamplingSettings(8, temperature=1.0, top_p=top_p))
        rngs = [torch.Generator().manual_seed(s) for s in seeds]
        return TransformersGenerator._sample_rows(gen, scores, rngs)

    p = torch.tensor([0.5, 0.3, 0.2, 0.0])
    scores = torch.log(p).expand(4000, -1)  # the last token is masked (-inf)
    picks = torch.tensor(sample(scores, range(4000)))
    freq = torch.bincount(picks, minlength=4).float() / len(picks)
    assert freq[3] == 0 and torch.allclose(freq[:3], p[:3], atol=0.03), freq
    top = torch.tensor(sample(scores[:2000], range(2000), top_p=0.6))  # keeps the 0.5 and 0.3 tokens only
    assert set(top.tolist()) == {0, 1}
    # A row's draw depends on its own generator, not on the batch it is in.
    mixed = torch.randn(6, 50)
    alone = [sample(mixed[i : i + 1], [i])[0] for i in range(6)]
    assert sample(mixed, range(6)) == alone
