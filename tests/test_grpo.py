"""GRPO (stage 3): what TRL trains is what the judge runs (prompt, tool schemas, post-tool context token for
token), real steps with tool calls (tool tokens masked, rewards logged, parameters change), StableReinforce's
stabilisers, recipes, resume, and two gloo processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from grpo_scripted import install
from transformers.utils import get_json_schema
from trl.data_utils import prepare_multimodal_messages

from data_pipelines.synthetic.generate import generate_world
from mmreward.generators import TransformersGenerator, vision_token_ids
from mmreward.protocol import assistant_message, build_conversation, format_turn, resolve_images, tool_message
from mmreward.rollout import RolloutEngine
from mmreward.tools import default_registry
from train.grpo import build_trainer, drop_outlier_advantages, environments, parse

REPO = Path(__file__).resolve().parents[1]
GRPO_RECIPES = sorted((REPO / "train" / "recipes").glob("*/grpo.yaml"))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("grpoworld") / "world"
    generate_world(root, seed=3, splits={"train": 24, "val": 8})
    return root


def grpo_args(world, model_dir, out, *extra) -> list[str]:
    return [
        "--config", str(REPO / "train/recipes/tiny-cpu/grpo.yaml"),
        "--model_name_or_path", str(model_dir),
        "--train_files", str(world / "train.jsonl"),
        "--settings_file", str(world / "mmreward_judge.json"),
        "--eval_records", "",
        "--output_dir", str(out),
        "--num_generations", "2",
        "--per_device_train_batch_size", "4",
        "--max_completion_length", "160",
        "--max_steps", "2",
        "--learning_rate", "1e-2",
        "--report_to", "none",
        "--save_strategy", "no",
        "--limit", "8",
        *extra,
    ]  # fmt: skip


@pytest.mark.parametrize("recipe", GRPO_RECIPES, ids=lambda p: p.parent.name)
def test_every_grpo_recipe_parses(recipe):
    raw = yaml.safe_load(recipe.read_text())
    cpu = ["--bf16", "false", "--use_cpu", "true"] if raw.get("bf16") else []
    script, cfg, model_args = parse(["--config", str(recipe), *cpu])
    assert script.train_files and cfg.num_generations >= 2 and cfg.max_tool_calling_iterations >= 1
    assert script.rewards and len(cfg.reward_weights) == len(script.rewards)
    if "tiny-cpu" in str(recipe):
        assert cfg.use_cpu and not cfg.use_vllm
    else:
        assert raw["bf16"] and raw["use_vllm"] and raw["vllm_mode"] in ("server", "colocate")
        assert raw["attn_implementation"] == "flash_attention_2" and model_args.use_peft
        assert cfg.num_generations >= 8 and cfg.max_completion_length >= 2048


def test_environment_tools_are_the_registry_tools(world):
    envs = environments(default_registry_settings(), str(world))
    registry = default_registry()
    image_env, video_env = envs["image"](), envs["video"]()
    assert get_json_schema(image_env.crop) == registry.schemas(["crop"])[0]
    assert get_json_schema(video_env.select_frames) == registry.schemas(["select_frames"])[0]
    assert not hasattr(image_env, "select_frames")  # the engine offers select_frames for video only


def default_registry_settings():
    from data_pipelines.synthetic.generate import WORLD_TOOLS, WORLD_VISUAL
    from mmreward.settings import EngineSettings
    from mmreward.tools import Budget

    return EngineSettings(max_turns=3, budget=Budget(max_tool_calls=2), visual=WORLD_VISUAL, tools=WORLD_TOOLS)


def test_prompt_and_post_tool_context_match_the_engine(world, tiny_model_dir, tmp_path):
    """TRL's prompt ids, and its prompt + completion + tool-result ids after a crop, equal the engine's context at
    the same points, token for token (images, tool schemas and the tool message included)."""
    script, cfg, model_args = parse(grpo_args(world, tiny_model_dir, tmp_path / "g", "--limit", "24"))
    trainer, processor, settings, _ = build_trainer(script, cfg, model_args)
    ds = trainer.train_dataset
    gen = TransformersGenerator(trainer.model, processor)
    engine = RolloutEngine(gen, settings=settings)
    checked = set()
    for i in range(len(ds)):
        row = ds[i]
        record = json.loads(row["record"])
        if row["environment"] in checked or record["task"] != "pairwise":
            continue
        checked.add(row["environment"])
        env = trainer.environment_factories[row["environment"]]()
        env.reset(**row)
        trainer._batch_environments = [row["environment"]]
        trl_prompt = prepare_multimodal_messages(row["prompt"], row["images"])
        trl_ids = list(trainer._tokenize_prompts([trl_prompt])[0][0])

        from data_pipelines.records import PreferenceRecord

        task = PreferenceRecord.from_dict(record).resolved(world).to_task()
        conv = build_conversation(task, row["order"], tools_on=True, visual=settings.visual,
                                  tool_settings=settings.tools, budget=settings.budget)  # fmt: skip
        tools = engine.tool_schemas(task, True)

        def engine_ids(messages, ctx, tools=tools):
            msgs, images = resolve_images(messages, ctx.images, settings.visual)
            text = gen.render(msgs, tools)
            return list(processor(text=[text], images=images or None)["input_ids"][0])

        assert trl_ids == engine_ids(conv.messages, conv.context), row["environment"]

        # One tool round: the engine's next prompt vs TRL's concatenation.
        target = "image_1" if task.visual_kind == "image" else next(n for n in conv.context.images if "_frame_" in n)
        turn = format_turn("look", tool=("crop", {"image": target, "bbox_2d": [0, 0, 600, 600]}))
        parts = env.crop(image=target, bbox_2d=[0, 0, 600, 600])
        result = default_registry().call(conv.context, "crop", {"image": target, "bbox_2d": [0, 0, 600, 600]})
        assert result.ok and parts[-1]["text"] == result.text
        messages = conv.messages + [assistant_message(turn), tool_message(result.text, [n for n, _ in result.images])]
        completion = processor.tokenizer(turn + "<|im_end|>", add_special_tokens=False)["input_ids"]
        suffix = trainer._get_tool_suffix_ids([{"role": "tool", "name": "crop", "content": parts}])
        assert trl_ids + completion + suffix == engine_ids(messages, conv.context)
    assert checked == {"image", "video"}


def test_grpo_steps_with_tool_calls_mask_tool_tokens_and_learn(world, tiny_model_dir, tmp_path):
    script, cfg, model_args = parse(grpo_args(world, tiny_model_dir, tmp_path / "g", "--log_completions", "true"))
    trainer, processor, _, _ = build_trainer(script, cfg, model_args)
    install(trainer, seed=1)
    seen = []
    original = trainer._compute_loss

    def capture(model, inputs):
        seen.append(dict(inputs))
        return original(model, inputs)

    trainer._compute_loss = capture
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    logs = [row for row in trainer.state.log_history if "reward" in row]
    assert len(logs) == 2
    for name in ("accuracy", "format", "tool"):
        assert all(f"rewards/{name}/mean" in row for row in logs)
    assert all(row["tools/call_frequency"] > 0 for row in logs)
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p.detach())]
    assert changed, "no parameter changed"

    # The loss mask: completion tokens the model wrote are 1; every token of a tool result (the rendered tool
    # message, its image placeholders included) is 0.
    tok = processor.tokenizer
    masked_spans = 0
    for inputs in seen:
        ids, cmask, tmask = inputs["completion_ids"], inputs["completion_mask"], inputs["tool_mask"]
        for row in range(ids.shape[0]):
            n = int(cmask[row].sum())
            text_kept = tok.decode(ids[row, :n][tmask[row, :n].bool()], skip_special_tokens=False)
            text_masked = tok.decode(ids[row, :n][~tmask[row, :n].bool()], skip_special_tokens=False)
            assert "<tool_response>" not in text_kept and "<|image_pad|>" not in text_kept
            if "<tool_call>" in text_kept and "</answer>" in text_kept:
                assert "<tool_response>" in text_masked and "obs_1" in text_masked or "Error" in text_masked
                masked_spans += 1
    assert masked_spans > 0
    # TRL's loss uses completion_mask * tool_mask: with the tool tokens unmasked the loss differs (on a batch with
    # a non-zero advantage; a group whose rewards are all equal has zero loss either way).
    inputs = next((dict(x) for x in reversed(seen) if x["advantages"].abs().sum() > 0), None)
    assert inputs is not None, "every batch had zero advantages"
    trainer.model.eval()
    with torch.no_grad():
        masked = float(original(trainer.model, inputs))
        unmasked = float(original(trainer.model, {**inputs, "tool_mask": torch.ones_like(inputs["tool_mask"])}))
    assert masked != pytest.approx(unmasked)

    # TRL's completions table carries each rollout as a whole trajectory, which `mmreward view` replays: the
    # crops the environment made are rebuilt from the record's media, and the verdict is checked against the label.
    from eval.view import load_items
    from mmreward.trajectory import materialize

    items = load_items(tmp_path / "g")
    tables = sorted((tmp_path / "g" / "completions").glob("*.parquet"))
    assert len(tables) == 2 and len(items) == 2 * 4 and {i.stage for i in items} == {"g"}  # 2 steps of 4 rollouts
    with_calls = [i for i in items if any(c["ok"] for c in i.traj.tool_trace)]
    assert with_calls and all(i.correct is not None and i.label for i in items)
    for item in with_calls:
        ctx = materialize(item.traj)
        for call in item.traj.tool_trace:
            assert all(name in ctx.images for name in call["observations"])
        roles = [m["role"] for m in item.traj.messages]
        assert roles[:2] == ["system", "user"] and "tool" in roles and roles.count("assistant") == item.traj.num_turns


def test_stable_reinforce_drops_outliers_and_clamps_the_log_ratio(world, tiny_model_dir, tmp_path):
    adv = torch.tensor([0.1, -0.2, 0.15, -0.05, 0.0, 0.1, -0.1, 0.05, 0.12, -0.08, 50.0, float("nan")])
    cleaned, share = drop_outlier_advantages(adv, 3.0)
    assert cleaned[-1] == 0 and cleaned[-2] == 0 and torch.equal(cleaned[:-2], adv[:-2])
    assert share == pytest.approx(2 / 12)

    from train.grpo import _clamped_logps

    class Fake:
        def _get_per_token_logps_and_entropies(self, *a, **k):
            return torch.tensor([[0.0, -30.0, 5.0]], requires_grad=True), None, None

    fake = Fake()
    old = torch.tensor([[0.0, 0.0, 0.0]])
    with _clamped_logps(fake, old, 10.0):
        logps, _, _ = fake._get_per_token_logps_and_entropies()
    assert logps.tolist() == [[0.0, -10.0, 5.0]]
    assert fake._get_per_token_logps_and_entropies()[0].tolist() == [[0.0, -30.0, 5.0]]  # restored


def test_cli_runs_end_to_end_with_eval_and_resumes(world, tiny_model_dir, tmp_path):
    """`mmreward train grpo` on the real (random) tiny model: eval before/after, curves, manifest; a second run
    with more steps resumes from the checkpoint."""
    out = tmp_path / "cli"
    extra = ["--eval_records", str(world / "val.jsonl"), "--eval_limit", "4", "--save_strategy", "steps",
             "--save_steps", "2", "--max_completion_length", "48"]  # fmt: skip
    cmd = [sys.executable, "-m", "mmreward.cli", "train", "grpo", *grpo_args(world, tiny_model_dir, out), *extra]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    s = manifest["summary"]
    assert s["global_step"] == 2 and s["eval_before"]["items"] == 4 and s["eval_after"]["items"] == 4
    assert set(s["step_time_s"]) == {"generate_and_score", "optimise"}
    assert (out / "curves.png").is_file() and (out / "checkpoint-2").is_dir() and (out / "model.safetensors").is_file()
    recorded = json.loads((out / "mmreward_judge.json").read_text())  # what the judge and server will show it
    assert recorded["visual"]["image_budget"]["max_pixels"] == 112 * 112 and recorded["max_turns"] == 3
    r = subprocess.run(cmd[:-len(extra)] + extra[:-2] + ["--max_steps", "3"], capture_output=True, text=True,
                       timeout=900, cwd=REPO)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert (
        "resuming from" in r.stdout and json.loads((out / "manifest.json").read_text())["summary"]["global_step"] == 3
    )


def test_two_gloo_processes_with_tool_rollouts(world, tiny_model_dir, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(REPO / "train/accelerate/ddp_cpu_2proc.yaml"), str(REPO / "tests/grpo_scripted.py"),
           *grpo_args(world, tiny_model_dir, out, "--per_device_train_batch_size", "2")]  # fmt: skip
    r = subprocess.run(
        cmd, capture_output=True, text=True, timeout=900, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["summary"]["world_size"] == 2 and manifest["summary"]["global_step"] == 2
    logs = [row for row in manifest["log_history"] if "reward" in row]
    assert logs and all(row["tools/call_frequency"] > 0 for row in logs)


def tagged_records(world, out: Path, n: int = 4) -> Path:
    """Records whose questions carry the fake server's case tags, alternating tools / plain, so that with
    ``shuffle_dataset: false`` rank 0 gets a case that calls tools twice and rank 1 one that never does."""
    rows = [json.loads(line) for line in (world / "train.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["modality"] != "video"][:n]  # the fake server crops image_1
    for i, r in enumerate(rows):
        r["prompt"] = f"[case {i} {'tools' if i % 2 == 0 else 'plain'}] {r['prompt']}"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def test_vllm_server_mode_tool_rounds_on_two_processes(world, tiny_model_dir, tmp_path):
    """Two gloo processes generate through an OpenAI/vLLM-shaped server (TRL's own client over HTTP). In every
    generation, rank 0's rollout calls tools twice and rank 1's none: no hang, every turn lands in its own rollout,
    and turns that would pass the server's context get a smaller max_tokens instead of a 400."""
    from fake_vllm import FakeVLLM
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    records = tagged_records(world, world / "tagged.jsonl")  # beside the world's media, which it names
    logs = tmp_path / "rollouts"
    logs.mkdir()
    out = tmp_path / "server"
    completion = 600
    # The context leaves every turn less than the completion budget (TRL asks for it all on each turn), but room for
    # the fake policy's turns (about 40 tokens each, plus about 30 for each tool result).
    script, cfg, model_args = parse(grpo_args(world, tiny_model_dir, tmp_path / "probe", "--train_files",
                                              str(records), "--limit", "0"))  # fmt: skip
    trainer = build_trainer(script, cfg, model_args)[0]
    ds = trainer.train_dataset
    lengths = []
    for row in ds:
        trainer._batch_environments = [row["environment"]]
        lengths.append(
            len(trainer._tokenize_prompts([prepare_multimodal_messages(row["prompt"], row["images"])])[0][0])
        )
    longest = max(lengths)
    del trainer
    with FakeVLLM(tokenizer, max_model_len=longest + 300) as fake:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(REPO / "train/accelerate/ddp_cpu_2proc.yaml"), str(REPO / "tests/grpo_vllm_server.py"),
               *grpo_args(world, tiny_model_dir, out, "--per_device_train_batch_size", "2", "--train_files",
                          str(records), "--limit", "0", "--shuffle_dataset", "false", "--use_vllm", "true",
                          "--vllm_mode", "server", "--vllm_server_base_url", fake.url,
                          "--max_completion_length", str(completion))]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1", "ROLLOUT_LOG": str(logs)}
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO, env=env)
    assert r.returncode == 0, r.stderr[-6000:] + str(fake.errors)
    assert not fake.errors  # no request passed the context (vLLM would have answered 400 and stopped the run)

    rollouts = {
        rank: [json.loads(x) for x in (logs / f"rank{rank}.jsonl").read_text().splitlines()] for rank in (0, 1)
    }
    assert all("tools" in row["case"] and row["tool_results"] == 2 for row in rollouts[0])
    assert all("plain" in row["case"] and row["tool_results"] == 0 for row in rollouts[1])
    for row in rollouts[0] + rollouts[1]:
        number = row["case"].split()[1]
        assert row["assistant"] and all(f"case {number}:" in turn for turn in row["assistant"] if turn), row

    assert len(fake.requests) == 2 * (2 + 2 * 2)  # per step: a first turn per rank's prompt (n=2), 2 tool rounds x 2
    assert all(q["max_tokens"] < completion and q["prompt_tokens"] + q["max_tokens"] <= fake.max_model_len
               for q in fake.requests)  # fmt: skip
    vision = sorted(vision_token_ids(tokenizer))
    assert all(set(vision) <= set(q["logit_bias"]) for q in fake.requests)  # vision tokens biased out, vLLM's way
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["summary"]["world_size"] == 2 and manifest["summary"]["global_step"] == 2
    logged = [row for row in manifest["log_history"] if "tools/clamped_turns" in row]
    assert logged and all(row["tools/clamped_turns"] > 0 and row["tools/full_context_turns"] == 0 for row in logged)


def test_vllm_server_mode_prompt_that_fills_the_context_is_a_clear_error(world, tiny_model_dir, tmp_path):
    from fake_vllm import FakeVLLM
    from transformers import AutoTokenizer

    records = tagged_records(world, world / "tagged.jsonl")
    with FakeVLLM(AutoTokenizer.from_pretrained(tiny_model_dir), max_model_len=256) as fake:
        cmd = [sys.executable, str(REPO / "tests/grpo_vllm_server.py"),
               *grpo_args(world, tiny_model_dir, tmp_path / "out", "--train_files", str(records), "--limit", "0",
                          "--use_vllm", "true", "--vllm_mode", "server", "--vllm_server_base_url", fake.url)]  # fmt: skip
        env = {**os.environ, "ROLLOUT_LOG": str(tmp_path)}
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO, env=env)
    assert r.returncode != 0 and "fill the vLLM server's whole context (max_model_len 256)" in r.stderr, r.stderr[
        -3000:
    ]
    assert "--max-model-len" in r.stderr and not fake.requests  # refused before anything was sent
