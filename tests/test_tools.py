"""Tools on literal inputs: valid calls, every kind of bad call (as error observations), budgets."""

import numpy as np
import pytest
from conftest import quadrant_image

from mmreward.media import open_video
from mmreward.tools import Budget, ToolContext, ToolSettings, default_registry


@pytest.fixture
def ctx():
    return ToolContext(images={"image_1": quadrant_image(200)}, budget=Budget(max_tool_calls=10, max_images=6))


def test_crop_returns_the_region_upscaled(ctx):
    reg = default_registry()
    r = reg.call(ctx, "crop", {"image": "image_1", "bbox_2d": [0, 0, 500, 500]})
    assert r.ok and r.error is None and [n for n, _ in r.images] == ["obs_1"]
    region = r.images[0][1]
    assert min(region.size) >= ToolSettings().crop_min_side
    assert region.width % 28 == 0 and region.height % 28 == 0
    colours = np.asarray(region).reshape(-1, 3).mean(axis=0)
    assert colours[0] > 240 and colours[1] < 15 and colours[2] < 15  # all red: the top-left quadrant
    assert "obs_1" in r.text and ctx.provenance["obs_1"] == {
        "tool": "crop",
        "image": "image_1",
        "bbox_2d": [0, 0, 500, 500],
    }
    # an observation can be cropped again
    r2 = reg.call(ctx, "crop", {"image": "obs_1", "bbox_2d": [0, 0, 1000, 1000]})
    assert r2.ok and r2.images[0][0] == "obs_2"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"image": "image_1", "bbox_2d": [500, 0, 100, 500]}, "inverted"),
        ({"image": "image_1", "bbox_2d": [0, 0, 1200, 500]}, "out of range"),
        ({"image": "image_1", "bbox_2d": [-5, 0, 100, 500]}, "out of range"),
        ({"image": "image_1", "bbox_2d": [100, 100, 100, 500]}, "inverted or empty"),
        ({"image": "image_1", "bbox_2d": [100, 100, 110, 500]}, "too small"),
        ({"image": "image_1", "bbox_2d": [1, 2, 3]}, "four numbers"),
        ({"image": "image_1", "bbox_2d": ["a", 0, 10, 10]}, "numbers"),
        ({"image": "image_1", "bbox_2d": [0, 0, float("nan"), 10]}, "finite"),
        ({"image": "image_9", "bbox_2d": [0, 0, 500, 500]}, "unknown image"),
        ({"image": "image_1"}, "bad arguments"),
        ({"image": "image_1", "bbox_2d": [0, 0, 500, 500], "zoom": 2}, "unknown argument"),
    ],
)
def test_bad_crop_calls_are_error_observations(ctx, args, message):
    r = default_registry().call(ctx, "crop", args)
    assert not r.ok and r.images == [] and message in r.error and r.text.startswith("Error:")


def test_unknown_tool_and_non_object_arguments(ctx):
    reg = default_registry()
    assert "unknown tool" in reg.call(ctx, "rotate", {}).error
    assert "unknown tool" in reg.call(ctx, None, {}).error
    assert "JSON object" in reg.call(ctx, "crop", [1, 2]).error


def test_tool_call_budget(ctx):
    ctx.budget = Budget(max_tool_calls=2, max_images=None)
    reg = default_registry()
    ok = [reg.call(ctx, "crop", {"image": "image_1", "bbox_2d": [0, 0, 500, 500]}).ok for _ in range(3)]
    assert ok == [True, True, False]
    assert "budget used up" in reg.call(ctx, "crop", {"image": "image_1", "bbox_2d": [0, 0, 500, 500]}).error


def test_image_budget(counting_video):
    ctx = ToolContext(videos={"video_1": open_video(counting_video)}, budget=Budget(max_tool_calls=None, max_images=5))
    reg = default_registry()
    assert reg.call(ctx, "select_frames", {"video": "video_1", "frames": [0, 1, 2, 3]}).ok
    r = reg.call(ctx, "select_frames", {"video": "video_1", "frames": [4, 5]})
    assert not r.ok and "image budget" in r.error
    assert reg.call(ctx, "select_frames", {"video": "video_1", "frames": [4]}).ok


def test_select_frames_returns_the_right_frames(counting_video):
    clip = open_video(counting_video)
    ctx = ToolContext(videos={"video_1": clip})
    r = default_registry().call(ctx, "select_frames", {"video": "video_1", "frames": [3, 20]})
    assert r.ok and [n for n, _ in r.images] == ["obs_1", "obs_2"]
    brightness = [np.asarray(im).mean() for _, im in r.images]
    assert abs(brightness[0] - 30) < 6 and abs(brightness[1] - 200) < 6
    assert "video_1 frame 3 at 0.38s" in r.text and "frame 20 at 2.50s" in r.text
    # timestamps address frames too
    r = default_registry().call(ctx, "select_frames", {"video": "video_1", "timestamps": [1.0]})
    assert r.ok and "frame 8 at 1.00s" in r.text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"video": "video_1", "frames": [0, 24]}, "out of range"),
        ({"video": "video_1", "frames": [-1]}, "out of range"),
        ({"video": "video_1", "frames": [2, 2]}, "duplicate"),
        ({"video": "video_1", "frames": [0, 1, 2, 3, 4]}, "at most 4"),
        ({"video": "video_1", "frames": []}, "non-empty"),
        ({"video": "video_1", "frames": [1.5]}, "integer"),
        ({"video": "video_1", "timestamps": [99.0]}, "out of range"),
        ({"video": "video_1", "frames": [1], "timestamps": [0.0]}, "exactly one"),
        ({"video": "video_1"}, "exactly one"),
        ({"video": "video_7", "frames": [1]}, "unknown video"),
    ],
)
def test_bad_select_frames_calls(counting_video, args, message):
    ctx = ToolContext(videos={"video_1": open_video(counting_video)})
    r = default_registry().call(ctx, "select_frames", args)
    assert not r.ok and message in r.error


def test_schemas_are_function_schemas():
    schemas = default_registry().schemas()
    assert [s["function"]["name"] for s in schemas] == ["crop", "select_frames"]
    assert schemas[0]["function"]["parameters"]["required"] == ["image", "bbox_2d"]
