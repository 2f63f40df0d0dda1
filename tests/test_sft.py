"""SFT end to end on the tiny model: recipes parse, a short run writes a model that the judge loads, checkpoints
resume exactly after kill -9, and two data-parallel CPU processes train together."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from data_pipelines.distill import DistillSettings, distill
from data_pipelines.records import read_records
from data_pipelines.synthetic.generate import WORLD_TOOLS, WORLD_VISUAL, generate_world
from data_pipelines.synthetic.oracle import OracleTeacher
from mmreward.settings import EngineSettings
from train.sft import STAGING, last_checkpoint, parse

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted(
    p
    for p in (REPO / "train" / "recipes").glob("*/*.yaml")
    if p.name not in ("grpo.yaml", "pipeline.yaml", "vision.yaml")
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("sftdata")
    generate_world(root / "world", seed=7, splits={"train": 16, "val": 8})
    records = read_records(root / "world" / "train.jsonl")
    distill(
        records,
        OracleTeacher({r.id: r for r in records}),
        root / "distill",
        DistillSettings(swap="both", engine=EngineSettings(visual=WORLD_VISUAL, tools=WORLD_TOOLS)),
        media_root=root / "world",
    )
    return root


def args(data, model_dir, out, *extra):
    return [
        "--config",
        str(REPO / "train/recipes/tiny-cpu/sft.yaml"),
        "--model_name_or_path",
        str(model_dir),
        "--train_files",
        str(data / "distill" / "kept.jsonl"),
        "--settings_file",
        str(data / "world" / "mmreward_judge.json"),
        "--eval_records",
        "",
        "--output_dir",
        str(out),
        "--per_device_train_batch_size",
        "4",
        "--logging_steps",
        "1",
        "--report_to",
        "none",
        *extra,
    ]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_recipe_parses(recipe):
    """Every key is a known field (TrlParser rejects unknown ones). GPU recipes ask for bf16, which SFTConfig
    refuses to construct on a CPU machine, so they are parsed with a CPU override and checked from the YAML."""
    raw = yaml.safe_load(recipe.read_text())
    cpu = ["--bf16", "false", "--use_cpu", "true"] if raw.get("bf16") else []
    if "eval_see" in raw:  # stage 0 of the embedded default: the SFT trainer plus its own options
        from mmreward_tiny.see import SeeArguments

        script, see, cfg, model_args = parse(["--config", str(recipe), *cpu], "see", extra=(SeeArguments,))
        assert see.eval_see and script.chat_files
    else:
        script, cfg, model_args = parse(["--config", str(recipe), *cpu])
    assert (script.train_files or script.chat_files) and cfg.output_dir and model_args.model_name_or_path
    if "tiny-cpu" in str(recipe):
        assert cfg.use_cpu and not cfg.bf16 and script.pack
    else:
        assert raw["bf16"] and raw["attn_implementation"] == "flash_attention_2" and model_args.use_peft
        assert raw["gradient_checkpointing"] and script.pack and cfg.max_length >= 8192


@pytest.mark.parametrize("name", ["ddp_cpu_2proc", "zero3", "fsdp_qwen2_5_vl", "fsdp_qwen3_vl"])
def test_accelerate_configs(name):
    cfg = yaml.safe_load((REPO / "train" / "accelerate" / f"{name}.yaml").read_text())
    assert cfg["num_processes"] >= 2 and cfg["distributed_type"]


def test_sft_runs_and_the_judge_loads_the_result(data, tiny_model_dir, tmp_path, capsys):
    from mmreward.cli import main

    out = tmp_path / "sft"
    code = main(
        [
            "train",
            "sft",
            *args(
                data,
                tiny_model_dir,
                out,
                "--max_steps",
                "3",
                "--eval_records",
                str(data / "world" / "val.jsonl"),
                "--eval_limit",
                "4",
            ),
        ]
    )
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    s = manifest["summary"]
    assert s["global_step"] == 3 and s["train_trajectories"] > 20 and s["eval"]["items"] == 4
    logged = {k for row in manifest["log_history"] for k in row}
    assert {"loss", "learning_rate", "tokens_per_second", "loss_answer", "loss_tool_call", "loss_think"} <= logged
    assert (out / "curves.png").is_file() and (out / "config.json").is_file()
    from mmreward.judge import Judge
    from mmreward.server import BackendSettings, build_judge

    # The checkpoint records the visual/tool settings of its training trajectories (the synthetic world's), and
    # the judge and the server use them by default.
    assert (out / "mmreward_judge.json").is_file()
    judge = Judge.from_pretrained(out)
    assert judge.engine.settings.visual == WORLD_VISUAL and judge.engine.settings.tools == WORLD_TOOLS
    served = build_judge(BackendSettings(model=str(out)))
    assert served.engine.settings.visual == WORLD_VISUAL
    assert build_judge(BackendSettings(model=str(out), overview_frames=2)).engine.settings.visual.overview_frames == 2


def test_resume_after_kill_is_exact(data, tiny_model_dir, tmp_path):
    """kill -9 after the first checkpoint, re-run the same command: the result equals an uninterrupted run."""
    import torch
    from safetensors.torch import load_file

    steps = ["--max_steps", "24", "--save_steps", "4", "--learning_rate", "3e-3"]
    ref = tmp_path / "ref"
    r = subprocess.run(
        [sys.executable, "-m", "train.sft", *args(data, tiny_model_dir, ref, *steps)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert r.returncode == 0, r.stderr[-3000:]

    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "train.sft", *args(data, tiny_model_dir, out, *steps)]
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "checkpoint-4" / "trainer_state.json").is_file():
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert last_checkpoint(out) is not None and not (out / "model.safetensors").exists()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming from" in r.stdout
    a, b = load_file(ref / "model.safetensors"), load_file(out / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4)
    assert not (out / STAGING).exists() or not any((out / STAGING).iterdir())


def test_rerun_of_a_finished_run_trains_no_further(data, tiny_model_dir, tmp_path):
    """Re-running a run that ended mid-epoch (max_steps) resumes from its last checkpoint and stops there: the
    same step count and the same weights, not one step more (as a pipeline re-run after a later step failed)."""
    import torch
    from safetensors.torch import load_file

    out = tmp_path / "done"
    cmd = [
        sys.executable,
        "-m",
        "train.sft",
        *args(data, tiny_model_dir, out, "--max_steps", "6", "--save_steps", "3"),
    ]
    for run in range(2):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
        assert r.returncode == 0, r.stderr[-3000:]
        summary = json.loads((out / "manifest.json").read_text())["summary"]
        assert summary["global_step"] == 6, (run, summary)
        if run == 0:
            first = load_file(out / "model.safetensors")
    assert summary["resumed_from"] == str(out / "checkpoint-6")
    again = load_file(out / "model.safetensors")
    for k in first:
        torch.testing.assert_close(first[k], again[k], atol=0, rtol=0)


def test_incomplete_checkpoints_are_ignored(tmp_path):
    (tmp_path / "checkpoint-3").mkdir()
    (tmp_path / "checkpoint-3" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-9").mkdir()  # no trainer_state.json: never renamed into place
    (tmp_path / STAGING / "checkpoint-12").mkdir(parents=True)
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-3")


def test_two_processes_with_accelerate(data, tiny_model_dir, tmp_path):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(REPO / "train/accelerate/ddp_cpu_2proc.yaml"),
        "-m",
        "train.sft",
        *args(data, tiny_model_dir, out, "--max_steps", "2", "--per_device_train_batch_size", "2"),
    ]
    r = subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    summary = json.loads((out / "manifest.json").read_text())["summary"]
    assert summary["world_size"] == 2 and summary["global_step"] == 2


def test_lora_with_frozen_vision_tower(data, tiny_model_dir, tmp_path):
    """LoRA through TRL's peft_config on the language model only; the frozen vision tower does not move."""
    from safetensors.torch import load_file

    from mmreward.modeling import load_model
    from train.sft import main

    out = tmp_path / "lora"
    assert (
        main(
            args(
                data,
                tiny_model_dir,
                out,
                "--max_steps",
                "2",
                "--use_peft",
                "true",
                "--lora_r",
                "4",
                "--freeze_vision_tower",
                "true",
                "--learning_rate",
                "1e-2",
            )
        )
        == 0
    )
    assert (out / "adapter_config.json").is_file() and not (out / "model.safetensors").exists()
    adapter = load_file(out / "adapter_model.safetensors")
    # LoRA on the language model; the projector (freeze_projector: false) trains in full through modules_to_save
    assert adapter and all("language_model" in k or ".visual.merger." in k for k in adapter)
    assert any(".visual.merger." in k for k in adapter)
    summary = json.loads((out / "manifest.json").read_text())["summary"]
    assert summary["frozen_parameters"] > 0
    from mmreward.modeling import ModelSettings

    model, _ = load_model(out, ModelSettings(merge_lora=True))  # base + adapter merged, projector copy in place
    base, _ = load_model(tiny_model_dir)
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    trained_vis, base_vis = inner.model.visual.state_dict(), base.model.visual.state_dict()
    assert trained_vis.keys() == base_vis.keys()
    for k, v in base_vis.items():
        if not k.startswith("merger."):
            assert (trained_vis[k] == v).all(), k
    assert any(not (trained_vis[k] == v).all() for k, v in base_vis.items() if k.startswith("merger."))


def test_rft_pair_end_to_end(data, tiny_model_dir, tmp_path):
    """`mmreward data reject` on a checkpoint, then `mmreward train rft` on its accepted traces plus cold-start data."""
    from mmreward.cli import main

    sft = tmp_path / "sft"
    assert main(["train", "sft", *args(data, tiny_model_dir, sft, "--max_steps", "2")]) == 0
    rej = tmp_path / "rejection"
    assert (
        main(
            [
                "data",
                "reject",
                "--model",
                str(sft),
                "--records",
                str(data / "world" / "val.jsonl"),
                "--out",
                str(rej),
                "--k",
                "2",
                "--limit",
                "3",
                "--max-new-tokens",
                "32",
                "--world",
            ]
        )
        == 0
    )
    report = json.loads((rej / "report.json").read_text())
    assert report["groups"]["all"]["samples"] == 6 and (rej / "grpo_pool.jsonl").is_file()
    rft = tmp_path / "rft"
    rft_args = args(data, sft, rft, "--max_steps", "2")
    rft_args[rft_args.index("--train_files") + 1 : rft_args.index("--train_files") + 2] = [
        str(rej / "accepted.jsonl"),
        str(data / "distill" / "kept.jsonl"),
    ]
    rft_args[rft_args.index("--config") + 1] = str(REPO / "train/recipes/tiny-cpu/rft.yaml")
    assert main(["train", "rft", *rft_args]) == 0
    manifest = json.loads((rft / "manifest.json").read_text())
    assert manifest["stage"] == "rft" and manifest["summary"]["global_step"] == 2


def test_full_finetune_with_frozen_vision_tower(data, tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    from train.sft import main

    out = tmp_path / "full"
    assert (
        main(
            args(
                data,
                tiny_model_dir,
                out,
                "--max_steps",
                "2",
                "--freeze_vision_tower",
                "true",
                "--learning_rate",
                "1e-2",
                "--warmup_steps",
                "0",
            )
        )
        == 0
    )
    before, after = load_file(tiny_model_dir / "model.safetensors"), load_file(out / "model.safetensors")
    vision = [k for k in before if "visual" in k and "merger" not in k]
    language = [k for k in before if "layers" in k and "visual" not in k]
    assert vision and language
    assert all((before[k] == after[k]).all() for k in vision)
    assert any((before[k] != after[k]).any() for k in language)


def test_crop_rows_and_per_file_see_limits(tiny_model_dir, tmp_path):
    """One-crop rows render as the judge's turn does (the prompt, then the crop, then the question; loss on the
    answer only), and SFT's ``chat_limit`` takes one N for every see file or one per file."""
    from PIL import Image

    from mmreward.modeling import load_model
    from mmreward_tiny.curriculum.compare import generate_compare
    from mmreward_tiny.curriculum.crops import generate_crops
    from train.render import IGNORE, ChatRowsDataset, Renderer
    from train.sft import SFTScriptArguments, build_datasets

    generate_crops(tmp_path / "crops", 3, seed=0)
    generate_compare(tmp_path / "compare", 5, seed=0, n_val=1)
    _, processor = load_model(tiny_model_dir)
    crops = tmp_path / "crops" / "train.jsonl"
    row = json.loads(crops.read_text().splitlines()[0])
    ex = ChatRowsDataset(crops, Renderer(processor))[0]
    w, h = Image.open(tmp_path / "crops" / row["images"][0]).size  # the pixels as the crop tool returns them
    assert ex.image_grid_thw.tolist() == [[1, h // 14, w // 14]] and max(w, h) >= 224
    text = processor.tokenizer.decode(ex.input_ids.tolist())
    assert text.index(row["labels"][0]) < text.index("<|image_pad|>") < text.index(row["question"])
    trained = processor.tokenizer.decode(
        [t for t, lab in zip(ex.input_ids.tolist(), ex.labels.tolist()) if lab != IGNORE]
    )
    assert trained == row["answer"] + "<|im_end|>"

    files = [str(tmp_path / "compare" / "train.jsonl"), str(crops)]
    n_crops = len(crops.read_text().splitlines())
    for limit, want in (([], 5 + n_crops), ([2], 4), ([4, 1], 5)):
        _, _, info = build_datasets(SFTScriptArguments(chat_files=files, chat_limit=limit), processor, 4096)
        assert info["chat_examples"] == want, (limit, info)
    with pytest.raises(ValueError, match="chat_limit has 3 values for 2 chat_files"):
        build_datasets(SFTScriptArguments(chat_files=files, chat_limit=[1, 2, 3]), processor, 4096)


def test_example_cache_bounds_memory_and_renders_the_same(tiny_model_dir, tmp_path):
    """Rendered examples are kept up to the byte budget; past it they are rendered again on each access, and a
    re-rendered example is identical to a cached one (so the budget changes memory, never the data)."""
    import torch

    from mmreward.modeling import load_model
    from mmreward_tiny.curriculum.crops import generate_crops
    from train.render import ChatRowsDataset, ExampleCache, Renderer
    from train.sft import SFTScriptArguments, build_datasets

    generate_crops(tmp_path / "crops", 3, seed=0)
    crops = tmp_path / "crops" / "train.jsonl"
    _, processor = load_model(tiny_model_dir)
    full = ChatRowsDataset(crops, Renderer(processor), cache=ExampleCache(None))
    full[0]
    one = full.cache.bytes  # row 0's bytes
    bounded = ChatRowsDataset(crops, Renderer(processor), cache=ExampleCache(one))  # room for exactly one row
    n = len(full)
    assert n >= 3
    for _ in range(2):
        for i in range(n):
            a, b = full[i], bounded[i]
            for f in ("input_ids", "labels", "kinds", "mm_token_type_ids", "pixel_values", "image_grid_thw"):
                assert torch.equal(getattr(a, f), getattr(b, f)), (i, f)
    assert len(bounded.cache) == 1 and bounded.cache.bytes == one and bounded.cache.uncached == 2 * (n - 1)
    assert len(full.cache) == n and full.cache.uncached == 0

    _, _, info = build_datasets(SFTScriptArguments(chat_files=[str(crops)], cache_gb=0), processor, 4096)
    assert info["chat_examples"] == n and info["cached_examples"] == 0 and info["tokens"] > 0


def test_lookup_rows_render_without_images(tiny_model_dir, tmp_path):
    """Stage 0's text-only warm-up rows go through the same dataset: no image tokens, loss on the answer only."""
    from mmreward.modeling import load_model
    from mmreward_tiny.curriculum.lookup import generate_lookup
    from train.render import IGNORE, ChatRowsDataset, Renderer

    generate_lookup(tmp_path / "lk", 4, seed=0, n_val=2)
    _, processor = load_model(tiny_model_dir)
    ds = ChatRowsDataset(tmp_path / "lk" / "train.jsonl", Renderer(processor))
    row = json.loads((tmp_path / "lk" / "train.jsonl").read_text().splitlines()[0])
    ex = ds[0]
    assert ex.pixel_values is None and ex.image_grid_thw is None
    text = processor.tokenizer.decode(ex.input_ids.tolist())
    assert row["question"] in text and "<|image_pad|>" not in text
    trained = processor.tokenizer.decode(
        [t for t, lab in zip(ex.input_ids.tolist(), ex.labels.tolist()) if lab != IGNORE]
    )
    assert trained == row["answer"] + "<|im_end|>"


def test_stage_zero_learning_to_see(tiny_model_dir, tmp_path):
    """Stage 0 trains on the learning-to-see rows: one-turn chats, loss on the answer only."""
    from mmreward.cli import main
    from mmreward.modeling import load_model
    from mmreward_tiny.curriculum.questions import generate_see, read_see
    from train.render import IGNORE, ChatRowsDataset, Renderer

    generate_see(tmp_path / "see", n=12, seed=1)
    _, processor = load_model(tiny_model_dir)
    ds = ChatRowsDataset(tmp_path / "see" / "train.jsonl", Renderer(processor))
    row, ex = read_see(tmp_path / "see" / "train.jsonl")[0], ds[0]
    trained = processor.tokenizer.decode(
        [t for t, lab in zip(ex.input_ids.tolist(), ex.labels.tolist()) if lab != IGNORE]
    )
    assert trained == row["answer"] + "<|im_end|>"
    out = tmp_path / "stage0"
    assert (
        main(
            [
                "tiny",
                "see",
                "--config",
                str(REPO / "train/recipes/tiny-cpu/see.yaml"),
                "--model_name_or_path",
                str(tiny_model_dir),
                "--chat_files",
                str(tmp_path / "see" / "train.jsonl"),
                "--eval_see",
                str(tmp_path / "see" / "val.jsonl"),
                "--eval_see_limit",
                "6",
                "--output_dir",
                str(out),
                "--max_steps",
                "2",
                "--report_to",
                "none",
            ]
        )
        == 0
    )
    summary = json.loads((out / "manifest.json").read_text())["summary"]
    assert summary["chat_examples"] == 12 and summary["train_trajectories"] == 0 and summary["stage"] == "see"
    perception = summary["perception"]  # held-out exact-match accuracy, by view and level
    assert perception["items"] == 6 and 0.0 <= perception["accuracy"] <= 1.0 and "all" in perception["groups"]


def test_perception_diagnostics_locate_and_contrast(tiny_model):
    """Stage 0's perception report says what kind of question fails, whether crop boxes beat a constant box, and
    whether image features still differ between an object and the background."""
    from PIL import Image, ImageDraw

    from mmreward_tiny.see import locate_metrics, match_calls_right, question_kind, visual_contrast

    assert question_kind("Where is the red circle?") == "where"
    assert question_kind("Locate the objects.") == "locate"
    assert question_kind("Where are the objects, and what colours are they?") == "locate"
    assert question_kind("How many blue squares are there?") == "count"
    assert question_kind("What changes between the two frames?") == "change"
    assert question_kind("Describe the image.") == "caption"
    assert question_kind("Which image shows a red cross?") == "which_image"
    # text-only lookup rows: labelled items above, the question on the last line
    assert (
        question_kind("[Answer 1]\ntwo red squares.\n[Answer 2]\na blue cross.\n\nWhat is in Answer 2?")
        == "name_image"
    )
    assert question_kind("Video 1:\na red cross.\nVideo 2:\na blue cross.\n\nWhich video shows a red cross?") == (
        "which_image"
    )

    # comparison rows: the question on the last line; each crop's match call scored on its own
    row = {
        "question": "Prompt: A red cross.\nobs_1 (the crop of image_1) shows a red cross.\n"
        "obs_2 (the crop of image_2) shows a blue cross.\nWhat do you see, and does it match the prompt?",
        "match": [True, False],
    }
    assert question_kind(row["question"]) == "compare"
    one, two = (
        "In obs_1 (the crop of image_1) I see a red cross.",
        "In obs_2 (the crop of image_2) I see a blue cross.",
    )
    assert match_calls_right(row, f"{one} It shows what was asked. {two} But there is no red cross.") == [True, True]
    assert match_calls_right(row, f"{one} But there is no red cross. {two} That matches the prompt.") == [False, False]
    assert match_calls_right(row, f"{one} This agrees with the description.") == [True, False]  # obs_2 unsaid
    assert match_calls_right(row, "a red cross.") == [False, False]

    truth = [[0, 0, 100, 100], [900, 900, 1000, 1000]]
    perfect = locate_metrics([(t, list(t)) for t in truth])
    assert perfect["mean_iou"] == 1.0 and perfect["median_centre_error"] == 0.0 and perfect["box_found"] == 1.0
    # Always the mean box: exactly the constant-box baseline, so no better than it.
    constant = locate_metrics([(t, [450, 450, 550, 550]) for t in truth])
    assert constant["median_centre_error"] == constant["constant_box_median_centre_error"] > 500
    missing = locate_metrics([(truth[0], None), (truth[1], list(truth[1]))])
    assert missing["box_found"] == 0.5 and missing["median_centre_error"] == 1000.0

    model, processor = tiny_model
    blank = Image.new("RGB", (112, 112), (230, 230, 230))
    dot = blank.copy()
    ImageDraw.Draw(dot).ellipse((60, 20, 72, 32), fill=(200, 30, 30))
    assert visual_contrast(model, processor, [blank]) == 0.0  # every token the same: nothing to see
    assert visual_contrast(model, processor, [dot]) > 0.01  # the object's tokens stand out


def test_length_grouped_batches(data, tiny_model_dir, tmp_path, monkeypatch):
    """``train_sampling_strategy: group_by_length`` reaches transformers' sampler through the ``length`` column:
    the first batch holds the longest example and every batch is cut from a length-sorted mega-batch."""
    import train.sft
    from train.sft import main

    seen, lengths = [], []
    collate = train.sft.IndexCollator.__call__

    def spy(self, rows):
        lengths[:] = self.datasets["train"].lengths
        seen.append([len(self.datasets[r["split"]][int(r["idx"])]) for r in rows if r["split"] == "train"])
        return collate(self, rows)

    monkeypatch.setattr(train.sft.IndexCollator, "__call__", spy)
    out = tmp_path / "grouped"
    extra = ["--max_steps", "3", "--train_sampling_strategy", "group_by_length", "--save_strategy", "no"]
    assert main(args(data, tiny_model_dir, out, *extra)) == 0
    batches = [b for b in seen if b]
    assert len(batches) >= 3 and all(b == sorted(b, reverse=True) for b in batches), batches
    assert batches[0][0] == max(lengths) and len(set(lengths)) > 4
