"""What every tool shares: the per-trajectory context, budgets, observations and the registry.

A tool is a plain function ``(ctx, **arguments) -> Observation`` plus a JSON schema. The registry validates
the call's shape (known tool, arguments an object), charges the budget, runs the tool and turns *any*
failure into an error observation, so a model's bad call never raises into the engine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from mmreward.media import PixelBudget, VideoClip

logger = logging.getLogger(__name__)


class ToolError(Exception):
    """Raised inside a tool for an invalid call; the registry turns it into an error observation."""


@dataclass(frozen=True)
class ToolSettings:
    """Resolution and validity rules for the tools (pixel budgets are for what the model sees)."""

    crop_min_side: int = 224  # the crop is upscaled so its shorter side is at least this many pixels
    crop_budget: PixelBudget = PixelBudget(min_pixels=56 * 56, max_pixels=448 * 448)
    crop_min_box: float = 20.0  # minimum box side in 0-1000 units (2% of the image side)
    crop_min_source_pixels: int = 4  # minimum box side in source pixels
    frame_budget: PixelBudget = PixelBudget(min_pixels=56 * 56, max_pixels=336 * 336)
    max_frames_per_call: int = 4

    def with_factor(self, factor: int) -> ToolSettings:
        """The same budgets for a vision tower with another patch*merge factor (32 for Qwen3-VL)."""
        from dataclasses import replace  # noqa: PLC0415

        return replace(
            self, crop_budget=self.crop_budget.with_factor(factor), frame_budget=self.frame_budget.with_factor(factor)
        )


@dataclass
class Budget:
    """Per-trajectory limits. ``None`` means unlimited."""

    max_tool_calls: int | None = 4
    max_images: int | None = 12  # observation images added by tools
    max_tokens: int | None = 2048  # generated tokens over the whole trajectory

    def to_dict(self) -> dict[str, int | None]:
        return {"max_tool_calls": self.max_tool_calls, "max_images": self.max_images, "max_tokens": self.max_tokens}


@dataclass
class Observation:
    """What a tool returns: text for the model, images (named, in order), and whether the call was valid."""

    ok: bool
    text: str
    images: list[tuple[str, Image.Image]] = field(default_factory=list)
    error: str | None = None

    @classmethod
    def failure(cls, message: str) -> Observation:
        return cls(ok=False, text=f"Error: {message}", error=message)


@dataclass
class ToolContext:
    """The media one trajectory can look at, and what it has spent.

    ``images`` maps names the model may use (``image_1``, ``video_1_frame_12``, ``obs_3``) to full-resolution
    images; ``videos`` maps ``video_1`` ... to decoded-on-demand clips. Observation images get names
    ``obs_1``, ``obs_2`` ... in the order they are produced.
    """

    images: dict[str, Image.Image] = field(default_factory=dict)
    videos: dict[str, VideoClip] = field(default_factory=dict)
    settings: ToolSettings = field(default_factory=ToolSettings)
    budget: Budget = field(default_factory=Budget)
    tool_calls: int = 0
    observation_images: int = 0
    # Where each observation image came from, so trajectories can be replayed without storing pixels.
    provenance: dict[str, dict[str, Any]] = field(default_factory=dict)

    def reserve_images(self, n: int) -> list[str]:
        """Names for ``n`` new observation images; raises ToolError when the image budget would be exceeded."""
        limit = self.budget.max_images
        if limit is not None and self.observation_images + n > limit:
            raise ToolError(
                f"image budget used up ({self.observation_images} of {limit} images shown); give your final answer now"
            )
        names = [f"obs_{self.observation_images + k + 1}" for k in range(n)]
        self.observation_images += n
        return names

    def image_names(self) -> list[str]:
        return list(self.images)


ToolFn = Callable[..., Observation]


@dataclass
class Tool:
    name: str
    fn: ToolFn
    description: str
    parameters: dict[str, Any]
    signature: Callable[..., Any] | None = None  # the typed, documented signature the schema was read from

    @classmethod
    def from_signature(cls, signature: Callable[..., Any], fn: ToolFn) -> Tool:
        """A tool whose schema is read from ``signature``'s type hints and Google-style docstring by
        ``transformers.utils.get_json_schema``: the same reading TRL applies to a GRPO environment's methods, so the
        schemas the judge is prompted with and the ones GRPO renders are identical by construction."""
        from transformers.utils import get_json_schema  # noqa: PLC0415

        f = get_json_schema(signature)["function"]
        return cls(f["name"], fn, f["description"], f["parameters"], signature)

    def schema(self) -> dict[str, Any]:
        """OpenAI/Qwen function schema, as passed to ``apply_chat_template(tools=...)``."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


@dataclass
class ToolResult:
    """One executed call, as kept in the trajectory's tool trace."""

    name: str
    arguments: Any
    ok: bool
    text: str
    error: str | None
    latency_s: float
    images: list[tuple[str, Image.Image]] = field(default_factory=list)

    def trace(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "arguments": self.arguments,
            "ok": self.ok,
            "error": self.error,
            "latency_s": round(self.latency_s, 6),
            "observations": [name for name, _ in self.images],
        }


class ToolRegistry:
    """Maps tool names to tools; runs calls safely against a :class:`ToolContext`."""

    def __init__(self, tools: list[Tool] | None = None) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools or []:
            self.register(tool)

    def register(self, tool: Tool) -> None:
        if tool.name in self._tools:
            raise ValueError(f"tool {tool.name!r} registered twice")
        self._tools[tool.name] = tool

    def __contains__(self, name: str) -> bool:
        return name in self._tools

    def names(self) -> list[str]:
        return list(self._tools)

    def get(self, name: str) -> Tool:
        return self._tools[name]

    def schemas(self, names: list[str] | None = None) -> list[dict[str, Any]]:
        return [self._tools[n].schema() for n in (names or self._tools)]

    def call(self, ctx: ToolContext, name: Any, arguments: Any) -> ToolResult:
        """Run one call. Never raises: every problem becomes an error observation in the result."""
        start = time.perf_counter()

        def done(obs: Observation) -> ToolResult:
            return ToolResult(
                name=str(name),
                arguments=arguments,
                ok=obs.ok,
                text=obs.text,
                error=obs.error,
                latency_s=time.perf_counter() - start,
                images=obs.images,
            )

        if not isinstance(name, str) or name not in self._tools:
            return done(Observation.failure(f"unknown tool {name!r}; available tools: {', '.join(self._tools)}"))
        if not isinstance(arguments, dict):
            return done(Observation.failure(f"arguments of {name} must be a JSON object"))
        b = ctx.budget
        if b.max_tool_calls is not None and ctx.tool_calls >= b.max_tool_calls:
            return done(
                Observation.failure(f"tool budget used up ({b.max_tool_calls} calls); give your final answer now")
            )
        ctx.tool_calls += 1
        tool = self._tools[name]
        allowed = set(tool.parameters.get("properties", {}))
        unknown = sorted(set(arguments) - allowed)
        if unknown:
            return done(Observation.failure(f"{name} got unknown argument(s) {unknown}; expected {sorted(allowed)}"))
        try:
            obs = tool.fn(ctx, **arguments)
        except ToolError as exc:
            obs = Observation.failure(str(exc))
        except TypeError as exc:  # missing required arguments and the like
            obs = Observation.failure(f"bad arguments for {name}: {exc}")
        except Exception as exc:  # a tool bug must not end the trajectory; log it loudly
            logger.exception("tool %s failed", name)
            obs = Observation.failure(f"{name} failed: {type(exc).__name__}: {exc}")
        for obs_name, image in obs.images:
            ctx.images[obs_name] = image  # later calls may crop an observation
        return done(obs)
