"""Tiny checkpoints shaped like the real Qwen2.5-VL-7B-Instruct and Qwen3-VL-8B-Instruct releases, for tests.

Random weights at tiny sizes, but everything a stage reads from a real checkpoint folder is as the release has it:

* the config's fields and values (vocabulary size, rope settings, token ids from 151643 on, tied or not);
* the vision tower's structure (patch 14 with window attention and full-attention blocks for Qwen2.5-VL; patch 16,
  learned position embeddings and deepstack mergers for Qwen3-VL), at a smaller depth and width;
* the processor settings (pixel budgets, normalisation, video sampling);
* the generation config (sampling on, repetition penalty, two end-of-turn ids);
* the stock chat template byte for byte (TRL ships the originals), which for Qwen2.5-VL cannot do tools.

The vocabulary is a small BPE trained here, but it carries the release's added tokens with their real strings and
ids (``<|endoftext|>`` = 151643 ... ``<|video_pad|>`` = 151656, ``<tool_call>`` = 151657, and Qwen3's
``<tool_response>`` / ``<think>`` up to 151668). ``<think>`` and ``<answer>`` are plain text to Qwen2.5-VL, as they
are in the release. Build with ``mmreward init-tiny OUT --like qwen2_5_vl|qwen3_vl``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

# Added tokens of the releases, from 151643 on (tokenizer.json). `special` as the release marks it.
QWEN2_5_VL_ADDED = [
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
]
QWEN3_VL_ADDED = QWEN2_5_VL_ADDED + [
    ("<tool_response>", False),
    ("</tool_response>", False),
    ("<think>", False),
    ("</think>", False),
]
FIRST_ADDED_ID = 151643

# What differs between the two releases, at the release's values. Sizes are scaled down in `build_config`.
RELEASES = {
    "qwen2_5_vl": {
        "name": "Qwen2.5-VL-7B-Instruct",
        "added": QWEN2_5_VL_ADDED,
        "vocab_size": 152064,
        "max_position_embeddings": 128000,
        "rope_theta": 1_000_000.0,
        "mrope_section": [16, 24, 24],  # of head_dim/2 = 64
        "patch_size": 14,
        "image_processor": {"min_pixels": 3136, "max_pixels": 12845056},
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "video_processor": {"min_pixels": 3136, "max_pixels": 12845056},
        "generation": {"do_sample": True, "repetition_penalty": 1.05, "temperature": 1e-06},
        "model_max_length": 131072,
    },
    "qwen3_vl": {
        "name": "Qwen3-VL-8B-Instruct",
        "added": QWEN3_VL_ADDED,
        "vocab_size": 151936,
        "max_position_embeddings": 262144,
        "rope_theta": 5_000_000.0,
        "mrope_section": [24, 20, 20],
        "patch_size": 16,
        "image_processor": {"size": {"shortest_edge": 65536, "longest_edge": 16777216}},
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "video_processor": {
            "size": {"shortest_edge": 4096, "longest_edge": 25165824},
            "fps": 2,
            "min_frames": 4,
            "max_frames": 768,
            "do_sample_frames": True,
        },
        "generation": {"do_sample": True, "top_k": 20, "top_p": 0.8, "repetition_penalty": 1.0, "temperature": 0.7},
        "model_max_length": 262144,
    },
}

# Tiny sizes: text hidden 64 (4 heads of 16, 2 KV heads), 2 layers; vision hidden 32, depth 4.
TEXT = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4}
TEXT_KV_HEADS = 2
VISION = {"depth": 4, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2}


def scaled_mrope_section(section: list[int], head_dim: int) -> list[int]:
    """The release's (t, h, w) split of rotary frequencies, scaled to ``head_dim // 2`` (sums exactly)."""
    half, total = head_dim // 2, sum(section)
    out = [max(1, round(s * half / total)) for s in section]
    out[-1] = half - sum(out[:-1])
    return out


def build_tokenizer(family: str):
    """A small byte-level BPE (Qwen2's pre-tokenizer) with the release's added tokens at their real ids."""
    from tokenizers import Tokenizer  # noqa: PLC0415
    from transformers import PreTrainedTokenizerFast  # noqa: PLC0415

    from mmreward.tiny import build_tokenizer as build_bpe  # noqa: PLC0415

    spec = RELEASES[family]
    data = json.loads(build_bpe(2048).backend_tokenizer.to_str())
    learned = data["model"]["vocab"]
    for added in data["added_tokens"]:
        learned.pop(added["content"], None)
    vocab = {tok: i for i, (tok, _) in enumerate(sorted(learned.items(), key=lambda kv: kv[1]))}
    added = []
    for i, (content, special) in enumerate(spec["added"]):
        vocab[content] = FIRST_ADDED_ID + i  # in the model's vocab too, or the tokenizers library renumbers them
        added.append(
            {
                "id": FIRST_ADDED_ID + i,
                "content": content,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": special,
            }
        )
    data["model"]["vocab"], data["added_tokens"] = vocab, added
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(data)),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        model_max_length=spec["model_max_length"],
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
    )


def build_processor(tokenizer, family: str):
    from transformers import Qwen2VLImageProcessor  # noqa: PLC0415

    from mmreward.chat_templates import stock_template  # noqa: PLC0415

    spec = RELEASES[family]
    common = dict(
        patch_size=spec["patch_size"],
        temporal_patch_size=2,
        merge_size=2,
        image_mean=spec["image_mean"],
        image_std=spec["image_std"],
    )
    image_processor = Qwen2VLImageProcessor(**common, **spec["image_processor"])
    if family == "qwen2_5_vl":
        from transformers import Qwen2_5_VLProcessor, Qwen2VLVideoProcessor  # noqa: PLC0415

        video_processor = Qwen2VLVideoProcessor(**common, **spec["video_processor"])
        cls = Qwen2_5_VLProcessor
    else:
        from transformers import Qwen3VLProcessor, Qwen3VLVideoProcessor  # noqa: PLC0415

        video_processor = Qwen3VLVideoProcessor(**common, **spec["video_processor"])
        cls = Qwen3VLProcessor
    return cls(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=stock_template(family),
    )


def build_config(family: str):
    spec = RELEASES[family]
    ids = {content: FIRST_ADDED_ID + i for i, (content, _) in enumerate(spec["added"])}
    head_dim = TEXT["hidden_size"] // TEXT["num_attention_heads"]
    text = dict(
        TEXT,
        num_key_value_heads=TEXT_KV_HEADS,
        vocab_size=spec["vocab_size"],
        max_position_embeddings=spec["max_position_embeddings"],
        rms_norm_eps=1e-6,
        hidden_act="silu",
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=False,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": spec["rope_theta"],
            "mrope_section": scaled_mrope_section(spec["mrope_section"], head_dim),
        },
    )
    special = dict(
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    vision = dict(VISION, out_hidden_size=TEXT["hidden_size"], spatial_merge_size=2, temporal_patch_size=2, in_chans=3)
    if family == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig  # noqa: PLC0415

        text.update(sliding_window=32768, use_sliding_window=False, max_window_layers=TEXT["num_hidden_layers"])
        # The release: window attention everywhere but every 8th block (7, 15, 23, 31 of 32); here every 2nd of 4.
        vision.update(
            patch_size=14, window_size=112, fullatt_block_indexes=[1, 3], tokens_per_second=2, hidden_act="silu"
        )
        return Qwen2_5_VLConfig(
            text_config=text,
            vision_config=vision,
            tie_word_embeddings=False,
            vision_token_id=ids["<|vision_pad|>"],
            **special,
        )
    from transformers import Qwen3VLConfig  # noqa: PLC0415

    text.update(head_dim=head_dim, attention_bias=False)
    text["rope_parameters"]["mrope_interleaved"] = True
    # The release: 27 blocks with deepstack features taken after blocks 8, 16, 24; here after 1, 2, 3 of 4.
    vision.update(
        patch_size=16, num_position_embeddings=2304, deepstack_visual_indexes=[1, 2, 3], hidden_act="gelu_pytorch_tanh"
    )
    return Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=False, **special)


def init_like(out_dir: str | os.PathLike, family: str, seed: int = 0) -> Path:
    """Write a tiny random checkpoint shaped like ``family``'s release to ``out_dir`` (atomically)."""
    import torch  # noqa: PLC0415
    from transformers import AutoModelForImageTextToText, GenerationConfig  # noqa: PLC0415

    if family not in RELEASES:
        raise ValueError(f"--like must be one of {sorted(RELEASES)}, not {family!r}")
    from mmreward.tiny import folder_written_atomically, refuse_nonempty  # noqa: PLC0415

    out = Path(out_dir)
    refuse_nonempty(out)
    spec = RELEASES[family]
    tokenizer = build_tokenizer(family)
    processor = build_processor(tokenizer, family)
    config = build_config(family)
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config)
    end_of_text = config.text_config.bos_token_id
    model.generation_config = GenerationConfig(
        bos_token_id=end_of_text,
        pad_token_id=end_of_text,
        eos_token_id=[config.text_config.eos_token_id, end_of_text],
        **spec["generation"],
    )
    with folder_written_atomically(out) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        _as_release_layout(tmp, family)
        (tmp / "mmreward_tiny.json").write_text(
            json.dumps({"like": family, "release": spec["name"], "seed": seed}, indent=2), encoding="utf-8"
        )
    return out


def _as_release_layout(folder: Path, family: str) -> None:
    """The releases' file layout: ``preprocessor_config.json`` and ``video_preprocessor_config.json`` (transformers 5
    writes one ``processor_config.json``), Qwen2.5-VL's pixel limits as ``min_pixels``/``max_pixels``, and
    ``Qwen2Tokenizer`` with no BOS."""
    path = folder / "processor_config.json"
    nested = json.loads(path.read_text(encoding="utf-8"))
    cls = nested.pop("processor_class")
    for key, name in (
        ("image_processor", "preprocessor_config.json"),
        ("video_processor", "video_preprocessor_config.json"),
    ):
        part = dict(nested.pop(key), processor_class=cls)
        if family == "qwen2_5_vl":
            size = part.pop("size")
            part.update(min_pixels=size["shortest_edge"], max_pixels=size["longest_edge"])
        (folder / name).write_text(json.dumps(part, indent=2), encoding="utf-8")
    if nested:
        path.write_text(json.dumps(dict(nested, processor_class=cls), indent=2), encoding="utf-8")
    else:
        path.unlink()
    path = folder / "tokenizer_config.json"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    cfg.update(tokenizer_class="Qwen2Tokenizer", bos_token=None, add_prefix_space=False, errors="replace")
    path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False), encoding="utf-8")
