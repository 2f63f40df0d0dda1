"""``crop``: zoom into a region of an image.

Coordinates are relative, 0-1000 on each axis (``[x1, y1, x2, y2]``), as Qwen2.5-VL's grounding outputs are,
so the call does not depend on the resolution the model was shown. The region is cut from the
full-resolution source (not from the downscaled overview), upscaled so its shorter side reaches
``crop_min_side``, and fitted to the crop pixel budget.
"""

from __future__ import annotations

import math

from PIL import Image

from mmreward.tools.base import Observation, Tool, ToolContext, ToolError


def validate_bbox(bbox: object, min_box: float) -> tuple[float, float, float, float]:
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        raise ToolError("bbox_2d must be a list of four numbers [x1, y1, x2, y2] in 0-1000 coordinates")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
        raise ToolError(f"bbox_2d must hold numbers, got {bbox!r}")
    x1, y1, x2, y2 = (float(v) for v in bbox)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise ToolError("bbox_2d values must be finite")
    if min(x1, y1, x2, y2) < 0 or max(x1, y1, x2, y2) > 1000:
        raise ToolError(f"bbox_2d {list(bbox)} is out of range; every value must lie in 0-1000")
    if x2 <= x1 or y2 <= y1:
        raise ToolError(f"bbox_2d {list(bbox)} is inverted or empty; need x1 < x2 and y1 < y2")
    if x2 - x1 < min_box or y2 - y1 < min_box:
        raise ToolError(f"bbox_2d {list(bbox)} is too small; each side must span at least {min_box:g} units")
    return x1, y1, x2, y2


def crop_region(image: Image.Image, box: tuple[float, float, float, float], min_side: int) -> Image.Image:
    w, h = image.size
    x1, y1, x2, y2 = box
    px = (math.floor(x1 / 1000 * w), math.floor(y1 / 1000 * h), math.ceil(x2 / 1000 * w), math.ceil(y2 / 1000 * h))
    region = image.crop(px)
    short = min(region.size)
    if short < min_side:
        scale = min_side / short
        region = region.resize(
            (max(1, round(region.width * scale)), max(1, round(region.height * scale))), Image.Resampling.BICUBIC
        )
    return region


def crop_view(image: Image.Image, box, settings) -> Image.Image:
    """The view the crop tool returns for ``box`` (0-1000) of ``image`` under ``settings`` (a ToolSettings): the
    region, enlarged to the minimum side, fitted to the crop pixel budget."""
    return settings.crop_budget.fit(crop_region(image, tuple(box), settings.crop_min_side))


def crop(ctx: ToolContext, image: str, bbox_2d: list[float]) -> Observation:
    if not isinstance(image, str) or image not in ctx.images:
        raise ToolError(f"unknown image {image!r}; you can crop one of: {', '.join(ctx.image_names())}")
    s = ctx.settings
    box = validate_bbox(bbox_2d, s.crop_min_box)
    source = ctx.images[image]
    src_w = (box[2] - box[0]) / 1000 * source.width
    src_h = (box[3] - box[1]) / 1000 * source.height
    if min(src_w, src_h) < s.crop_min_source_pixels:
        raise ToolError(
            f"bbox_2d {list(bbox_2d)} covers only {src_w:.0f}x{src_h:.0f} pixels of {image}; choose a larger region"
        )
    region = crop_view(source, box, s)
    (name,) = ctx.reserve_images(1)
    ctx.provenance[name] = {"tool": "crop", "image": image, "bbox_2d": [float(v) for v in box]}
    coords = ", ".join(f"{v:g}" for v in box)
    return Observation(ok=True, text=f"{name}: crop of {image} at [{coords}].", images=[(name, region)])


def crop_signature(image: str, bbox_2d: list[float]):
    """
    Zoom into a rectangular region of an image to see small details. Returns the region enlarged as a new image that you can refer to (and crop again) by the name given in the answer.

    Args:
        image: Name of the image to crop: an input image (image_1, ...), a video frame (video_1_frame_12) or an earlier observation (obs_1, ...).
        bbox_2d: Four numbers [x1, y1, x2, y2] in relative coordinates from 0 to 1000 (top-left to bottom-right).
    """


crop_signature.__name__ = "crop"
CROP = Tool.from_signature(crop_signature, crop)
