"""Loading Qwen-VL judges: local checkpoint folders, attention implementation, dtype, device, LoRA.

Everything goes through the ``transformers`` Auto classes, so any local Qwen2-VL / Qwen2.5-VL / Qwen3-VL folder
works, whether a real checkpoint or one written by ``mmreward init-tiny``. A folder holding a PEFT adapter
(``adapter_config.json``) is loaded on top of its base model and can be merged.

The attention implementation is a setting and never falls back silently: asking for ``flash_attention_2``
without CUDA or without the ``flash-attn`` package is an error that says what to install or change.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SUPPORTED_MODEL_TYPES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe")
ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2")
DTYPES = ("auto", "float32", "bfloat16", "float16")


class ModelLoadError(ValueError):
    """A checkpoint or setting that cannot be loaded; the message says what to fix."""


@dataclass
class ModelSettings:
    """How to load a judge model."""

    dtype: str = "auto"  # auto: bfloat16 on CUDA, float32 on CPU
    device: str = "auto"  # auto: cuda if available, else cpu
    attn_implementation: str | None = None  # None: sdpa
    merge_lora: bool = False
    base_model: str | None = None  # base folder for an adapter whose adapter_config names an unreachable base

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ModelLoadError(f"dtype must be one of {DTYPES}, not {self.dtype!r}")
        if self.attn_implementation is not None and self.attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise ModelLoadError(
                f"attn_implementation must be one of {ATTN_IMPLEMENTATIONS}, not {self.attn_implementation!r}"
            )


def resolve_device(device: str) -> str:
    import torch  # noqa: PLC0415

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"device={device!r} but CUDA is not available on this machine; use device='cpu'")
    return device


def resolve_dtype(dtype: str, device: str):
    import torch  # noqa: PLC0415

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, dtype)


def check_attn_implementation(attn: str | None, device: str) -> str:
    """Validate the attention setting for this machine; returns the implementation to use."""
    attn = attn or "sdpa"
    if attn == "flash_attention_2":
        if not device.startswith("cuda"):
            raise ModelLoadError(
                "attn_implementation='flash_attention_2' needs a CUDA device; this run is on "
                f"{device!r}. Use attn_implementation='sdpa' on CPU."
            )
        if importlib.util.find_spec("flash_attn") is None:
            raise ModelLoadError(
                "attn_implementation='flash_attention_2' needs the flash-attn package: "
                "`pip install -e .[gpu]` on a CUDA machine, or use attn_implementation='sdpa'."
            )
    return attn


def read_model_type(path: str | os.PathLike) -> str:
    config_path = Path(path) / "config.json"
    if not config_path.is_file():
        raise ModelLoadError(f"{path}: no config.json; give a local Hugging Face checkpoint folder")
    try:
        model_type = json.loads(config_path.read_text(encoding="utf-8")).get("model_type", "")
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{config_path}: invalid JSON ({exc})") from None
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ModelLoadError(f"{path}: model_type {model_type!r} is not one of {SUPPORTED_MODEL_TYPES}")
    return model_type


PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")  # transformers 5 / the releases' layout


def has_processor(path: str | os.PathLike) -> bool:
    return any(Path(path, name).is_file() for name in PROCESSOR_FILES)


def adapter_chain(path: str | os.PathLike, base_model: str | None = None) -> tuple[Path, list[Path]]:
    """``(full checkpoint, [adapters from first to last])`` behind ``path``.

    A stage that trains LoRA on top of an adapter records that adapter as its base (``train.sft`` does), so RFT's
    adapter names SFT's, which names the model: each stage's weights are kept by following the chain. ``base_model``
    replaces the chain's root when the recorded one is not reachable (a run folder moved to another machine)."""
    adapters: list[Path] = []
    path = Path(path)
    while (path / "adapter_config.json").is_file():
        if path in adapters:
            raise ModelLoadError(f"{path}: the adapters' base_model_name_or_path entries form a loop")
        adapters.insert(0, path)
        config_path = path / "adapter_config.json"
        try:
            base = json.loads(config_path.read_text(encoding="utf-8")).get("base_model_name_or_path")
        except json.JSONDecodeError as exc:
            raise ModelLoadError(f"{config_path}: invalid JSON ({exc})") from None
        if not base:
            raise ModelLoadError(f"{config_path} names no base_model_name_or_path; pass the base folder")
        base_path = Path(base)
        if not base_path.is_absolute() and not base_path.is_dir() and (path.parent / base).is_dir():
            base_path = path.parent / base  # recorded relative to the adapter's folder
        if not any((base_path / f).is_file() for f in ("config.json", "adapter_config.json")):
            if base_model is None:
                raise ModelLoadError(
                    f"{path}: its base {base!r} is not a local checkpoint folder here; pass the base folder "
                    "(--base-model / ModelSettings.base_model) or merge the adapter where its base exists "
                    "(`mmreward merge`)"
                )
            base_path = Path(base_model)
        path = base_path
    return path, adapters


def load_model(path: str | os.PathLike, settings: ModelSettings | None = None) -> tuple[Any, Any]:
    """Load ``(model, processor)`` from a local folder (full checkpoint or PEFT adapter), in eval mode.

    An adapter is loaded on its base, following the chain of adapters a staged run wrote (see :func:`adapter_chain`);
    every adapter but the last is merged, the last too with ``merge_lora``. The processor gets the family's
    tool-calling chat template where its own cannot do tools (:mod:`mmreward.chat_templates`)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor  # noqa: PLC0415

    from mmreward.chat_templates import ensure_tool_template  # noqa: PLC0415

    settings = settings or ModelSettings()
    path = Path(path)
    if not path.is_dir():
        raise ModelLoadError(f"{path}: not a folder; give a local checkpoint folder (no hub downloads here)")
    device = resolve_device(settings.device)
    attn = check_attn_implementation(settings.attn_implementation, device)
    dtype = resolve_dtype(settings.dtype, device)

    root, adapters = adapter_chain(path, settings.base_model)
    model_type = read_model_type(root)
    model = AutoModelForImageTextToText.from_pretrained(root, dtype=dtype, attn_implementation=attn)
    for i, adapter in enumerate(adapters):
        last = i == len(adapters) - 1
        model = attach_adapter(model, adapter, merge=settings.merge_lora or not last)
    processor_dir = next((p for p in [*reversed(adapters), root] if has_processor(p)), root)
    processor = AutoProcessor.from_pretrained(processor_dir)
    ensure_tool_template(processor, model_type)
    model.to(device)
    model.eval()
    chain = " + ".join(str(p) for p in [root, *adapters])
    logger.info("loaded %s (%s, %s, attn=%s) on %s", chain, model.config.model_type, dtype, attn, device)
    return model, processor


def merge_checkpoint(path: str | os.PathLike, out: str | os.PathLike, base_model: str | None = None) -> Path:
    """Write the full checkpoint behind an adapter (its whole chain merged), with its processor and judge settings:
    what vLLM serves and what a ZeRO-3 run starts from. Runs on the CPU in float32 unless the base says otherwise."""
    import shutil  # noqa: PLC0415

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ModelLoadError(f"{out} exists and is not empty; choose another folder or remove it")
    root, _ = adapter_chain(path, base_model)
    dtype = json.loads((root / "config.json").read_text(encoding="utf-8")).get("dtype") or "float32"
    dtype = dtype if dtype in DTYPES else "float32"
    model, processor = load_model(
        path, ModelSettings(dtype=dtype, device="cpu", merge_lora=True, base_model=base_model)
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    for name in ("mmreward_judge.json", "generation_config.json"):
        src = next((p / name for p in (Path(path), root) if (p / name).is_file()), None)
        if src is not None and not (out / name).is_file():
            shutil.copy(src, out / name)
    return out


def attach_adapter(model, adapter_dir: str | os.PathLike, merge: bool = False, trainable: bool = False):
    """Load a PEFT LoRA adapter onto ``model``; ``merge=True`` folds it into the weights and returns a plain model."""
    from peft import PeftModel  # noqa: PLC0415

    peft_model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=trainable)
    return peft_model.merge_and_unload() if merge else peft_model


# Language-model linear layers only; the regex keeps LoRA off the vision tower's blocks.
LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
