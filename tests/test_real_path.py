"""The real path: checkpoints shaped like the Qwen2.5-VL-7B / Qwen3-VL-8B releases (real config fields, token ids,
processor settings, generation config, stock chat templates) through the template policy, `check-model`, the
settings resolver, LoRA stage chaining, and every stage end to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from mmreward.chat_templates import check_template, stock_template, tool_template
from mmreward.cli import main
from mmreward.modeling import ModelLoadError, adapter_chain, load_model
from mmreward.release_like import FIRST_ADDED_ID, RELEASES, init_like

REPO = Path(__file__).resolve().parents[1]
FAMILIES = ["qwen2_5_vl", "qwen3_vl"]


@pytest.fixture(scope="module")
def like(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("like")
    return {f: init_like(root / f, f) for f in FAMILIES}


@pytest.mark.parametrize("family", FAMILIES)
def test_shaped_like_the_release(like, family):
    from transformers import AutoConfig, AutoProcessor, GenerationConfig

    folder = like[family]
    config = AutoConfig.from_pretrained(folder)
    spec = RELEASES[family]
    assert config.model_type == family and config.text_config.vocab_size == spec["vocab_size"]
    assert (config.image_token_id, config.video_token_id) == (151655, 151656)
    assert (config.vision_start_token_id, config.vision_end_token_id) == (151652, 151653)
    assert config.text_config.max_position_embeddings == spec["max_position_embeddings"]
    assert config.vision_config.patch_size == spec["patch_size"] and config.vision_config.spatial_merge_size == 2
    if family == "qwen2_5_vl":
        assert config.vision_config.fullatt_block_indexes == [1, 3] and config.vision_config.window_size == 112
    else:
        assert config.vision_config.deepstack_visual_indexes == [1, 2, 3]
    processor = AutoProcessor.from_pretrained(folder)
    tok = processor.tokenizer
    for i, (content, _) in enumerate(spec["added"]):
        assert tok.convert_tokens_to_ids(content) == FIRST_ADDED_ID + i, content
    assert tok.convert_tokens_to_ids("<|im_end|>") == 151645 and tok.pad_token_id == 151643
    # Qwen2.5-VL has no <think>/<answer> tokens: they are text, as in the release
    assert len(tok.encode("<think>", add_special_tokens=False)) > (1 if family == "qwen2_5_vl" else 0)
    assert processor.chat_template == stock_template(family)  # byte for byte
    generation = GenerationConfig.from_pretrained(folder)
    assert generation.eos_token_id == [151645, 151643] and generation.do_sample
    assert (folder / "preprocessor_config.json").is_file() and (folder / "video_preprocessor_config.json").is_file()


def test_stock_qwen2_5_vl_template_gets_the_tool_template_and_renders_the_same_without_tools(like):
    from transformers import AutoProcessor

    stock = AutoProcessor.from_pretrained(like["qwen2_5_vl"])
    assert not check_template(stock).tools  # what TRL's GRPOTrainer refuses
    _, processor = load_model(like["qwen2_5_vl"])
    assert processor.chat_template == tool_template("qwen2_5_vl") and check_template(processor).ok
    image = Image.new("RGB", (56, 56), "red")
    conversations = [
        [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        [
            {"role": "system", "content": [{"type": "text", "text": "You judge."}]},
            {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "which?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "<think>x</think><answer>Image 1</answer>"}]},
            {"role": "user", "content": "again"},
        ],
        [{"role": "user", "content": [{"type": "video", "video": "v.mp4"}, {"type": "text", "text": "ok"}]}],
    ]
    for conv in conversations:
        for gen in (False, True):
            ours = processor.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen)
            assert ours == stock.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen)
    # with tools: schemas in the system turn, results in <tool_response> inside a user turn, images as placeholders
    tools = [{"type": "function", "function": {"name": "crop", "parameters": {"type": "object", "properties": {}}}}]
    conv = conversations[1][:2] + [
        {"role": "assistant", "content": "<think>look</think><tool_call>{}</tool_call>"},
        {"role": "tool", "content": [{"type": "image", "image": image}, {"type": "text", "text": "obs_1"}]},
    ]
    text = processor.apply_chat_template(conv, tools=tools, tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\nYou judge.\n\n# Tools\n") and '"name": "crop"' in text
    assert (
        "<|im_start|>user\n<tool_response>\n<|vision_start|><|image_pad|><|vision_end|>obs_1\n</tool_response>" in text
    )
    assert "<|im_start|>tool" not in text


def test_qwen3_vl_keeps_its_stock_template(like):
    _, processor = load_model(like["qwen3_vl"])
    assert processor.chat_template == stock_template("qwen3_vl") and check_template(processor).ok


@pytest.mark.parametrize("which", ["qwen2_5_vl", "qwen3_vl", "tiny"])
def test_check_model_passes(like, tiny_model_dir, which, capsys):
    folder = tiny_model_dir if which == "tiny" else like[which]
    assert main(["check-model", str(folder), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ready"] and set(report["stages"]) == {"judge", "sft", "grpo", "serve", "vllm"}


def test_check_model_names_what_to_fix(like, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(like["qwen2_5_vl"], broken)
    config = json.loads((broken / "config.json").read_text())
    config["image_token_id"] = 5
    (broken / "config.json").write_text(json.dumps(config))
    assert main(["check-model", str(broken)]) == 1
    out = capsys.readouterr().out
    assert "judge    NO     tokens" in out and "image_token_id=5 but the tokenizer has <|image_pad|>=151655" in out
    assert "fix: the tokenizer and config.json must come from the same release" in out


def test_resolver_order_recorded_then_patch_factor_then_overrides(like, tmp_path):
    import shutil

    from mmreward.protocol import VisualSettings
    from mmreward.settings import EngineSettings, resolve_engine_settings, save_engine_settings

    assert resolve_engine_settings(like["qwen3_vl"]).visual.image_budget.factor == 32  # no record: defaults, sized
    folder = tmp_path / "q3"
    shutil.copytree(like["qwen3_vl"], folder)
    recorded = EngineSettings(max_turns=3, visual=VisualSettings(overview_frames=5))
    save_engine_settings(folder, recorded)
    s = resolve_engine_settings(folder)
    assert s.max_turns == 3 and s.visual.overview_frames == 5 and s.visual.image_budget.factor == 32
    s = resolve_engine_settings(folder, overview_frames=2, max_turns=4, batch_size=3)
    assert (s.visual.overview_frames, s.max_turns, s.batch_size) == (2, 4, 3)
    with pytest.raises(TypeError, match="not EngineSettings fields"):
        resolve_engine_settings(folder, overview=1)


def test_vision_tokens_are_suppressed_in_each_engine_s_own_terms():
    from trl import GRPOConfig

    from train.grpo import vision_suppression

    cfg = GRPOConfig(output_dir="x", use_cpu=True, bf16=False, report_to="none")
    assert vision_suppression(cfg, [151655, 151656]) == {"suppress_tokens": [151655, 151656]}
    cfg.use_vllm, cfg.generation_kwargs = True, {"logit_bias": {"7": 2.0}}
    kwargs = vision_suppression(cfg, [151655, 151656])
    assert kwargs == {"logit_bias": {151655: -100.0, 151656: -100.0, 7: 2.0}}
    cfg.generation_kwargs = {"suppress_tokens": [1]}
    with pytest.raises(ValueError, match="logit_bias instead"):
        vision_suppression(cfg, [151655])


def test_patch_factor_read_from_the_saved_config_equals_the_processor_s(like, tiny_model_dir, monkeypatch):
    """Start-up reads patch x merge from the folder's config, so the judge and server load the processor once."""
    from transformers import AutoProcessor

    from mmreward.settings import patch_factor

    expected = {}
    for folder in (like["qwen2_5_vl"], like["qwen3_vl"], tiny_model_dir):
        ip = AutoProcessor.from_pretrained(folder).image_processor
        expected[folder] = ip.patch_size * ip.merge_size
    monkeypatch.setattr(AutoProcessor, "from_pretrained", lambda *a, **k: pytest.fail("loaded the processor"))
    assert {f: patch_factor(f) for f in expected} == expected
    assert set(expected.values()) == {28, 32}


def test_adapter_chain_errors_name_the_fix(tmp_path):
    adapter = tmp_path / "a"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/nowhere/base"}))
    with pytest.raises(ModelLoadError, match="mmreward merge"):
        adapter_chain(adapter)


# --------------------------------------------------------------------------------------------------------------------
# Stage chaining with LoRA, and every stage end to end on both families


def _world(root: Path) -> Path:
    from data_pipelines.synthetic.generate import generate_world

    generate_world(root, seed=5, splits={"train": 8, "val": 4})
    return root


def _sft(model: Path, out: Path, train_files: list[Path], stage: str = "sft") -> None:
    recipe = REPO / f"train/recipes/tiny-cpu/{stage}.yaml"
    argv = ["train", stage, "--config", str(recipe), "--model_name_or_path", str(model),
            "--train_files", *map(str, train_files), "--eval_records", "", "--output_dir", str(out), "--per_device_train_batch_size", "1",
            "--max_steps", "1", "--learning_rate", "1e-2", "--report_to", "none", "--save_strategy", "no",
            "--use_peft", "true", "--lora_r", "4", "--lora_alpha", "8", "--pack", "false",
            "--lr_scheduler_type", "constant", "--warmup_steps", "0"]  # fmt: skip
    assert main(argv) == 0


def _merged_state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.slow
def test_lora_stages_chain_and_grpo_starts_from_rft_weights(like, tmp_path):
    from data_pipelines.distill import DistillSettings, distill
    from data_pipelines.records import read_records
    from data_pipelines.synthetic.generate import WORLD_TOOLS, WORLD_VISUAL
    from data_pipelines.synthetic.oracle import OracleTeacher
    from mmreward.modeling import ModelSettings, attach_adapter
    from mmreward.settings import EngineSettings
    from train.grpo import build_trainer, parse

    base = like["qwen2_5_vl"]
    world = _world(tmp_path / "world")
    records = read_records(world / "train.jsonl")
    engine = EngineSettings(visual=WORLD_VISUAL, tools=WORLD_TOOLS)
    distill(records, OracleTeacher({r.id: r for r in records}), tmp_path / "distill",
            DistillSettings(swap="none", engine=engine), media_root=world)  # fmt: skip
    kept = tmp_path / "distill" / "kept.jsonl"
    _sft(base, tmp_path / "sft", [kept])
    _sft(tmp_path / "sft", tmp_path / "rft", [kept], stage="rft")
    rft_config = json.loads((tmp_path / "rft" / "adapter_config.json").read_text())
    assert rft_config["base_model_name_or_path"] == str((tmp_path / "sft").resolve())
    root, adapters = adapter_chain(tmp_path / "rft")
    assert root == base and adapters == [tmp_path / "sft", tmp_path / "rft"]

    # RFT's final weights, built by hand: base + SFT merged, + RFT merged
    from transformers import AutoModelForImageTextToText

    ref = AutoModelForImageTextToText.from_pretrained(base, dtype=torch.float32)
    ref = attach_adapter(attach_adapter(ref, tmp_path / "sft", merge=True), tmp_path / "rft", merge=True)
    expected = _merged_state(ref)
    without_sft = _merged_state(
        attach_adapter(
            AutoModelForImageTextToText.from_pretrained(base, dtype=torch.float32), tmp_path / "rft", merge=True
        )
    )
    assert any(not torch.equal(expected[k], without_sft[k]) for k in expected)  # SFT's delta is real and kept

    loaded, _ = load_model(tmp_path / "rft", ModelSettings(merge_lora=True, device="cpu"))
    got = _merged_state(loaded)
    assert all(torch.equal(got[k], expected[k]) for k in expected)

    argv = ["--config", str(REPO / "train/recipes/tiny-cpu/grpo.yaml"), "--model_name_or_path", str(tmp_path / "rft"),
            "--train_files", str(world / "train.jsonl"), "--settings_file", str(world / "mmreward_judge.json"), "--eval_records", "", "--output_dir", str(tmp_path / "grpo"),
            "--num_generations", "2", "--per_device_train_batch_size", "2", "--max_completion_length", "32",
            "--max_steps", "1", "--report_to", "none", "--save_strategy", "no", "--limit", "2",
            "--use_peft", "true", "--lora_r", "4", "--lora_alpha", "8"]  # fmt: skip
    trainer, *_ = build_trainer(*parse(argv))
    # A fresh LoRA (B = 0) on top of the merged chain: its base layers hold the weights GRPO starts from.
    start = {k.replace(".base_layer", ""): v for k, v in trainer.model.state_dict().items() if "lora_" not in k}
    start = {k.removeprefix("base_model.model."): v for k, v in start.items()}
    assert set(expected) <= set(start), sorted(set(expected) - set(start))[:5]
    assert [k for k, v in expected.items() if not torch.equal(start[k], v)] == []

    merged = tmp_path / "rft-merged"
    assert main(["merge", str(tmp_path / "rft"), str(merged)]) == 0
    model, processor = load_model(merged)
    assert all(torch.equal(model.state_dict()[k], expected[k]) for k in expected)
    assert processor.chat_template == tool_template("qwen2_5_vl")  # the vLLM server reads the template from disk
    assert check_template(processor).ok and (merged / "mmreward_judge.json").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_every_stage_on_a_release_shaped_checkpoint(like, family, tmp_path, real_image_pair, capsys):
    """judge, distillation from a fake OpenAI teacher, SFT, rejection sampling, RFT, GRPO with tools, eval, serve."""
    import openai
    from fake_teacher import FakeTeacher
    from test_distill import answer_records

    from data_pipelines.records import write_records
    from mmreward.client import encode_media
    from mmreward.server import BackendSettings, BackgroundServer, ServerSettings, build_judge

    model = like[family]
    world = _world(tmp_path / "world")
    # judge
    assert main(["judge", "--model", str(model), "--prompt", "a chair", "--image", str(real_image_pair[0]),
                 "--image", str(real_image_pair[1]), "--max-new-tokens", "8", "--max-turns", "2"]) == 0  # fmt: skip
    # distillation from an OpenAI-compatible teacher (with a tool call), then SFT on what it kept
    write_records(answer_records(tmp_path, ["ok", "tool", "ok", "tool"]), tmp_path / "answers.jsonl")
    with FakeTeacher() as fake:
        assert main(["data", "distill", "--records", str(tmp_path / "answers.jsonl"), "--teacher", fake.url,
                     "--model", "fake", "--out", str(tmp_path / "distill")]) == 0  # fmt: skip
    kept = tmp_path / "distill" / "kept.jsonl"
    assert len(kept.read_text().splitlines()) >= 4
    _sft(model, tmp_path / "sft", [kept])
    # rejection sampling with the SFT judge, then RFT on its accepted traces plus the cold-start ones
    assert main(["data", "reject", "--model", str(tmp_path / "sft"), "--records", str(world / "val.jsonl"),
                 "--out", str(tmp_path / "rejection"), "--k", "2", "--limit", "2", "--max-new-tokens", "16",
                 "--world"]) == 0  # fmt: skip
    accepted = tmp_path / "rejection" / "accepted.jsonl"
    _sft(tmp_path / "sft", tmp_path / "rft", [kept, accepted] if accepted.read_text().strip() else [kept], "rft")
    # GRPO with tools, a few steps, on the RFT adapter chain
    out = tmp_path / "grpo"
    argv = ["train", "grpo", "--config", str(REPO / "train/recipes/tiny-cpu/grpo.yaml"),
            "--model_name_or_path", str(tmp_path / "rft"), "--train_files", str(world / "train.jsonl"), "--settings_file", str(world / "mmreward_judge.json"),
            "--eval_records", "", "--output_dir", str(out), "--num_generations", "2",
            "--per_device_train_batch_size", "2", "--max_completion_length", "32", "--max_steps", "2",
            "--report_to", "none", "--save_strategy", "no", "--limit", "2", "--use_peft", "true",
            "--lora_r", "4", "--lora_alpha", "8"]  # fmt: skip
    assert main(argv) == 0
    assert json.loads((out / "manifest.json").read_text())["summary"]["global_step"] == 2
    capsys.readouterr()
    assert main(["check-model", str(out), "--json"]) == 1  # a LoRA adapter: everything but vLLM, which needs a merge
    stages = json.loads(capsys.readouterr().out)["stages"]
    assert all(stages[s]["ready"] for s in ("judge", "sft", "grpo", "serve"))
    assert stages["vllm"]["problems"] == ["a LoRA adapter: vLLM serves full checkpoints"]
    # eval on the world's val split
    assert main(["eval", "run", "--suite", "synthetic_val", "--model", str(out), "--data", str(world),
                 "--out", str(tmp_path / "eval"), "--limit", "2", "--max-new-tokens", "16"]) == 0  # fmt: skip
    assert (tmp_path / "eval" / "metrics.json").is_file()
    # serve the GRPO judge; the real `openai` client gets a judgment
    judge = build_judge(BackendSettings(model=str(out), max_new_tokens=8, max_turns=2))
    with BackgroundServer(judge, ServerSettings(port=0)) as srv:
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0)
        image = {"type": "image_url", "image_url": {"url": encode_media(Image.open(real_image_pair[0]))}}
        reply = client.chat.completions.create(
            model="mmreward-judge",
            messages=[{"role": "user", "content": [{"type": "text", "text": "a chair"}, image, image]}],
            max_tokens=8,
        )
        assert isinstance(reply.choices[0].message.content, str)
    assert sys.modules.get("vllm") is None  # nothing here needed a GPU stack


@pytest.mark.parametrize("family", FAMILIES)
def test_fsdp_config_names_only_the_family_s_own_blocks(like, family):
    """accelerate refuses an FSDP config naming a layer class the model lacks ("Could not find the transformer layer
    class"), so each family has its own file, and every class it names is in that family's model."""
    import yaml
    from transformers import AutoConfig, AutoModelForImageTextToText

    cfg = yaml.safe_load((REPO / f"train/accelerate/fsdp_{family}.yaml").read_text())
    names = cfg["fsdp_config"]["fsdp_transformer_layer_cls_to_wrap"].split(",")
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(AutoConfig.from_pretrained(like[family]))
    classes = {type(m).__name__ for m in model.modules()}
    assert names and set(names) <= classes, set(names) - classes


@pytest.mark.slow
def test_sharded_runs_evaluate_in_a_fresh_process(tiny_model_dir, tmp_path, monkeypatch):
    """Under ZeRO-3/FSDP no one rank can judge with the trained weights: GRPO evaluates the input and output folders
    after training, each in its own process, and gets what an in-process evaluation of those folders gets."""
    import train.grpo
    from mmreward.modeling import ModelSettings
    from train.sft import evaluate_checkpoint

    world = _world(tmp_path / "world")
    monkeypatch.setattr(train.grpo, "sharded", lambda trainer: True)
    out = tmp_path / "grpo"
    argv = ["--config", str(REPO / "train/recipes/tiny-cpu/grpo.yaml"), "--model_name_or_path", str(tiny_model_dir),
            "--train_files", str(world / "train.jsonl"), "--settings_file", str(world / "mmreward_judge.json"), "--eval_records", str(world / "val.jsonl"),
            "--eval_limit", "2", "--eval_max_new_tokens", "16", "--output_dir", str(out), "--num_generations", "2",
            "--per_device_train_batch_size", "2", "--max_completion_length", "32", "--max_steps", "1",
            "--report_to", "none", "--save_strategy", "no", "--limit", "2"]  # fmt: skip
    summary = train.grpo.run(*train.grpo.parse(argv))
    assert summary["eval_before"]["items"] == 2 and summary["eval_after"]["items"] == 2
    assert (out / "eval_before.json").is_file()
    script = train.grpo.parse(argv)[0]
    for folder, key in ((tiny_model_dir, "eval_before"), (out, "eval_after")):
        model, processor = load_model(folder, ModelSettings(merge_lora=True, device="cpu"))
        here = evaluate_checkpoint(model, processor, script, str(folder))
        assert summary[key]["accuracy"] == here["accuracy"] and summary[key]["items"] == here["items"]
