"""The command line's conventions: help on every option, one exit code per kind of error, messages in the CLI's
own terms, and run folders that refuse to mix other work into theirs (issue: "Runs you can trust").

Each bad input a user met is one row of a table: the command, the exit code and what the message must say."""

import json
import socket

import pytest
from conftest import BENCH

from mmreward.cli import build_parser, main, walk_parsers

# --------------------------------------------------------------------------------------------------------------------
# Help


def test_every_command_has_a_description_and_every_option_help():
    missing = []
    for parser in walk_parsers(build_parser()):
        if parser.prog not in ("mmreward",) and not (parser.description or "").strip():
            missing.append(f"{parser.prog}: no description")
        for action in parser._actions:
            if action.option_strings and action.help in (None, ""):
                missing.append(f"{parser.prog} {action.option_strings[0]}: no help")
    assert not missing, "\n".join(missing)


def test_help_shows_defaults(capsys):
    for argv, shown in [
        (["judge", "--help"], "(default: none)"),  # --swap's default differs between commands: each one says it
        (["eval", "run", "--help"], "(default: random)"),
        (["data", "distill", "--help"], "(default: both)"),
        (["serve", "--help"], "(default: 8000)"),
    ]:
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 0
        assert shown in " ".join(capsys.readouterr().out.split()), argv


def test_train_help_leads_with_our_options(capsys):
    assert main(["train", "sft", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--config RECIPE.yaml" in out and "--train_files" in out and "--help-all" in out
    assert out.index("--config") < out.index("--learning_rate") and len(out.splitlines()) < 200
    assert main(["train", "grpo", "--help"]) == 0
    assert "--tool_bonus" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------------------------------
# Bad inputs: one row per case, checked before any model loads


@pytest.fixture
def no_model_loading(monkeypatch):
    """Loading a model during a row is a failure of the row: input errors are found first."""
    import mmreward.judge
    import mmreward.modeling

    def refuse(*a, **k):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(mmreward.judge.Judge, "from_pretrained", classmethod(refuse))
    monkeypatch.setattr(mmreward.modeling, "load_model", refuse)


def _files(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a video\n")
    fake_png = tmp_path / "fake.png"
    fake_png.write_text("not an image")
    bad_records = tmp_path / "bad.jsonl"
    good = {"id": "a", "task": "pointwise", "modality": "image", "prompt": "p", "candidates": ["x.png"], "score": 3}
    bad_records.write_text("\n".join([json.dumps(good | {"id": f"r{i}"}) for i in range(5)] + ['{"id": "r5", oops']))
    thin = tmp_path / "thin.jsonl"
    thin.write_text(json.dumps({"id": "t", "candidates": ["a", "b"]}) + "\n")
    genai = BENCH / "genai_bench" / "video_generation_test_v1_gpt4o_predictions.jsonl"
    torn = tmp_path / "preds_predictions.jsonl"
    lines = genai.read_text().splitlines()[:5] + ['{"response": "[[A>B]]", "human_vote": ']
    torn.write_text("\n".join(lines) + "\n")
    return {
        "notes": notes,
        "fake_png": fake_png,
        "bad_records": bad_records,
        "thin": thin,
        "genai": genai,
        "torn": torn,
    }


def test_bad_inputs_exit_2_and_name_the_flag_file_or_line(tmp_path, tiny_model_dir, real_image_pair, capsys,
                                                         no_model_loading):  # fmt: skip
    f = _files(tmp_path)
    m = str(tiny_model_dir)
    img = str(real_image_pair[0])
    judge = ["judge", "--model", m]
    rows = [
        # (argv, exit code, what stderr must say)
        (judge + ["--prompt", "x", "--image", str(tmp_path / "gone.png"), "--image", img], 2,
         ["--image", "gone.png", "no such image file"]),
        (judge + ["--prompt", "x", "--image", str(f["fake_png"]), "--image", img], 2,
         ["--image", "fake.png", "not a recognised image"]),
        (judge + ["--prompt", "x", "--video", str(f["notes"]), "--video", str(f["notes"])], 2,
         ["--video", "notes.txt", "not a video file"]),
        (judge + ["--prompt", "x", "--image", img, "--answer", "a", "--answer", "b"], 2,
         ["--answer needs --question"]),
        (judge + ["--prompt", "x", "--image", img], 2, ["need 2 --image", "got 1", "add --pointwise"]),
        (judge + ["--prompt", "x", "--question", "q", "--answer", "a", "--answer", "b", "--image", img], 2,
         ["--prompt and --question together"]),
        (judge + ["--question", "q", "--answer", "a", "--image", img], 2, ["2 --answer", "add --pointwise"]),
        (["judge", "--model", str(tmp_path), "--prompt", "x", "--image", img, "--pointwise"], 2,
         ["--model", "not a checkpoint folder"]),
        (["judge", "--prompt", "x"], 2, ["--model"]),  # argparse's own usage error: the same exit code
        (["data", "stats", str(f["bad_records"])], 2, ["bad.jsonl:6", "invalid JSON"]),
        (["data", "stats", str(f["thin"])], 2, ["thin.jsonl:1", "missing field(s) task, modality, prompt"]),
        (["data", "convert", "--source", "generic", "--input", str(f["bad_records"]), "--output",
          str(tmp_path / "o.jsonl"), "--map", "prompt=prompt,candidate=candidates,score=score",
          "--label-values", "{1: 0}"], 2, ["--label-values", "not valid JSON"]),
        (["data", "convert", "--source", "mm_rlhf", "--input", str(f["bad_records"]), "--output",
          str(f["bad_records"])], 2, ["--output", "that is the input"]),
        (["eval", "score", "--suite", "vl_rewardbench", "--predictions", str(f["genai"])], 2,
         ["genai_bench predictions", "--suite genai_bench_video_generation"]),
        (["eval", "score", "--suite", "genai_bench_video_generation", "--predictions", str(f["torn"])], 2,
         ["preds_predictions.jsonl:6", "not valid JSON"]),
        (["eval", "compare", str(tmp_path), str(tmp_path)], 2, ["no metrics.json", "eval score"]),
        (["serve", "--model", m, "--token-file", str(tmp_path / "missing-token")], 2,
         ["--token-file", "missing-token"]),
        (["data", "distill", "--records", str(f["thin"]), "--teacher", "ftp://x", "--out", str(tmp_path / "d")], 2,
         ["thin.jsonl:1"]),
    ]  # fmt: skip
    problems = []
    for argv, code, says in rows:
        try:
            got = main(argv)
        except SystemExit as exc:  # argparse
            got = exc.code
        err = " ".join(capsys.readouterr().err.split())
        if got != code or not all(s in err for s in says):
            problems.append(f"{argv}: exit {got} (want {code}); stderr: {err[:300]}")
    assert not problems, "\n".join(problems)
    assert f["bad_records"].read_text().count("\n") == 5  # the refused --output was the input: untouched


def test_device_is_said_in_the_cli_spelling(tiny_model_dir, real_image_pair, capsys, no_model_loading):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    img = [str(p) for p in real_image_pair]
    code = main(["judge", "--model", str(tiny_model_dir), "--prompt", "x", "--image", img[0], "--image", img[1],
                 "--device", "cuda"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "--device cuda" in err and "use --device cpu" in err and "device=" not in err


def test_video_errors_stay_quiet(tmp_path, tiny_model_dir, capfd, no_model_loading):
    """A text file given as --video: one line naming the flag, no decoder chatter on the terminal."""
    (tmp_path / "a.mp4").write_text("hello")
    broken = tmp_path / "b.mp4"  # an MP4 header with nothing decodable behind it
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200)
    for video in (tmp_path / "a.mp4", broken):
        code = main(["judge", "--model", str(tiny_model_dir), "--prompt", "x", "--video", str(video), "--video",
                     str(video)])  # fmt: skip
        err = capfd.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith(f"error: --video {video}"), err


def test_dead_teacher_is_a_failure_that_names_the_url(tmp_path, capsys):
    from data_pipelines.synthetic.generate import generate_world

    generate_world(tmp_path / "w", seed=1, splits={"train": 2}, kinds=["image"])
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    code = main(["data", "distill", "--records", str(tmp_path / "w" / "train.jsonl"), "--teacher", url, "--out",
                 str(tmp_path / "d"), "--retries", "0", "--timeout", "2", "--swap", "none"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and url in err and "answered none of 2 requests" in err and "connection error" in err


def test_serve_on_a_port_in_use_fails_before_loading(tiny_model_dir, capsys, monkeypatch):
    import mmreward.server

    monkeypatch.setattr(mmreward.server, "build_judge", lambda *a: pytest.fail("loaded a model for a busy port"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        code = main(["serve", "--model", str(tiny_model_dir), "--port", str(port)])
    err = capsys.readouterr()
    assert code == 2 and f"--port {port}" in err.err and "serving" not in err.out


# --------------------------------------------------------------------------------------------------------------------
# No silent overwrite


def test_convert_refuses_to_replace_a_different_output(tmp_path, capsys):
    src = BENCH / "mm_rlhf_rewardbench" / "mm_reward_bench.jsonl"
    out = tmp_path / "o.jsonl"
    base = ["data", "convert", "--source", "mm_rlhf", "--input", str(src), "--output", str(out)]
    assert main(base) == 0 and "(written)" in capsys.readouterr().out
    assert main(base) == 0 and "(unchanged)" in capsys.readouterr().out  # identical: fine to "replace"
    out.write_text(out.read_text().replace('"mm_rlhf"', '"edited"', 1))
    edited = out.read_text()
    assert main(base) == 2 and "add --force" in capsys.readouterr().err and out.read_text() == edited
    assert main(base + ["--force"]) == 0 and "(replaced)" in capsys.readouterr().out and out.read_text() != edited


def test_eval_score_never_writes_beside_a_benchmark(tmp_path, capsys):
    genai = BENCH / "genai_bench" / "video_generation_test_v1_gpt4o_predictions.jsonl"
    before = sorted(p.name for p in genai.parent.iterdir())
    assert main(["eval", "score", "--suite", "genai_bench_video_generation", "--predictions", str(genai)]) == 0
    captured = capsys.readouterr()
    assert "genai" in captured.out.lower() and "nothing written" in captured.err
    assert sorted(p.name for p in genai.parent.iterdir()) == before
    out = tmp_path / "scores"
    assert main(["eval", "score", "--suite", "genai_bench_video_generation", "--predictions", str(genai),
                 "--out", str(out)]) == 0  # fmt: skip
    assert (out / "metrics.json").is_file() and (out / "report.md").is_file()


# --------------------------------------------------------------------------------------------------------------------
# Run folders know what made them


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from data_pipelines.synthetic.generate import generate_world

    root = tmp_path_factory.mktemp("conv") / "world"
    generate_world(root, seed=4, splits={"test": 6, "val": 4}, kinds=["image", "pointwise"])
    return root


@pytest.fixture(scope="module")
def other_model(tmp_path_factory):
    from mmreward.tiny import init_tiny

    return init_tiny(tmp_path_factory.mktemp("models") / "other", "qwen2_5_vl", seed=1)


def _eval(model, world, out, *extra):
    return main(["eval", "run", "--suite", "synthetic_test", "--model", str(model), "--data", str(world),
                 "--out", str(out), "--limit", "2", "--max-new-tokens", "8", "--batch-size", "4", *extra])  # fmt: skip


def test_eval_run_resumes_only_its_own_work(world, tiny_model_dir, other_model, tmp_path, capsys):
    out = tmp_path / "run"
    assert _eval(tiny_model_dir, world, out) == 0
    first = json.loads((out / "run.json").read_text())
    assert first["new_predictions"] == 2 and first["model"] == str(tiny_model_dir.resolve())
    assert _eval(tiny_model_dir, world, out) == 0  # the same run: resumed, nothing new
    assert json.loads((out / "run.json").read_text())["reused_predictions"] == 2
    capsys.readouterr()
    # Another model, tools off, another suite: each refused with what differs, the folder untouched.
    preds = (out / "predictions.jsonl").read_text()
    for extra, says in [
        (("--tools", "off"), "settings.tools: false now, true in the folder"),
        (("--swap", "both"), "settings.swap"),
    ]:
        assert _eval(tiny_model_dir, world, out, *extra) == 2
        assert says in capsys.readouterr().err
    assert _eval(other_model, world, out) == 2
    err = capsys.readouterr().err
    assert "model:" in err and "--force" in err
    code = main(["eval", "run", "--suite", "synthetic_val", "--model", str(tiny_model_dir), "--data", str(world),
                 "--out", str(out), "--limit", "1", "--max-new-tokens", "8"])  # fmt: skip
    assert code == 2 and 'suite: "synthetic_val" now' in capsys.readouterr().err
    assert (out / "predictions.jsonl").read_text() == preds
    # --force starts over with the new model: none of the old predictions are presented as its own.
    assert _eval(other_model, world, out, "--force") == 0
    run = json.loads((out / "run.json").read_text())
    assert run["reused_predictions"] == 0 and run["new_predictions"] == 2 and run["model"] == str(other_model)


def test_a_regenerated_world_is_refused_by_old_runs(tmp_path, tiny_model_dir, capsys):
    w = tmp_path / "world"
    synth = ["data", "synth", "--out", str(w), "--n", "8", "--kinds", "image", "pointwise"]
    assert main(synth + ["--seed", "1"]) == 0
    assert main(synth + ["--seed", "1"]) == 0 and "already holds this world" in capsys.readouterr().out
    out = tmp_path / "run"
    assert _eval(tiny_model_dir, w, out) == 0
    assert main(synth + ["--seed", "2"]) == 2 and "seed: 2 now, 1 in the folder" in capsys.readouterr().err
    old_media = {p.name for p in (w / "media").rglob("*") if p.is_file()}
    assert main(synth + ["--seed", "2", "--n", "8", "--force"]) == 0
    media = {p.relative_to(w).as_posix() for p in (w / "media").rglob("*") if p.is_file()}
    referenced = set()
    for split in ("train", "val", "test", "compositional"):
        for line in (w / f"{split}.jsonl").read_text().splitlines():
            r = json.loads(line)
            referenced |= set(r["media"]) | (set(r["candidates"]) if r["modality"] != "answer" else set())
    assert media == referenced and old_media  # no file of the old world is left behind
    capsys.readouterr()
    # The eval run made on the old world does not score its predictions against the new items.
    assert _eval(tiny_model_dir, w, out) == 2 and "input record(s) changed" in capsys.readouterr().err


def test_distill_with_another_teacher_keeps_the_first_ones_work(world, tmp_path, capsys):
    out = tmp_path / "d"
    records = str(world / "test.jsonl")
    assert main(["data", "distill", "--records", records, "--teacher", "oracle", "--out", str(out)]) == 0
    kept = (out / "kept.jsonl").read_text()
    assert kept.strip()
    code = main(["data", "distill", "--records", records, "--teacher", "http://127.0.0.1:9/v1", "--out", str(out)])
    assert code == 2 and "teacher" in capsys.readouterr().err
    assert (out / "kept.jsonl").read_text() == kept
    # The same teacher again resumes from its cache.
    assert main(["data", "distill", "--records", records, "--teacher", "oracle", "--out", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["reused_from_cache"] > 0


def test_reject_refuses_another_checkpoints_samples(world, tiny_model_dir, other_model, tmp_path, capsys):
    out = tmp_path / "r"
    base = ["data", "reject", "--records", str(world / "test.jsonl"), "--out", str(out), "--k", "2", "--limit", "2",
            "--max-new-tokens", "8", "--world"]  # fmt: skip
    assert main(base + ["--model", str(tiny_model_dir)]) == 0
    assert main(base + ["--model", str(other_model)]) == 2 and "model:" in capsys.readouterr().err
    assert main(base + ["--model", str(other_model), "--force"]) == 0


def test_run_folder_refuses_leftovers_without_provenance(tmp_path):
    from mmreward.errors import InputError
    from mmreward.runs import RunFolder

    (tmp_path / "predictions.jsonl").write_text("{}\n")
    folder = RunFolder(tmp_path, "eval run", {"suite": "x"}, ["predictions*.jsonl"])
    with pytest.raises(InputError, match="recorded no provenance"):
        folder.open()
    folder.open(force=True)
    assert not (tmp_path / "predictions.jsonl").exists() and (tmp_path / "provenance.json").is_file()


def test_serve_gives_the_model_thread_the_cpu_threads(tiny_model_dir, monkeypatch):
    """On CPU the HTTP thread stays at one intra-op thread and the model's worker thread gets the rest: two live
    OpenMP pools made every op of the model's thread slower (README, Performance)."""
    import torch

    import mmreward.server

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    seen = {}
    monkeypatch.setattr(torch, "set_num_threads", lambda n: seen.setdefault("main", n))
    monkeypatch.setattr(mmreward.server, "build_judge", lambda backend: object())
    monkeypatch.setattr(mmreward.server, "serve", lambda judge, settings, **kw: seen.update(settings=settings))
    assert main(["serve", "--model", str(tiny_model_dir), "--port", "0", "--threads", "3"]) == 0
    assert seen["main"] == 1 and seen["settings"].engine_threads == 3
    assert main(["serve", "--model", str(tiny_model_dir), "--port", "0", "--threads", "0"]) == 2
