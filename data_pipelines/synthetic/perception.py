"""Pixel-level perception of the synthetic world, used by the oracle teachers.

The oracle does not read the scene it drew: it finds objects in the image it is shown (the overview, a
crop, a frame) by segmenting non-background pixels, and classifies each blob's colour and shape. So its
accuracy measures what information the view carries: high on crops, near chance on overviews where the
objects shrink to a few pixels. That is how the world shows that the tools matter.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage

from data_pipelines.synthetic.world import BACKGROUND, PALETTE, SHAPES, draw_shape

_PALETTE_NAMES = list(PALETTE)
_PALETTE_RGB = np.array([PALETTE[c] for c in _PALETTE_NAMES], dtype=np.float32)
_BG = np.array(BACKGROUND, dtype=np.float32)


@dataclass
class Blob:
    colour: str
    shape: str
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 in the view's pixels (x2, y2 exclusive)
    area: int
    shape_confidence: float  # IoU of the best shape template
    noise: float  # residual noise around the blob (0 = clean)
    sharpness: float  # share of the blob's pixels at full contrast (low = blurred)

    @property
    def centre(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2)

    @property
    def size(self) -> float:
        return max(self.box[2] - self.box[0], self.box[3] - self.box[1])


@cache
def _template(shape: str, w: int, h: int) -> np.ndarray:
    im = Image.new("L", (w, h), 0)
    draw_shape(ImageDraw.Draw(im), shape, (0, 0, w - 1, h - 1), 255)
    return np.asarray(im) > 127


def classify_colour(pixels: np.ndarray) -> str:
    """Nearest palette colour to the blob's most saturated pixels (its core, not its blended edge)."""
    dist_bg = np.abs(pixels - _BG).sum(axis=1)
    core = pixels[dist_bg >= np.quantile(dist_bg, 0.6)] if len(pixels) > 4 else pixels
    mean = core.mean(axis=0)
    return _PALETTE_NAMES[int(np.argmin(((_PALETTE_RGB - mean) ** 2).sum(axis=1)))]


def classify_shape(mask: np.ndarray) -> tuple[str, float]:
    h, w = mask.shape
    best, best_iou = SHAPES[0], -1.0
    for shape in SHAPES:
        t = _template(shape, w, h)
        iou = float((t & mask).sum() / max(1, (t | mask).sum()))
        if iou > best_iou:
            best, best_iou = shape, iou
    return best, best_iou


def perceive(image: Image.Image, threshold: float = 45.0, min_area: int = 3, denoise: bool = False) -> list[Blob]:
    """The objects visible in ``image``, largest first. ``denoise`` median-filters first (for zoomed-in views,
    where objects are many pixels wide; it would erase the few-pixel objects of an overview)."""
    raw = np.asarray(image.convert("RGB"), dtype=np.float32)
    # A median filter removes pixel noise (a quality artifact) before segmenting; the noise itself is
    # measured on the raw pixels.
    arr = np.asarray(image.convert("RGB").filter(ImageFilter.MedianFilter(3)), dtype=np.float32) if denoise else raw
    # Objects are saturated colours on a grey background: segment by chroma, which grey grain leaves alone.
    chroma = arr.max(axis=2) - arr.min(axis=2)
    mask = chroma > threshold
    labels, n = ndimage.label(mask)
    blobs = []
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        m = labels[sl] == i
        area = int(m.sum())
        if area < min_area:
            continue
        pix = arr[sl][m]
        colour = classify_colour(pix)
        shape, conf = classify_shape(m)
        # Quality: residual noise in the blob's neighbourhood and how much of it is at full contrast.
        ys, xs = sl
        pad = max(2, (ys.stop - ys.start) // 3)
        ry = slice(max(0, ys.start - pad), min(arr.shape[0], ys.stop + pad))
        rx = slice(max(0, xs.start - pad), min(arr.shape[1], xs.stop + pad))
        ring = raw[ry, rx]
        near_bg = ~ndimage.binary_dilation(mask[ry, rx], iterations=2)
        noise = float(np.abs(ring[near_bg] - _BG).mean()) if near_bg.any() else 0.0
        target = np.array(PALETTE[colour], dtype=np.float32)
        full = np.abs(pix - target).sum(axis=1) < 60
        sharp = float(full.mean())
        blobs.append(Blob(colour, shape, (xs.start, ys.start, xs.stop, ys.stop), area, conf, noise, sharp))
    blobs.sort(key=lambda b: -b.area)
    return blobs
