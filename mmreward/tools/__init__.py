"""The protocol's tools: ``crop`` for images and ``select_frames`` for videos, behind one registry."""

from mmreward.tools.base import (
    Budget,
    Observation,
    Tool,
    ToolContext,
    ToolError,
    ToolRegistry,
    ToolResult,
    ToolSettings,
)
from mmreward.tools.crop import CROP
from mmreward.tools.select_frames import SELECT_FRAMES


def default_registry() -> ToolRegistry:
    """A registry with every built-in tool."""
    return ToolRegistry([CROP, SELECT_FRAMES])


__all__ = [
    "Budget",
    "CROP",
    "Observation",
    "SELECT_FRAMES",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolRegistry",
    "ToolResult",
    "ToolSettings",
    "default_registry",
]
