"""The offline tiny model: real architecture, reloads bit-identically, protocol tokens, TRL's template checks."""

import json

import pytest
import torch
from PIL import Image

from mmreward.tiny import PROTOCOL_TAGS, QWEN_SPECIAL_TOKENS, TinySizes, init_tiny, mrope_section


def test_reload_is_bit_identical(tiny_model_dir, tiny_model):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model, processor = tiny_model
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    again = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    for (n1, p1), (n2, p2) in zip(model.state_dict().items(), again.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)
    assert AutoProcessor.from_pretrained(tiny_model_dir).chat_template == processor.chat_template


def test_tokenizer_has_qwen_and_protocol_tokens(tiny_model):
    model, processor = tiny_model
    tok = processor.tokenizer
    for t in QWEN_SPECIAL_TOKENS + PROTOCOL_TAGS:
        ids = tok.encode(t, add_special_tokens=False)
        assert len(ids) == 1, t
    cfg = model.config
    assert cfg.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert cfg.video_token_id == tok.convert_tokens_to_ids("<|video_pad|>")
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    # protocol words are few tokens, so the verdict is not drowned in sub-word pieces
    assert len(tok.encode(" triangle", add_special_tokens=False)) == 1
    assert tok.decode(tok.encode("<think>a</think>", add_special_tokens=False)) == "<think>a</think>"
    # digits are single tokens wherever they stand, as in Qwen's tokenizers: a box coordinate has one spelling
    text = '"bbox_2d": [582, 546, 21, 9]'
    pieces = [tok.decode([i]) for i in tok.encode(text, add_special_tokens=False)]
    digits = [p for p in pieces if any(c.isdigit() for c in p)]
    assert digits == [c for c in text if c.isdigit()]


def test_chat_template_passes_trl_checks(tiny_model):
    from trl.chat_template_utils import add_response_schema, is_chat_template_prefix_preserving, supports_tool_calling

    _, processor = tiny_model
    assert supports_tool_calling(processor)
    assert is_chat_template_prefix_preserving(processor)
    add_response_schema(processor)  # raises for templates TRL does not recognise
    parsed = processor.tokenizer.parse_response(
        '<|im_start|>assistant\n<think>zoom</think>\n<tool_call>\n{"name": "crop", "arguments": {"image": "image_1", "bbox_2d": [0, 0, 9, 9]}}\n</tool_call><|im_end|>',
        prefix="",
    )
    assert parsed["tool_calls"][0]["function"]["name"] == "crop"


def test_forward_with_images_and_videos_and_a_training_step(tiny_model):
    model, processor = tiny_model
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "video"}, {"type": "text", "text": "hi"}]}]
    text = processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    frames = [Image.new("RGB", (56, 56), c) for c in ("red", "blue", "green", "white")]
    batch = processor(text=[text], images=[Image.new("RGB", (84, 56))], videos=[frames], return_tensors="pt")
    model.train()
    try:
        out = model(**batch, labels=batch["input_ids"])
        out.loss.backward()
        assert torch.isfinite(out.loss)
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.model.visual.parameters())
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


def test_qwen3_vl_and_custom_sizes(tmp_path, real_image_pair):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    sizes = TinySizes(hidden_size=96, num_heads=3, num_kv_heads=1, num_layers=3)
    out = init_tiny(tmp_path / "q3", "qwen3_vl", sizes)
    model = AutoModelForImageTextToText.from_pretrained(out)
    processor = AutoProcessor.from_pretrained(out)
    assert type(model).__name__ == "Qwen3VLForConditionalGeneration"
    assert model.config.text_config.hidden_size == 96 and model.config.text_config.num_hidden_layers == 3
    assert processor.image_processor.patch_size == 16
    assert json.loads((out / "mmreward_tiny.json").read_text())["arch"] == "qwen3_vl"
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}]
    text = processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    batch = processor(text=[text], images=[Image.new("RGB", (64, 64))], return_tensors="pt")
    generated = model.generate(**batch, max_new_tokens=3, do_sample=False)
    assert batch["input_ids"].shape[1] < generated.shape[1] <= batch["input_ids"].shape[1] + 3
    # The judge adapts pixel budgets to Qwen3-VL's 32-pixel token cells and runs end to end.
    from mmreward.generators import SamplingSettings
    from mmreward.judge import Judge

    judge = Judge.from_pretrained(str(out), sampling=SamplingSettings(max_new_tokens=8))
    assert (
        judge.engine.settings.visual.image_budget.factor == 32 and judge.engine.settings.tools.crop_budget.factor == 32
    )
    j = judge.compare("a room", [str(p) for p in real_image_pair])
    assert j.trajectories[0].num_turns == 1 and j.trajectories[0].prompt_tokens > 0


def test_refuses_nonempty_folder_and_bad_sizes(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("keep me")
    with pytest.raises(FileExistsError):
        init_tiny(tmp_path / "x")
    assert (tmp_path / "x" / "f").read_text() == "keep me"
    with pytest.raises(ValueError, match="divisible"):
        TinySizes(hidden_size=65)


def test_mrope_section_sums_to_half_head_dim():
    for head_dim in (16, 32, 64, 128):
        assert sum(mrope_section(head_dim)) == head_dim // 2
    assert mrope_section(128) == [16, 24, 24]  # Qwen2.5-VL's own split
