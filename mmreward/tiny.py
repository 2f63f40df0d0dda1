"""Build a tiny, random-weight Qwen-VL judge fully offline: tokenizer, processor, chat template, model.

No weights can be downloaded on the project's machines, so the embedded default is a model of the *real*
architecture (``Qwen2_5_VLForConditionalGeneration`` or ``Qwen3VLForConditionalGeneration``) with small sizes,
a byte-level BPE tokenizer trained here on the protocol's own vocabulary, and the real Qwen processors. The
folder it writes loads with ``AutoProcessor`` / ``AutoModelForImageTextToText`` like any checkpoint.

The chat template is TRL's copy of the Qwen3-VL template (taken from the installed ``trl`` package, not
copied into this repository): it renders tool calls and tool observations, TRL recognises it for response
parsing, and it passes TRL's tool-calling and prefix-preservation checks that GRPO requires.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from mmreward.protocol import JudgeTask, system_prompt, user_text
from mmreward.tools import Budget, default_registry

logger = logging.getLogger(__name__)

QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# Protocol tags are single tokens (as <tool_call> is in Qwen's vocabulary) but not "special": decoding keeps them.
PROTOCOL_TAGS = [
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    "<answer>",
    "</answer>",
    "<tool_response>",
    "</tool_response>",
]

# The split pattern of Qwen2/Qwen2.5/Qwen3 tokenizers (their tokenizer.json): words with their leading space,
# single digits, punctuation runs, whitespace.
QWEN2_PRETOKENIZE = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Words of the judging domain and of the synthetic world, so they tokenize to one or two pieces.
DOMAIN_WORDS = (
    "red green blue yellow purple orange cyan magenta white black gray grey brown pink "
    "circle square triangle star diamond cross ring hexagon rectangle ellipse heart shape shapes object objects "
    "small large big tiny top bottom left right middle center corner above below beside next to between "
    "one two three four five six seven eight nine ten zero count number many few none "
    "image video frame frames clip answer question prompt candidate better worse tie equal score overall "
    "alignment quality motion consistency artifact artifacts blur noise glitch flicker jump disappears appears "
    "changes moving moves static background foreground crop zoom select look closer detail details "
    "correct wrong matches mismatch missing extra colour color position relation first second both neither "
    "Image Video Answer Score Overall Tie Prompt Question obs_ image_ video_ _frame_ bbox_2d frames timestamps "
    "I see the a an is are in on of and or but so it this that which with not no yes at from by for has have "
    "shows show contains should needs check verify therefore because while whereas so"
)


@dataclass
class TinySizes:
    """Sizes of the tiny model. The defaults take seconds to build; raise them for a "small" model."""

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    num_kv_heads: int = 1
    intermediate_size: int = 128
    vision_hidden_size: int = 32
    vision_depth: int = 2
    vision_heads: int = 2
    vision_intermediate_size: int = 64
    vocab_size: int = 2048
    max_position_embeddings: int = 16384
    min_pixels: int = 28 * 28 * 4
    max_pixels: int = 448 * 448

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError("hidden_size must be divisible by num_heads")
        if self.num_heads % self.num_kv_heads:
            raise ValueError("num_heads must be divisible by num_kv_heads")
        if (self.hidden_size // self.num_heads) % 4:
            raise ValueError("head_dim (hidden_size / num_heads) must be a multiple of 4 for mRoPE")
        if self.vision_hidden_size % self.vision_heads:
            raise ValueError("vision_hidden_size must be divisible by vision_heads")


def mrope_section(head_dim: int) -> list[int]:
    """Split head_dim/2 rotary frequencies over (time, height, width), in Qwen's 2:3:3 proportion."""
    half = head_dim // 2
    t = max(1, round(half * 0.25))
    h = (half - t) // 2
    return [t, h, half - t - h]


def tokenizer_corpus() -> list[str]:
    """Text the tokenizer is trained on: every prompt the protocol renders, tool calls and domain words."""
    lines = [DOMAIN_WORDS, " ".join(w.capitalize() for w in DOMAIN_WORDS.split())]
    registry = default_registry()
    lines += [json.dumps(s) for s in registry.schemas()]
    for modality in ("image", "video", "answer"):
        for kind, dims in (("pairwise", []), ("pointwise", []), ("multi", ["Alignment", "Quality", "Motion"])):
            if modality == "answer" and kind == "multi":
                continue
            n = 1 if kind == "pointwise" else 2
            cands = ["The object is a red circle."] * n if modality == "answer" else ["x"] * n
            task = JudgeTask(
                prompt="a small red circle above a blue square",
                candidates=cands,
                modality=modality,
                kind=kind,
                dimensions=dims,
                allow_tie=True,
            )
            for tools_on in (True, False):
                lines.append(system_prompt(task, tools_on, Budget()))
            names = [f"{task.visual_kind}_{i + 1}" for i in range(n)]
            lines.append(user_text(task, names, cands if modality == "answer" else []))
    for i in range(0, 1001, 25):
        lines.append(
            f'{{"name": "crop", "arguments": {{"image": "image_1", "bbox_2d": [{i}, {i // 2}, {1000 - i}, 1000]}}}}'
        )
        lines.append(f'{{"name": "select_frames", "arguments": {{"video": "video_1", "frames": [{i}, {i + 1}]}}}}')
        lines.append(f"video_1_frame_{i} (t={i / 8:.2f}s): obs_{i % 13}: Score: {i % 10 + 1}")
    for n in ("Image", "Video", "Answer"):
        lines += [f"{n} 1 is better", f"{n} 2 is better", "Tie"]
    return lines


def build_tokenizer(vocab_size: int, extra_corpus: list[str] | None = None):
    """Train a byte-level BPE on the protocol corpus and wrap it as a Qwen-style fast tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: PLC0415
    from transformers import PreTrainedTokenizerFast  # noqa: PLC0415

    tok = Tokenizer(models.BPE())
    # Qwen2's pre-tokenizer: every digit is its own token, so " 546" is " ", "5", "4", "6" wherever it stands.
    # Plain byte-level BPE merged digits by corpus frequency ("5" "46" here, "58" "2" there): box coordinates
    # then had two spellings and dozens of two-digit classes, which a small model cannot learn to regress.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=QWEN_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = tokenizer_corpus() + list(extra_corpus or [])
    tok.train_from_iterator(corpus * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        extra_special_tokens={
            "image_token": "<|image_pad|>",
            "video_token": "<|video_pad|>",
            "vision_bos_token": "<|vision_start|>",
            "vision_eos_token": "<|vision_end|>",
        },
        model_max_length=32768,
        padding_side="left",
    )
    from tokenizers import AddedToken  # noqa: PLC0415

    fast.add_tokens([AddedToken(t, special=False, normalized=False) for t in PROTOCOL_TAGS])
    return fast


def qwen3_vl_chat_template() -> str:
    from trl.chat_template_utils import qwen3_vl_chat_template as template  # noqa: PLC0415

    return template


def build_processor(tokenizer, arch: str, sizes: TinySizes):
    from transformers import Qwen2VLImageProcessor  # noqa: PLC0415

    patch = 14 if arch == "qwen2_5_vl" else 16
    size = {"shortest_edge": sizes.min_pixels, "longest_edge": sizes.max_pixels}
    common = dict(patch_size=patch, merge_size=2, temporal_patch_size=2, size=size)
    image_processor = Qwen2VLImageProcessor(**common)
    if arch == "qwen2_5_vl":
        from transformers import Qwen2_5_VLProcessor, Qwen2VLVideoProcessor  # noqa: PLC0415

        video_processor = Qwen2VLVideoProcessor(**common)
        cls = Qwen2_5_VLProcessor
    else:
        from transformers import Qwen3VLProcessor, Qwen3VLVideoProcessor  # noqa: PLC0415

        video_processor = Qwen3VLVideoProcessor(**common)
        cls = Qwen3VLProcessor
    return cls(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=qwen3_vl_chat_template(),
    )


def build_config(tokenizer, arch: str, sizes: TinySizes):
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    head_dim = sizes.hidden_size // sizes.num_heads
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=sizes.hidden_size,
        intermediate_size=sizes.intermediate_size,
        num_hidden_layers=sizes.num_layers,
        num_attention_heads=sizes.num_heads,
        num_key_value_heads=sizes.num_kv_heads,
        max_position_embeddings=sizes.max_position_embeddings,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=True,
    )
    special = dict(
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    vision = dict(
        depth=sizes.vision_depth,
        hidden_size=sizes.vision_hidden_size,
        intermediate_size=sizes.vision_intermediate_size,
        num_heads=sizes.vision_heads,
        out_hidden_size=sizes.hidden_size,
        spatial_merge_size=2,
        temporal_patch_size=2,
    )
    if arch == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig  # noqa: PLC0415

        text["rope_parameters"] = {
            "rope_type": "default",
            "rope_theta": 1_000_000.0,
            "mrope_section": mrope_section(head_dim),
        }
        vision.update(patch_size=14, window_size=112, fullatt_block_indexes=[sizes.vision_depth - 1])
        config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True, **special)
    elif arch == "qwen3_vl":
        from transformers import Qwen3VLConfig  # noqa: PLC0415

        text["head_dim"] = head_dim
        text["rope_parameters"] = {
            "rope_type": "default",
            "rope_theta": 5_000_000.0,
            "mrope_section": mrope_section(head_dim),
            "mrope_interleaved": True,
        }
        vision.update(patch_size=16, num_position_embeddings=256, deepstack_visual_indexes=[0])
        config = Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True, **special)
    else:
        raise ValueError(f"arch must be qwen2_5_vl or qwen3_vl, not {arch!r}")
    return config


def refuse_nonempty(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose another folder or remove it")


@contextmanager
def folder_written_atomically(out: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``out`` and rename it to ``out`` when the block completes, so a half-written
    checkpoint never appears under ``out``; on any error the temporary folder is removed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def init_tiny(
    out_dir: str | os.PathLike,
    arch: Literal["qwen2_5_vl", "qwen3_vl"] = "qwen2_5_vl",
    sizes: TinySizes | None = None,
    seed: int = 0,
    extra_corpus: list[str] | None = None,
) -> Path:
    """Build the tiny model and write it as a Hugging Face folder (atomically: a half-written folder never
    appears under ``out_dir``). Returns the folder."""
    import torch  # noqa: PLC0415
    from transformers import AutoModelForImageTextToText, GenerationConfig  # noqa: PLC0415

    sizes = sizes or TinySizes()
    out = Path(out_dir)
    refuse_nonempty(out)
    tokenizer = build_tokenizer(sizes.vocab_size, extra_corpus)
    processor = build_processor(tokenizer, arch, sizes)
    config = build_config(tokenizer, arch, sizes)
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config)
    model.generation_config = GenerationConfig(
        eos_token_id=[config.text_config.eos_token_id, tokenizer.convert_tokens_to_ids("<|endoftext|>")],
        pad_token_id=config.text_config.pad_token_id,
        bos_token_id=config.text_config.bos_token_id,
        do_sample=False,
    )
    with folder_written_atomically(out) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        (tmp / "mmreward_tiny.json").write_text(
            json.dumps({"arch": arch, "seed": seed, "sizes": asdict(sizes)}, indent=2), encoding="utf-8"
        )
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("wrote tiny %s (%.2fM parameters) to %s", arch, n_params / 1e6, out)
    return out
