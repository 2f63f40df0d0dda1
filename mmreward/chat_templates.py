"""One chat-template policy per model family, applied when a checkpoint is loaded.

The judge, distillation, SFT rendering, GRPO and the server all render conversations with the processor's template,
so the policy is set once, on the processor, by :func:`ensure_tool_template` (called by
:func:`mmreward.modeling.load_model`); every checkpoint a stage writes saves that processor, so it records the
template it was trained with.

* **Qwen2.5-VL.** The stock template renders no tool schemas and puts tool results under a ``tool`` role the model
  never saw, and TRL refuses it for GRPO with tools. It is replaced by ``templates/qwen2_5_vl_tools.jinja``: the
  Qwen2.5 family's tool format (schemas in the system turn, ``<tool_call>`` JSON, results in ``<tool_response>``
  inside a user turn) with Qwen2.5-VL's vision placeholders; tool-free conversations render exactly as before.
* **Qwen3-VL.** The stock template already does tools the family's way; it is kept.

A template that already passes the checks (TRL's tool-calling, prefix-preservation and tool-call parsing) is never
replaced, whatever the family.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from typing import Any

logger = logging.getLogger(__name__)

FAMILIES = {"qwen2_vl": "qwen2_5_vl", "qwen2_5_vl": "qwen2_5_vl", "qwen3_vl": "qwen3_vl", "qwen3_vl_moe": "qwen3_vl"}
TOOL_TEMPLATE_FILE = {"qwen2_5_vl": "qwen2_5_vl_tools.jinja"}


def family_of(model_type: str) -> str:
    """``qwen2_5_vl`` or ``qwen3_vl`` for a checkpoint's ``model_type``."""
    try:
        return FAMILIES[model_type]
    except KeyError:
        raise ValueError(f"model_type {model_type!r} is not one of {sorted(FAMILIES)}") from None


def stock_template(family: str) -> str:
    """The family's released chat template, byte for byte (TRL ships the originals)."""
    from trl import chat_template_utils as ctu  # noqa: PLC0415

    return {"qwen2_5_vl": ctu.qwen2_5_vl_chat_template, "qwen3_vl": ctu.qwen3_vl_chat_template}[family]


def tool_template(family: str) -> str:
    """The template the project uses for ``family``: the stock one where it does tools, else ours."""
    name = TOOL_TEMPLATE_FILE.get(family)
    if name is None:
        return stock_template(family)
    return resources.files("mmreward").joinpath("templates", name).read_text(encoding="utf-8")


def response_template() -> dict[str, Any]:
    """How a Qwen assistant turn is parsed back into content and tool calls (TRL's parser for the Qwen format)."""
    from trl.chat_template_utils import qwen3_template  # noqa: PLC0415

    return qwen3_template


@dataclass
class TemplateChecks:
    """What TRL's GRPO and the engine need of a chat template."""

    tools: bool  # renders tool schemas, the assistant's tool call and the tool's result
    prefix_preserving: bool  # earlier turns render the same whatever follows (TRL's multi-turn masking)
    parses_tool_calls: bool  # a rendered tool call parses back to the same name and arguments

    @property
    def ok(self) -> bool:
        return self.tools and self.prefix_preserving and self.parses_tool_calls

    def problems(self) -> list[str]:
        out = []
        if not self.tools:
            out.append("the chat template does not render tool calls and tool results")
        if not self.prefix_preserving:
            out.append("the chat template is not prefix-preserving")
        if not self.parses_tool_calls:
            out.append("a rendered tool call does not parse back (no response template for this chat template)")
        return out


def check_template(processor) -> TemplateChecks:
    """Run TRL's own checks, plus a round trip of a tool call through the template and the response parser."""
    from trl.chat_template_utils import is_chat_template_prefix_preserving, supports_tool_calling  # noqa: PLC0415

    tools = supports_tool_calling(processor)
    try:
        prefix = is_chat_template_prefix_preserving(processor)
    except Exception:  # noqa: BLE001 - a template that cannot render the probe is not prefix-preserving
        prefix = False
    return TemplateChecks(tools=tools, prefix_preserving=prefix, parses_tool_calls=tools and _round_trip(processor))


def _round_trip(processor) -> bool:
    from trl.chat_template_utils import add_response_schema  # noqa: PLC0415

    tok = getattr(processor, "tokenizer", processor)
    if getattr(tok, "response_template", None) is None and getattr(tok, "response_schema", None) is None:
        try:
            add_response_schema(processor)
        except ValueError:
            return False
    call = {"name": "crop", "arguments": {"image": "image_1", "bbox_2d": [0, 0, 500, 500]}}
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": call}]},
    ]
    try:
        text = processor.apply_chat_template(messages, tokenize=False)
        cut = text.rindex("<|im_start|>assistant\n") + len("<|im_start|>assistant\n")
        parsed = tok.parse_response(text[cut:], prefix=text[:cut])
    except Exception:  # noqa: BLE001 - any failure to render or parse means the round trip fails
        return False
    calls = parsed.get("tool_calls") or []
    return len(calls) == 1 and calls[0].get("function") == call


def ensure_tool_template(processor, model_type: str) -> str | None:
    """Give ``processor`` a template that does tools the family's way, and the parser for its tool calls.

    Returns a one-line note of what was changed (None when the template was kept as it was)."""
    family = family_of(model_type)
    tok = getattr(processor, "tokenizer", processor)
    ours = tool_template(family)
    note = None
    if processor.chat_template == ours:
        pass
    elif not check_template(processor).ok:
        was = "the stock template" if processor.chat_template == stock_template(family) else "its template"
        processor.chat_template = ours
        if tok is not processor:
            tok.chat_template = ours
        note = f"{was} cannot do tools; installed mmreward's {family} tool template"
        logger.info("%s", note)
    if processor.chat_template == ours and family in TOOL_TEMPLATE_FILE:
        # TRL recognises only the templates it ships; ours uses the same Qwen tool-call format, so the same parser.
        tok.response_template = response_template()
    return note
