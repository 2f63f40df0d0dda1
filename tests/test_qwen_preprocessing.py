"""Images and video frames are prepared as qwen-vl-utils prepares them for the real checkpoints: the same sizes and
pixels (``fetch_image``), the same frame indices (its decord reader), on real files from ../shared/benchmarks."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from qwen_vl_utils.vision_process import _read_video_decord, fetch_image

from mmreward.media import PixelBudget, load_image, open_video, sample_frame_indices
from mmreward.protocol import VisualSettings

# Budgets of the protocol's defaults (overview 448^2, frames 224^2) and of the releases' processors.
BUDGETS = [(56 * 56, 448 * 448), (56 * 56, 224 * 224), (3136, 12845056), (65536, 16777216)]


@pytest.mark.parametrize("patch", [14, 16], ids=["qwen2_5_vl", "qwen3_vl"])
@pytest.mark.parametrize("budget", BUDGETS, ids=lambda b: f"{b[0]}-{b[1]}")
def test_images_match_fetch_image(real_image_pair, patch, budget):
    min_pixels, max_pixels = budget
    for path in real_image_pair:
        ours = PixelBudget(min_pixels, max_pixels, factor=patch * 2).fit(load_image(path))
        theirs = fetch_image({"image": str(path), "min_pixels": min_pixels, "max_pixels": max_pixels}, patch)
        assert ours.size == theirs.size
        assert np.array_equal(np.asarray(ours), np.asarray(theirs))  # same resampling, pixel for pixel


def test_transparency_is_composited_on_white_as_qwen_does(tmp_path):
    rgba = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    rgba.paste((200, 0, 0, 255), (16, 16, 48, 48))
    rgba.save(tmp_path / "a.png")
    ours = PixelBudget(56 * 56, 224 * 224).fit(load_image(tmp_path / "a.png"))
    theirs = fetch_image({"image": str(tmp_path / "a.png"), "min_pixels": 56 * 56, "max_pixels": 224 * 224})
    assert np.array_equal(np.asarray(ours), np.asarray(theirs)) and ours.getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize("n", [4, 8, 16])
def test_overview_frames_are_qwen_s_frames(real_video_pair, n):
    for path in real_video_pair:
        clip = open_video(path)
        _, meta, _ = _read_video_decord({"video": str(path), "nframes": n})
        assert sample_frame_indices(clip.num_frames, n, rule="qwen") == meta["frames_indices"]
    assert VisualSettings().frame_rule == "qwen"  # the default for real checkpoints
