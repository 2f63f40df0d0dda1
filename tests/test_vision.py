"""Vision pretraining: per-cell labels follow the drawn scene, and `mmreward tiny vision` teaches a real tiny
Qwen-VL vision tower to read them, saving a full checkpoint whose language model is untouched."""

from __future__ import annotations

import json
import random

import pytest
import torch

from data_pipelines.synthetic.world import SHAPES, Obj, Scene
from mmreward_tiny.curriculum.vision import COLOURS, cell_labels, random_scene


def test_cells_hold_the_object_that_covers_them():
    # A 40-px red square in the top-left 56x56 quarter of a 112-px view, a 4x4 grid of 28-px cells.
    scene = Scene(112, [Obj("square", "red", 28, 28, 40), Obj("circle", "blue", 90, 90, 20)])
    cells = cell_labels(scene, 112, 4)
    at = lambda r, c: (cells.shape[r * 4 + c], cells.colour[r * 4 + c])  # noqa: E731
    square, red = SHAPES.index("square"), COLOURS.index("red")
    assert at(0, 0) == at(0, 1) == at(1, 0) == at(1, 1) == (square, red)
    assert at(3, 3) == (SHAPES.index("circle"), COLOURS.index("blue"))
    background = (len(SHAPES), len(COLOURS))
    assert at(0, 3) == at(3, 0) == at(2, 1) == background
    assert cells.row == [r for r in range(4) for _ in range(4)]
    assert cells.col == list(range(4)) * 4


def test_the_object_drawn_last_owns_the_cells_it_covers():
    under = Obj("square", "green", 56, 56, 100)
    over = Obj("cross", "yellow", 56, 56, 100)
    cells = cell_labels(Scene(112, [under, over]), 112, 4)
    # The cross's arms cover the middle cells; the corners show the green square underneath.
    assert cells.shape[5] == SHAPES.index("cross") and cells.colour[5] == COLOURS.index("yellow")
    assert cells.shape[0] == SHAPES.index("square") and cells.colour[0] == COLOURS.index("green")


def test_scenes_are_reproducible_and_in_range():
    a = random_scene(random.Random(3), 112, (0.1, 0.45), 3)
    b = random_scene(random.Random(3), 112, (0.1, 0.45), 3)
    assert a.to_dict() == b.to_dict()
    for o in a.objects:
        assert 11.2 <= o.size <= 50.4 and o.size / 2 <= o.x <= 112 - o.size / 2


def test_labels_need_whole_cells():
    with pytest.raises(ValueError, match="whole number"):
        cell_labels(Scene(112, []), 112, 5)


@pytest.fixture(scope="module")
def pretrained(tiny_model_dir, tmp_path_factory):
    from mmreward_tiny.vision import main

    out = tmp_path_factory.mktemp("vision") / "vision"
    # The defaults' object sizes and a high rate: colour is the first thing the tower learns (about 100 steps).
    argv = ["--model_name_or_path", str(tiny_model_dir), "--output_dir", str(out), "--max_steps", "120",
            "--per_device_train_batch_size", "16", "--eval_images", "48", "--eval_steps", "60", "--logging_steps", "20",
            "--learning_rate", "3e-3"]  # fmt: skip
    assert main(argv) == 0
    return tiny_model_dir, out


def test_vision_pretraining_teaches_colour_and_keeps_the_language_model(pretrained):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    src, out = pretrained
    summary = json.loads((out / "manifest.json").read_text())["summary"]
    # Qwen2.5-VL's tower has only relative (rotary) positions: no row/column targets.
    assert summary["targets"] == ["shape", "colour"] and summary["absolute_positions"] is False
    before, after = summary["before"]["colour"], summary["after"]["colour"]
    assert after > max(before + 0.2, 2 * summary["chance"]["colour"]), summary
    assert summary["after"]["background"] > 0.9
    assert (out / "curves.png").is_file()

    old = AutoModelForImageTextToText.from_pretrained(src, dtype=torch.float32)
    new = AutoModelForImageTextToText.from_pretrained(out, dtype=torch.float32)
    AutoProcessor.from_pretrained(out)  # the tokenizer and processor travel with it
    old_p, new_p = dict(old.named_parameters()), dict(new.named_parameters())
    changed = {n for n in old_p if not torch.equal(old_p[n], new_p[n])}
    assert changed and all(".visual." in f".{n}" for n in changed), sorted(changed)[:5]
    assert any("merger" in n for n in changed) and any("patch_embed" in n for n in changed)
    assert (out / "mmreward_tiny.json").is_file()


def test_position_targets_need_absolute_positions(tiny_model_dir, tmp_path):
    from mmreward_tiny.vision import main

    argv = ["--model_name_or_path", str(tiny_model_dir), "--output_dir", str(tmp_path / "v"), "--max_steps", "1",
            "--position_targets", "on"]  # fmt: skip
    with pytest.raises(ValueError, match="no absolute position embeddings"):
        main(argv)
    assert not (tmp_path / "v").exists()


def test_qwen3_vl_tower_gets_row_and_column_targets(tmp_path):
    from mmreward.tiny import init_tiny
    from mmreward_tiny.vision import main

    src = init_tiny(tmp_path / "q3", "qwen3_vl")
    argv = ["--model_name_or_path", str(src), "--output_dir", str(tmp_path / "v"), "--max_steps", "2",
            "--per_device_train_batch_size", "4", "--eval_images", "8", "--eval_steps", "1"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads((tmp_path / "v" / "manifest.json").read_text())["summary"]
    assert summary["targets"] == ["shape", "colour", "row", "col"] and summary["absolute_positions"] is True
    assert summary["grid"] == 4  # 112 px at Qwen3-VL's 16-px patches, merged 2x2: 128 px, 4 x 4 tokens


def test_report_section_shows_before_after_and_chance(pretrained):
    from mmreward_tiny.report import vision_lines

    _, out = pretrained
    summary = json.loads((out / "manifest.json").read_text())["summary"]
    text = "\n".join(vision_lines(summary))
    after = summary["after"]["colour"]
    assert f"| colour | {summary['before']['colour']:.3f} | {after:.3f} | 0.167 |" in text
    assert "only rotary positions" in text and "| row |" not in text
    assert vision_lines(None) == []


def test_the_recipe_parses():
    from pathlib import Path

    from mmreward_tiny.vision import parse

    recipe = Path(__file__).resolve().parents[1] / "train" / "recipes" / "tiny-cpu" / "vision.yaml"
    args = parse(["--config", str(recipe)])
    assert args.max_steps > 0 and args.position_targets == "auto" and args.object_size == [0.1, 0.45]
