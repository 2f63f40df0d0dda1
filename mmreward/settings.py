"""Engine settings: what they hold, how a checkpoint records them, and the one resolver that decides the settings a
checkpoint is judged with.

In order: the settings the checkpoint recorded (``mmreward_judge.json``, written by every training stage; an adapter
without one inherits its chain's), else the caller's fallback, else the engine's defaults; then the processor's patch
and merge factors (pixel budgets are multiples of patch * merge: 28 px for Qwen2.5-VL, 32 for Qwen3-VL); then the
explicit overrides. The judge CLI, the server, eval, distillation, rejection sampling and the SFT/GRPO evaluations
all call :func:`resolve_engine_settings`, so no synthetic-world setting reaches a real checkpoint unless asked for.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from mmreward.media import DEFAULT_LIMITS, MediaLimits, PixelBudget
from mmreward.protocol import VisualSettings
from mmreward.tools import Budget, ToolSettings


@dataclass
class EngineSettings:
    max_turns: int = 6
    batch_size: int = 8
    budget: Budget = field(default_factory=Budget)
    visual: VisualSettings = field(default_factory=VisualSettings)
    tools: ToolSettings = field(default_factory=ToolSettings)
    verdict_mode: str = "lenient"  # strict | lenient: how the final answer is read
    max_context_tokens: int | None = None  # stop a trajectory whose prompt would exceed this
    limits: MediaLimits = DEFAULT_LIMITS  # media size/format limits applied when a task's media is loaded
    # Visual memory window: tool observations older than this many rounds leave the context as text stubs, so
    # the visual tokens in context stay bounded by the overview plus `visual_window` observations. None: off.
    visual_window: int | None = None

    def __post_init__(self) -> None:
        if self.max_turns < 1 or self.batch_size < 1:
            raise ValueError("max_turns and batch_size must be at least 1")
        if self.verdict_mode not in ("strict", "lenient"):
            raise ValueError("verdict_mode must be 'strict' or 'lenient'")
        if self.visual_window is not None and self.visual_window < 0:
            raise ValueError("visual_window must be >= 0 (or None for no window)")


def settings_to_dict(s: EngineSettings) -> dict[str, Any]:
    """The visual/tool part of engine settings as recorded in trajectories and checkpoints."""
    return {
        "max_turns": s.max_turns,
        "budget": s.budget.to_dict(),
        "visual": asdict(s.visual),
        "tools": asdict(s.tools),
        "visual_window": s.visual_window,
    }


ENGINE_SETTINGS_FILE = "mmreward_judge.json"


def save_engine_settings(model_dir: str | os.PathLike, settings: dict[str, Any] | EngineSettings) -> None:
    """Record in a checkpoint the visual and tool settings it was trained with, so the judge and the server use
    them by default (a model trained on 112x112 overviews should be shown 112x112 overviews)."""
    d = settings_to_dict(settings) if isinstance(settings, EngineSettings) else dict(settings)
    keep = {k: d[k] for k in ("max_turns", "visual", "tools", "visual_window") if k in d}
    Path(model_dir, ENGINE_SETTINGS_FILE).write_text(json.dumps(keep, indent=2))


def load_engine_settings(model_dir: str | os.PathLike) -> EngineSettings | None:
    path = Path(model_dir, ENGINE_SETTINGS_FILE)
    return settings_from_dict(json.loads(path.read_text())) if path.is_file() else None


def settings_from_dict(s: dict[str, Any]) -> EngineSettings:
    visual, tools = VisualSettings(), ToolSettings()
    if "visual" in s:
        v = s["visual"]
        extra = {k: v[k] for k in ("overview_fps", "min_overview_frames", "max_video_tokens") if k in v}
        extra["frame_rule"] = v.get("frame_rule", "centre")  # recorded before the field existed: the old rule
        visual = VisualSettings(
            PixelBudget(**v["image_budget"]), v["overview_frames"], PixelBudget(**v["frame_budget"]), **extra
        )
    if "tools" in s:
        t = dict(s["tools"])
        t["crop_budget"] = PixelBudget(**t["crop_budget"])
        t["frame_budget"] = PixelBudget(**t["frame_budget"])
        tools = ToolSettings(**t)
    return EngineSettings(
        max_turns=s.get("max_turns", 6), visual=visual, tools=tools, visual_window=s.get("visual_window")
    )


ENGINE_FIELDS = {f.name for f in fields(EngineSettings)}


def recorded_settings(model_dir: str | os.PathLike | None) -> EngineSettings | None:
    """The settings recorded in ``model_dir``, or in the first checkpoint of its adapter chain that has them."""
    if not model_dir or not Path(model_dir).is_dir():
        return None
    from mmreward.modeling import ModelLoadError, adapter_chain  # noqa: PLC0415

    try:
        root, adapters = adapter_chain(model_dir)
    except ModelLoadError:
        root, adapters = Path(model_dir), []
    for folder in [Path(model_dir), *reversed(adapters), root]:
        found = load_engine_settings(folder)
        if found is not None:
            return found
    return None


def patch_factor(model_dir: str | os.PathLike | None = None, processor=None) -> int | None:
    """Pixels per visual token side (patch * merge) of ``processor``, or of the processor in ``model_dir``."""
    if processor is None and model_dir is not None:
        from mmreward.modeling import ModelLoadError, adapter_chain, has_processor  # noqa: PLC0415

        try:
            root, adapters = adapter_chain(model_dir)
        except ModelLoadError:
            root, adapters = Path(model_dir), []
        folder = next((p for p in [Path(model_dir), *reversed(adapters), root] if has_processor(p)), None)
        if folder is None:
            return None
        factor = _saved_patch_factor(folder)
        if factor is not None:  # read from the saved config: the caller loads the processor itself, once
            return factor
        from transformers import AutoProcessor  # noqa: PLC0415

        processor = AutoProcessor.from_pretrained(folder)
    if processor is None:
        return None
    ip = processor.image_processor
    return int(ip.patch_size) * int(ip.merge_size)


def _saved_patch_factor(folder: Path) -> int | None:
    """patch * merge from a saved processor: ``processor_config.json``'s image processor (transformers 5), else the
    releases' ``preprocessor_config.json``."""
    for name, key in (("processor_config.json", "image_processor"), ("preprocessor_config.json", None)):
        path = folder / name
        if not path.is_file():
            continue
        config = json.loads(path.read_text())
        config = config.get(key) or {} if key else config
        if "patch_size" in config and "merge_size" in config:
            return int(config["patch_size"]) * int(config["merge_size"])
    return None


def resolve_engine_settings(
    model_dir: str | os.PathLike | None = None,
    processor=None,
    *,
    fallback: EngineSettings | None = None,
    overview_frames: int | None = None,
    **overrides: Any,
) -> EngineSettings:
    """Recorded settings (else ``fallback``, else defaults), sized for the processor, then ``overrides``.

    ``overrides`` are :class:`EngineSettings` fields (``visual=...`` and ``tools=...`` replace the recorded ones, as
    the synthetic world's settings do when asked for); ``None`` values are ignored. ``overview_frames`` replaces just
    that field of the visual settings."""
    unknown = set(overrides) - ENGINE_FIELDS
    if unknown:
        raise TypeError(f"not EngineSettings fields: {sorted(unknown)}")
    settings = recorded_settings(model_dir) or fallback or EngineSettings()
    settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    if overview_frames is not None:
        settings = replace(settings, visual=replace(settings.visual, overview_frames=overview_frames))
    factor = patch_factor(model_dir, processor)
    if factor is not None and settings.visual.image_budget.factor != factor:
        settings = replace(
            settings, visual=settings.visual.with_factor(factor), tools=settings.tools.with_factor(factor)
        )
    return settings
