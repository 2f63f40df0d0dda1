"""``select_frames``: look at chosen frames of a video at a higher resolution than the overview.

Frames are addressed by their index in the full clip (the overview captions give indices and timestamps)
or by timestamps in seconds. Decoding goes through the clip's frame cache (see ``mmreward.media``).
"""

from __future__ import annotations

import math

from mmreward.tools.base import Observation, Tool, ToolContext, ToolError


def _resolve_indices(clip, frames, timestamps) -> list[int]:
    if (frames is None) == (timestamps is None):
        raise ToolError("give exactly one of 'frames' (frame indices) or 'timestamps' (seconds)")
    values = frames if frames is not None else timestamps
    key = "frames" if frames is not None else "timestamps"
    if not isinstance(values, list) or not values:
        raise ToolError(f"{key} must be a non-empty list")
    if frames is not None:
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise ToolError(f"frames must be integer frame indices, got {values!r}")
        indices = list(values)
        bad = [i for i in indices if not 0 <= i < clip.num_frames]
        if bad:
            raise ToolError(f"frame indices {bad} out of range; this video has frames 0 to {clip.num_frames - 1}")
    else:
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            raise ToolError(f"timestamps must be numbers of seconds, got {values!r}")
        bad = [t for t in values if not 0 <= t <= clip.duration]
        if bad:
            raise ToolError(f"timestamps {bad} out of range; this video lasts {clip.duration:.2f} s")
        indices = [clip.index_at(t) for t in values]
    if len(set(indices)) != len(indices):
        raise ToolError(f"duplicate frames in {values!r}; ask for each frame once")
    return indices


def select_frames(
    ctx: ToolContext, video: str, frames: list[int] | None = None, timestamps: list[float] | None = None
) -> Observation:
    if not isinstance(video, str) or video not in ctx.videos:
        names = ", ".join(ctx.videos) or "none"
        raise ToolError(f"unknown video {video!r}; videos in this task: {names}")
    clip = ctx.videos[video]
    indices = _resolve_indices(clip, frames, timestamps)
    limit = ctx.settings.max_frames_per_call
    if len(indices) > limit:
        raise ToolError(f"asked for {len(indices)} frames; at most {limit} per call")
    images = [ctx.settings.frame_budget.fit(im) for im in clip.frames(indices)]
    names = ctx.reserve_images(len(indices))
    lines = []
    for name, index in zip(names, indices):
        ctx.provenance[name] = {"tool": "select_frames", "video": video, "frame": index}
        lines.append(f"{name}: {video} frame {index} at {clip.timestamp(index):.2f}s")
    return Observation(ok=True, text="\n".join(lines), images=list(zip(names, images)))


def select_frames_signature(video: str, frames: list[int] | None = None, timestamps: list[float] | None = None):
    """
    Look closely at chosen frames of a video, at a higher resolution than the overview. Frames are addressed by index in the full clip (see the overview captions) or by time in seconds.

    Args:
        video: Name of the video (video_1, video_2, ...).
        frames: Frame indices into the full clip, at most 4 per call.
        timestamps: Alternatively, times in seconds (use either frames or timestamps).
    """


select_frames_signature.__name__ = "select_frames"
SELECT_FRAMES = Tool.from_signature(select_frames_signature, select_frames)
