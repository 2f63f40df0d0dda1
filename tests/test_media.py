"""Media loading on good, corrupt, truncated and oversized inputs; video decoding and the frame cache."""

import base64
import io

import numpy as np
import pytest
from PIL import Image

from mmreward.media import (
    CLIP_CACHE,
    MediaError,
    MediaLimits,
    PixelBudget,
    load_image,
    open_video,
    sample_frame_indices,
    smart_resize,
)


def test_real_jpeg_pair_loads(real_image_pair):
    for path in real_image_pair:
        image = load_image(path)
        assert image.mode == "RGB" and image.width > 100


def test_image_sources_agree(quadrant_png):
    data = quadrant_png.read_bytes()
    b64 = base64.b64encode(data).decode()
    variants = [quadrant_png, str(quadrant_png), data, b64, "data:image/png;base64," + b64, Image.open(quadrant_png)]
    arrays = [np.asarray(load_image(v)) for v in variants]
    assert all(np.array_equal(arrays[0], a) for a in arrays[1:])


def test_corrupt_truncated_and_missing_files_name_the_file(tmp_path, quadrant_png):
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"this is not an image at all")
    with pytest.raises(MediaError, match="garbage.png: not a recognised image"):
        load_image(garbage)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(quadrant_png.read_bytes()[:200])
    with pytest.raises(MediaError, match="truncated.png: corrupt or truncated"):
        load_image(truncated)
    with pytest.raises(MediaError, match="no such image file"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(MediaError, match="invalid base64"):
        load_image("data:image/png;base64,@@@not-base64@@@")
    with pytest.raises(MediaError, match="empty"):
        load_image(b"")


def test_decompression_bomb_refused_before_decoding(tmp_path):
    # A 20000x20000 PNG of one colour is small on disk and 400 MP once decoded.
    path = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(path, optimize=True)
    assert path.stat().st_size < 200_000
    with pytest.raises(MediaError, match="above max_image_pixels"):
        load_image(path, MediaLimits(max_image_pixels=10_000_000))


def test_disallowed_format(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="TIFF")
    with pytest.raises(MediaError, match="format TIFF not allowed"):
        load_image(buf.getvalue())


def test_smart_resize_rule():
    assert smart_resize(224, 224, 28, 56 * 56, 448 * 448) == (224, 224)
    h, w = smart_resize(1080, 1920, 28, 56 * 56, 448 * 448)
    assert h % 28 == 0 and w % 28 == 0 and h * w <= 448 * 448 and abs(w / h - 16 / 9) < 0.15
    h, w = smart_resize(10, 10, 28, 56 * 56, 448 * 448)
    assert (h, w) == (56, 56)
    budget = PixelBudget(56 * 56, 112 * 112, 28)
    assert budget.fit(Image.new("RGB", (400, 400))).size == (112, 112)
    assert budget.tokens(Image.new("RGB", (400, 400))) == 16


def test_real_video_decodes_with_decord_and_pyav(real_video_pair):
    CLIP_CACHE.clear()
    a = open_video(real_video_pair[0], backend="decord")
    b = open_video(real_video_pair[0], backend="pyav")
    assert a.num_frames == b.num_frames == 126 and a.fps == pytest.approx(24.0) and b.fps == pytest.approx(24.0)
    fa, fb = a.frames([0, 60])[1], b.frames([0, 60])[1]
    assert fa.size == fb.size
    assert np.abs(np.asarray(fa, dtype=float) - np.asarray(fb, dtype=float)).mean() < 3.0


def test_frame_cache_avoids_redecoding(counting_video):
    CLIP_CACHE.clear()
    clip = open_video(counting_video)
    clip.frames([1, 2, 3])
    clip.frames([2, 3])
    assert clip.decode_calls == 1
    assert open_video(counting_video) is clip  # the other order of a swap reuses the decoded clip
    clip.frames([4])
    assert clip.decode_calls == 2


def test_sample_frame_indices():
    assert sample_frame_indices(100, 4) == [12, 37, 62, 87]
    assert sample_frame_indices(3, 8) == [0, 1, 2]
    assert sample_frame_indices(240, sample_fps=2, fps=24) == sample_frame_indices(240, 20)


def test_bad_videos(tmp_path, counting_video):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"junk" * 100)
    with pytest.raises(MediaError, match="bad.mp4: cannot decode video"):
        open_video(bad)
    with pytest.raises(MediaError, match="empty video file"):
        (tmp_path / "empty.mp4").write_bytes(b"")
        open_video(tmp_path / "empty.mp4")
    with pytest.raises(MediaError, match="above max_video_frames"):
        open_video(counting_video, MediaLimits(max_video_frames=10))
    with pytest.raises(MediaError, match="above max_video_seconds"):
        open_video(counting_video, MediaLimits(max_video_seconds=1.0))
    with pytest.raises(MediaError, match="out of range"):
        open_video(counting_video).frames([99])


def test_truncated_video(tmp_path, real_video_pair):
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(real_video_pair[0].read_bytes()[:5000])
    with pytest.raises(MediaError, match="truncated.mp4"):
        open_video(truncated).frames([100])
