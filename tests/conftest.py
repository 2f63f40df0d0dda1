"""Shared fixtures: the tiny model (built once per session), real media from ../shared/benchmarks, and
small media files made here (PNG, MP4) with known content."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(os.environ.get("MMREWARD_BENCHMARKS", REPO.parent / "shared" / "benchmarks"))
MJ_IMAGES = BENCH / "mj_bench" / "quality_objects_indoor_sample" / "images"
VIDEOS = BENCH / "videogen_rewardbench" / "videos"


@pytest.fixture(scope="session")
def real_image_pair() -> tuple[Path, Path]:
    pair = (MJ_IMAGES / "furniture_0.jpg", MJ_IMAGES / "furniture_0_edited_furniture.jpg")
    if not all(p.is_file() for p in pair):
        pytest.fail(f"benchmark images missing under {MJ_IMAGES}; set MMREWARD_BENCHMARKS")
    return pair


@pytest.fixture(scope="session")
def real_video_pair() -> tuple[Path, Path]:
    pair = (VIDEOS / "example_1_A.mp4", VIDEOS / "example_1_B.mp4")
    if not all(p.is_file() for p in pair):
        pytest.fail(f"benchmark videos missing under {VIDEOS}; set MMREWARD_BENCHMARKS")
    return pair


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from mmreward.tiny import init_tiny

    return init_tiny(tmp_path_factory.mktemp("models") / "tiny", "qwen2_5_vl")


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from mmreward.modeling import load_model

    return load_model(tiny_model_dir)


def quadrant_image(size: int = 200) -> Image.Image:
    """Four coloured quadrants: red TL, green TR, blue BL, white BR."""
    arr = np.zeros((size, size, 3), dtype=np.uint8)
    h = size // 2
    arr[:h, :h] = (255, 0, 0)
    arr[:h, h:] = (0, 255, 0)
    arr[h:, :h] = (0, 0, 255)
    arr[h:, h:] = (255, 255, 255)
    return Image.fromarray(arr)


@pytest.fixture
def quadrant_png(tmp_path) -> Path:
    path = tmp_path / "quadrants.png"
    quadrant_image().save(path)
    return path


@pytest.fixture(scope="session")
def counting_video(tmp_path_factory) -> Path:
    """A 24-frame clip whose frame k has brightness 10*k (so a decoded frame tells its index)."""
    from mmreward.media import save_video

    frames = [np.full((64, 96, 3), 10 * k, dtype=np.uint8) for k in range(24)]
    path = tmp_path_factory.mktemp("videos") / "counting.mp4"
    save_video(frames, path, fps=8)
    return path
