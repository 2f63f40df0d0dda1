"""Which engine answers: the local ``transformers`` model, or a vLLM (any OpenAI-compatible) server.

With ``vllm`` the judge server still drives the conversation (prompt rendering, tools, verdict parsing); vLLM
only generates turns, sending the protocol's ``tool`` messages and tool schemas so that a vLLM instance
serving an mmreward checkpoint renders them with the checkpoint's own chat template, exactly as in training.
Several vLLM replicas behind one URL, or tensor parallelism inside vLLM, is how serving scales past one GPU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from mmreward.generators import SamplingSettings
from mmreward.judge import Judge, JudgeSettings
from mmreward.rollout import RolloutEngine
from mmreward.tools import Budget

logger = logging.getLogger(__name__)


@dataclass
class BackendSettings:
    backend: str = "transformers"  # transformers | vllm
    model: str | None = None  # local checkpoint folder (transformers; for vllm, read for the vision patch size)
    vllm_url: str | None = None  # e.g. http://127.0.0.1:8001/v1
    vllm_model: str | None = None  # the model name vLLM serves
    vllm_api_key: str | None = None
    vllm_concurrency: int = 64
    device: str = "auto"
    dtype: str = "auto"
    attn_implementation: str | None = None
    max_new_tokens: int = 256  # per turn, unless a request asks for fewer/more (within limits)
    max_turns: int = 6
    max_tool_calls: int = 4
    overview_frames: int | None = None  # None: the checkpoint's recorded settings, else 8
    engine_batch: int = 32  # trajectories per generate call
    reuse_cache: bool = True  # transformers: keep each trajectory's KV cache between tool turns (batched)

    def __post_init__(self) -> None:
        if self.backend not in ("transformers", "vllm"):
            raise ValueError(f"backend must be 'transformers' or 'vllm', not {self.backend!r}")
        if self.backend == "transformers" and not self.model:
            raise ValueError("the transformers backend needs --model (a local checkpoint folder)")
        if self.backend == "vllm" and not self.vllm_url:
            raise ValueError("the vllm backend needs --vllm-url (the server's OpenAI base URL, ending in /v1)")


def vllm_chat_template(model_dir: str | None) -> str | None:
    """The tool template to send with each request when the served folder's own cannot do tools (vLLM renders with
    the folder's template unless a request names another); None when it can, or when the folder is not known here."""
    if model_dir is None:
        return None
    from transformers import AutoProcessor  # noqa: PLC0415

    from mmreward.chat_templates import check_template, family_of, tool_template  # noqa: PLC0415
    from mmreward.modeling import has_processor, read_model_type  # noqa: PLC0415

    if not has_processor(model_dir) or not Path(model_dir, "config.json").is_file():
        return None
    processor = AutoProcessor.from_pretrained(model_dir)
    if check_template(processor).ok:
        return None
    logger.info("%s: its chat template cannot do tools; sending mmreward's with each request", model_dir)
    return tool_template(family_of(read_model_type(model_dir)))


def build_judge(b: BackendSettings) -> Judge:
    from mmreward.settings import recorded_settings, resolve_engine_settings  # noqa: PLC0415

    model_dir = b.model if b.model and Path(b.model).is_dir() else None
    engine = resolve_engine_settings(
        model_dir,
        overview_frames=b.overview_frames,
        max_turns=b.max_turns,
        batch_size=b.engine_batch,
        budget=Budget(max_tool_calls=b.max_tool_calls),
    )
    if recorded_settings(model_dir) is not None:
        logger.info("using the visual and tool settings recorded in %s", b.model)
    sampling = SamplingSettings(max_new_tokens=b.max_new_tokens)
    if b.backend == "transformers":
        from mmreward.modeling import ModelSettings  # noqa: PLC0415

        return Judge.from_pretrained(
            b.model,
            JudgeSettings(),
            engine,
            sampling,
            ModelSettings(dtype=b.dtype, device=b.device, attn_implementation=b.attn_implementation),
            reuse_cache=b.reuse_cache,
        )
    from mmreward.remote import OpenAIGenerator, RemoteSettings  # noqa: PLC0415

    generator = OpenAIGenerator(
        RemoteSettings(
            base_url=b.vllm_url,
            model=b.vllm_model or "mmreward-judge",
            api_key=b.vllm_api_key,
            temperature=0.0,
            max_tokens=b.max_new_tokens,
            concurrency=b.vllm_concurrency,
            tool_role="tool",
            send_tools=True,
            chat_template=vllm_chat_template(model_dir),
            repetition_penalty=1.0,  # as the transformers backend judges, not the folder's generation config
        )
    )
    return Judge(RolloutEngine(generator, settings=engine), JudgeSettings())
