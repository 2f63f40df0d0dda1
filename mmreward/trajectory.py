"""Trajectories: one judged item end to end, as stored in JSONL, and how to rebuild its images.

A :class:`Trajectory` keeps messages with media by reference, the tool trace, the verdict or parse failure, the
stop reason and token counts. SFT, rejection sampling and eval all consume these records; :func:`materialize`
replays the tool trace to turn one back into model inputs.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from mmreward.protocol import JudgeTask, build_conversation
from mmreward.settings import EngineSettings, settings_from_dict
from mmreward.tools import Budget, ToolContext, ToolRegistry, default_registry
from mmreward.verdict import Verdict


@dataclass
class Trajectory:
    """One judged item, end to end. Serializable: images are references (see ``images``)."""

    id: str
    task: dict[str, Any]
    order: list[int]
    tools_on: bool
    messages: list[dict[str, Any]] = field(default_factory=list)
    tool_trace: list[dict[str, Any]] = field(default_factory=list)
    verdict: dict[str, Any] | None = None
    parse_failure: str | None = None
    format_ok: bool = False
    stop_reason: str = "running"
    num_turns: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    peak_prompt_tokens: int = 0
    latency_s: float = 0.0
    images: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> provenance (input, frame, tool)
    settings: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    # In-memory only: the context with decoded images (for rewards, replays). Not serialized.
    context: ToolContext | None = field(default=None, repr=False, compare=False)

    @property
    def judge_task(self) -> JudgeTask:
        return JudgeTask.from_dict(self.task)

    @property
    def parsed_verdict(self) -> Verdict | None:
        return Verdict.from_dict(self.verdict) if self.verdict else None

    @property
    def final_text(self) -> str:
        for m in reversed(self.messages):
            if m["role"] == "assistant":
                return m["content"][0]["text"]
        return ""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self) if f.name != "context"}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trajectory:
        return cls(**{k: v for k, v in d.items() if k != "context"})


def write_trajectories(trajectories: Iterable[Trajectory], path: str | os.PathLike, append: bool = False) -> None:
    """Write JSONL; with ``append=False`` the file is replaced atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if append:
        with path.open("a", encoding="utf-8") as f:
            for t in trajectories:
                f.write(json.dumps(t.to_dict(), ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for t in trajectories:
            f.write(json.dumps(t.to_dict(), ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def read_trajectories(path: str | os.PathLike) -> list[Trajectory]:
    out = []
    with Path(path).open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(Trajectory.from_dict(json.loads(line)))
            except (json.JSONDecodeError, TypeError) as exc:
                raise ValueError(f"{path}:{lineno}: not a trajectory record ({exc})") from None
    return out


def settings_of(traj: Trajectory) -> EngineSettings:
    """The engine settings a trajectory was produced with (visual and tool budgets), as far as it recorded them."""
    return settings_from_dict(traj.settings or {})


def materialize(
    traj: Trajectory, registry: ToolRegistry | None = None, settings: EngineSettings | None = None
) -> ToolContext:
    """Rebuild every image a trajectory refers to (inputs, overview frames, tool observations).

    Records keep media by reference; tools are deterministic, so replaying the successful calls of the tool
    trace on the task's media reproduces the observation images exactly. SFT rendering and rejection
    sampling use this to turn JSONL records back into model inputs. ``settings`` must match the run's visual
    and tool settings; without ``settings`` they are read from the trajectory's own record of them.
    """
    settings = settings or settings_of(traj)
    registry = registry or default_registry()
    conv = build_conversation(
        traj.judge_task,
        traj.order,
        tools_on=traj.tools_on,
        visual=settings.visual,
        tool_settings=settings.tools,
        budget=Budget(max_tool_calls=None, max_images=None, max_tokens=None),
    )
    ctx = conv.context
    for call in traj.tool_trace:
        if not call["ok"]:
            continue
        result = registry.call(ctx, call["name"], call["arguments"])
        produced = [name for name, _ in result.images]
        if not result.ok or produced != call["observations"]:
            raise ValueError(
                f"trajectory {traj.id}: replaying {call['name']}({call['arguments']}) gave {produced or result.error}, "
                f"but the record says {call['observations']}; were the tool or visual settings changed?"
            )
    return ctx
