"""Options that several stages share: how a stage judges a records file before and after training."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass
class EvalArguments:
    """Judging ``eval_records`` with the trained model (greedy): accuracy overall, by category and by needs-tool."""

    eval_records: str | None = field(
        default=None, metadata={"help": "records JSONL to judge with the trained model (none: no evaluation)"}
    )
    eval_media_root: str | None = field(
        default=None, metadata={"help": "media folder of eval_records (default: the file's folder)"}
    )
    eval_limit: int | None = field(default=200, metadata={"help": "judge at most this many records (none: all)"})
    eval_tools: bool = field(default=True, metadata={"help": "let the judge crop and select frames"})
    eval_max_new_tokens: int = field(default=224, metadata={"help": "tokens per assistant turn when judging"})
    settings_file: str | None = field(
        default=None,
        metadata={
            "help": "engine settings JSON (the mmreward_judge.json format: pixel budgets, tool settings) to judge "
            "with, and in GRPO to roll out with, instead of what the checkpoint recorded; a synthetic world "
            "writes one in its folder"
        },
    )


EVAL_FIELDS = tuple(f.name for f in fields(EvalArguments))


def settings_overrides(settings_file: str | None) -> dict[str, Any]:
    """The visual and tool settings of ``settings_file`` as resolver overrides ({} without one)."""
    if not settings_file:
        return {}
    path = Path(settings_file)
    if not path.is_file():
        raise FileNotFoundError(
            f"settings_file {path} not found: give an mmreward_judge.json (a checkpoint's, or a synthetic world's)"
        )
    from mmreward.settings import settings_from_dict  # noqa: PLC0415

    s = settings_from_dict(json.loads(path.read_text()))
    return {"visual": s.visual, "tools": s.tools}
