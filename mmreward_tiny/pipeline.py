"""``mmreward pipeline``: the whole staged pipeline on the embedded default, one command.

    mmreward pipeline --recipe tiny-cpu --out runs/quickstart [--fast] [--force] [--only STEP ...]

Steps (each runs a stage's own command with its own recipe, ``train/recipes/<recipe>/<stage>.yaml``, overridden
by ``train/recipes/<recipe>/pipeline.yaml``; there is no second implementation of any stage):

 1. ``model``    build the tiny model (``mmreward init-tiny``)
 2. ``world``    the synthetic world: train/val/test/compositional items (``mmreward data synth``), then the
                 learning-to-see curriculum (``mmreward tiny curriculum``)
 3. ``see``      vision pretraining of the tiny tower on dense per-token labels (``mmreward tiny vision``), then
                 stage 0, learning to see (``mmreward tiny see``), with perception accuracy on held-out questions,
                 then the warm-ups the recipe has sections for, in order: ``compare`` (text only: comparing what is
                 seen with the prompt) and ``crops`` (one candidate's crop at a time, answered as the judge does);
                 its checkpoint is cached under ``runs/.cache/stage0/<key>`` and reused by later runs with the same
                 model, world and stage-0 settings and the same code that writes and trains on its data
 4. ``distill``  reference trajectories from the oracle teacher (``mmreward data distill --teacher oracle``)
 5. ``sft``      cold-start SFT (``mmreward train sft``)
 6. ``reject``   rejection sampling from the SFT model (``mmreward data reject``), then ``rft`` (``mmreward train rft``)
 7. ``grpo``     GRPO with tools on the GRPO pool (``mmreward train grpo``)
 8. ``eval``     every stage's checkpoint on the test and compositional splits, tools on and off
                 (``mmreward eval run``), plus the oracle with tools and from the overview alone; then the
                 reward-hacking probes (``mmreward eval probe``) on the final checkpoint and on the oracle
 9. ``serve``    the judge server on the final model, a few requests through the ``openai`` client
10. ``report``   ``report.md`` with tables and plots, and a model card in the final checkpoint

A step whose output is complete is skipped unless ``--force``; an interrupted run picks up where it stopped
(training stages resume from their last checkpoint, distillation and rejection sampling from their caches).
Each step's output goes to ``<out>/logs/<step>.log``; progress bars stream to the terminal.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from mmreward_tiny.report import push_section, serve_smoke, write_report
from mmreward_tiny.steps import RECIPES, REPO, STAGES, STEPS, WARMUPS

# Source folders and files whose code shapes the stage-0 checkpoint (part of its cache key).
STAGE0_SOURCES = (
    "mmreward/tiny.py",
    "data_pipelines/synthetic",
    "mmreward_tiny/curriculum",
    "mmreward_tiny/vision.py",
    "mmreward_tiny/see.py",
    "train/sft.py",
    "train/render.py",
    "train/collate.py",
)


class StepFailed(RuntimeError):
    pass


def load_recipe(name: str, fast: bool) -> dict[str, Any]:
    path = RECIPES / name / "pipeline.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"no pipeline recipe {path}; recipes: {[p.parent.name for p in RECIPES.glob('*/pipeline.yaml')]}"
        )
    cfg = yaml.safe_load(path.read_text())
    fast_over = cfg.pop("fast", {}) or {}
    if fast:
        for section, values in fast_over.items():
            cfg.setdefault(section, {}).update(values)
    return cfg


class Pipeline:
    def __init__(self, recipe: str, out: str | os.PathLike, fast: bool = False, force: bool = False) -> None:
        self.recipe = recipe
        self.cfg = load_recipe(recipe, fast)
        self.out = Path(out).resolve()
        self.fast, self.force = fast, force
        self.logs = self.out / "logs"
        self.state_file = self.out / "pipeline.json"
        self.state: dict[str, Any] = json.loads(self.state_file.read_text()) if self.state_file.is_file() else {}
        self.state.setdefault("steps", {})

    # ---------------------------------------------------------------------------------------------------------------
    # Paths

    def path(self, *parts: str) -> Path:
        return self.out.joinpath(*parts)

    @property
    def world(self) -> Path:
        return self.path("world")

    def checkpoint(self, stage: str) -> Path:
        return self.path("model") if stage == "untrained" else self.path(stage)

    def stage_recipe(self, stage: str) -> str:
        return str(RECIPES / self.recipe / f"{stage}.yaml")

    # ---------------------------------------------------------------------------------------------------------------
    # Running

    def run(self, only: list[str] | None = None) -> dict[str, Any]:
        self.out.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        steps = [s for s in STEPS if not only or s in only]
        started = time.perf_counter()
        for k, step in enumerate(steps, 1):
            done = getattr(self, f"done_{step}")()
            label = f"[{k}/{len(steps)}] {step}"
            if done and not self.force:
                print(f"{label}: done already (skipped; --force to redo)", flush=True)
                if not self.path("report", f"{step}.json").is_file():  # a run folder from before sections existed
                    push_section(self, step)
                continue
            print(f"{label}: {getattr(self, f'step_{step}').__doc__.strip().splitlines()[0]}", flush=True)
            t0 = time.perf_counter()
            getattr(self, f"step_{step}")()
            push_section(self, step)  # the numbers this step owns, for the report
            seconds = round(time.perf_counter() - t0, 1)
            self.state["steps"][step] = {"seconds": seconds, "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
            self._save_state()
            print(f"{label}: finished in {seconds:.0f}s", flush=True)
        total = round(time.perf_counter() - started, 1)
        self.state["last_run_seconds"] = total
        self._save_state()
        print(f"pipeline finished in {total:.0f}s; report: {self.path('report.md')}", flush=True)
        return self.state

    @property
    def redo(self) -> list[str]:
        """``--force`` for the commands that resume into their folders: the pipeline's --force redoes their work."""
        return ["--force"] if self.force else []

    def _save_state(self) -> None:
        self.state.update(recipe=self.recipe, fast=self.fast)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2))
        os.replace(tmp, self.state_file)

    def command(self, step: str, args: list[str]) -> str:
        """Run ``mmreward ARGS`` (stdout to the step's log; stderr, where progress bars go, to the terminal and the
        log). Returns stdout; raises StepFailed with the log's tail on failure."""
        cmd = [sys.executable, "-m", "mmreward.cli", *[str(a) for a in args]]
        log_path = self.logs / f"{step}.log"
        env = {**os.environ, "TRL_EXPERIMENTAL_SILENCE": "1", "TOKENIZERS_PARALLELISM": "false"}
        with log_path.open("a", encoding="utf-8") as log:
            log.write(f"\n$ {' '.join(cmd)}\n")
            log.flush()
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, env=env)
            out_chunks: list[bytes] = []

            def pump_err() -> None:
                for chunk in iter(lambda: proc.stderr.read1(4096), b""):
                    sys.stderr.buffer.write(chunk)
                    sys.stderr.flush()
                    log.write(chunk.decode("utf-8", "replace"))

            t = threading.Thread(target=pump_err, daemon=True)
            t.start()
            for chunk in iter(lambda: proc.stdout.read1(4096), b""):
                out_chunks.append(chunk)
                log.write(chunk.decode("utf-8", "replace"))
            code = proc.wait()
            t.join()
        stdout = b"".join(out_chunks).decode("utf-8", "replace")
        if code != 0:
            tail = log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
            raise StepFailed(f"step {step} failed (exit {code}): mmreward {' '.join(map(str, args))}\n{tail}")
        return stdout

    # ---------------------------------------------------------------------------------------------------------------
    # Steps

    def done_model(self) -> bool:
        return self.path("model", "config.json").is_file()

    def step_model(self) -> None:
        """build the tiny model"""
        shutil.rmtree(self.path("model"), ignore_errors=True)
        args = ["init-tiny", self.path("model")]
        for k, v in self.cfg["model"].items():
            args += [f"--{k.replace('_', '-')}", v]
        self.command("model", args)

    def done_world(self) -> bool:
        return self.path("world", "manifest.json").is_file() and self.path("world", "mmreward_judge.json").is_file()

    def step_world(self) -> None:
        """generate the synthetic world (judging items and learning-to-see data)"""
        w = self.cfg["world"]
        scene = ["--seed", w["seed"], "--workers", "2"]
        if w.get("object_size"):
            scene += ["--object-size", *w["object_size"]]
        self.command("world", ["data", "synth", "--out", self.world, "--n", w["n"], *scene, *self.redo])
        args = ["tiny", "curriculum", "--out", self.world, "--see", w["see"], *scene]
        for warmup in WARMUPS:  # the warm-ups' rows, under world/see/<warm-up>/
            if w.get(warmup):
                args += [f"--{warmup}", w[warmup]]
        self.command("world", args)

    def _stage0_key(self) -> str:
        """The settings and the code that decide the stage-0 checkpoint: the model sizes, the world and stage-0
        settings, the stage-0 recipe, and the source of what builds the model, writes the learning-to-see data and
        trains on it. Keyed on settings alone, a long-lived checkout reused a checkpoint trained on older data."""
        settings = [self.cfg["model"], self.cfg["world"], self.cfg.get("vision"), self.cfg["see"], self.fast]
        settings += [self.cfg[w] for w in self._warmups()]
        blob = json.dumps(settings, sort_keys=True)
        recipes = "".join(Path(self.stage_recipe(s)).read_text() for s in self._stage0_dirs())
        h = hashlib.sha256((blob + recipes).encode())
        for path in STAGE0_SOURCES:
            for f in sorted((REPO / path).glob("*.py")) if (REPO / path).is_dir() else [REPO / path]:
                h.update(f.relative_to(REPO).as_posix().encode() + b"\0" + f.read_bytes())
        return h.hexdigest()[:16]

    def _warmups(self) -> list[str]:
        """The warm-ups that end stage 0: those of ``WARMUPS`` the recipe has a section for, in that order."""
        return [w for w in WARMUPS if self.cfg.get(w)]

    def _stage0_dirs(self) -> list[str]:
        """The run folders stage 0 writes: vision pretraining, learning to see, then each warm-up's."""
        return ["vision", "see", *self._warmups()]

    @property
    def sft_start(self) -> Path:
        """The checkpoint cold-start SFT starts from: the last of stage 0's parts."""
        return self.path(self._stage0_dirs()[-1])

    def done_see(self) -> bool:
        return all(
            self.path(d, "manifest.json").is_file() and self.path(d, "model.safetensors").is_file()
            for d in self._stage0_dirs()[1:]
        )

    def step_see(self) -> None:
        """vision pretraining, then stage 0: teach the tiny backbone to see (captions and questions about images, crops, frames)"""
        cache = REPO / "runs" / ".cache" / "stage0" / self._stage0_key()
        caches = {d: cache if d == "see" else cache.with_name(f"{cache.name}-{d}") for d in self._stage0_dirs()}
        if all((c / "manifest.json").is_file() for c in caches.values()) and not self.force:
            for d, src in caches.items():
                shutil.rmtree(self.path(d), ignore_errors=True)
                shutil.copytree(src, self.path(d))
            print(f"  reused the cached stage-0 checkpoint {cache}", flush=True)
            return
        v = self.cfg.get("vision") or {}
        self.command(
            "see",
            ["tiny", "vision", "--config", self.stage_recipe("vision"),
             "--model_name_or_path", self.path("model"), "--output_dir", self.path("vision"),
             *[x for k, val in v.items() for x in (f"--{k}", *(val if isinstance(val, list) else [val]))]],
        )  # fmt: skip
        s = self.cfg["see"]
        self.command(
            "see",
            ["tiny", "see", "--config", self.stage_recipe("see"),
             "--model_name_or_path", self.path("vision"),
             "--chat_files", self.world / "see" / "train.jsonl",
             "--eval_see", self.world / "see" / "val.jsonl",
             "--eval_see_limit", s["eval_see_limit"],
             "--num_train_epochs", s["num_train_epochs"],
             "--output_dir", self.path("see"), "--report_to", "tensorboard"],
        )  # fmt: skip
        dirs = self._stage0_dirs()
        for prev, w in zip(dirs[1:], dirs[2:]):  # each warm-up starts from the step before it
            c = self.cfg[w]
            self.command(
                "see",
                ["tiny", "see", "--config", self.stage_recipe(w),
                 "--model_name_or_path", self.path(prev),
                 "--chat_files", self.world / "see" / w / "train.jsonl",
                 "--eval_see", self.world / "see" / w / "val.jsonl",
                 "--eval_see_limit", c["eval_see_limit"], "--max_steps", c["max_steps"],
                 "--output_dir", self.path(w), "--report_to", "tensorboard"],
            )  # fmt: skip
        cache.parent.mkdir(parents=True, exist_ok=True)
        for d, dst in caches.items():
            src = self.path(d)
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("checkpoint-*", "runs"))

    def done_distill(self) -> bool:
        return self.path("distill", "manifest.json").is_file()

    def step_distill(self) -> None:
        """distill reference trajectories with the oracle teacher"""
        self.command(
            "distill",
            ["data", "distill", "--records", self.world / "train.jsonl", "--teacher", "oracle",
             "--out", self.path("distill"), "--swap", self.cfg["distill"]["swap"],
             "--crop-policy", self.cfg["distill"].get("crop_policy", "zoom"), *self.redo],
        )  # fmt: skip

    def _train(self, stage: str, model: Path, extra: list[Any]) -> None:
        s = self.cfg[stage]
        self.command(
            stage,
            ["train", stage, "--config", self.stage_recipe(stage), "--model_name_or_path", model,
             "--eval_records", self.world / "val.jsonl", "--eval_limit", s["eval_limit"],
             "--eval_max_new_tokens", s.get("eval_max_new_tokens", 224),
             "--settings_file", self.world / "mmreward_judge.json",
             "--output_dir", self.path(stage), "--report_to", "tensorboard", *extra],
        )  # fmt: skip

    def done_sft(self) -> bool:
        return self.path("sft", "manifest.json").is_file()

    def step_sft(self) -> None:
        """cold-start SFT on the distilled trajectories"""
        s = self.cfg["sft"]
        extra = ["--train_files", self.path("distill", "kept.jsonl"), "--num_train_epochs", s["num_train_epochs"]]
        # Keep the warm-ups' skills while the judge learns its trajectories: the first N rows of each.
        rows = [(w, s[f"{w}_rows"]) for w in WARMUPS if s.get(f"{w}_rows")]
        if rows:
            extra += ["--chat_files", *[self.world / "see" / w / "train.jsonl" for w, _ in rows]]
            extra += ["--chat_limit", *[n for _, n in rows]]
        self._train("sft", self.sft_start, extra)

    def done_reject(self) -> bool:
        return self.path("rejection", "report.json").is_file()

    def step_reject(self) -> None:
        """rejection sampling from the SFT model (K samples per item, tools on)"""
        r = self.cfg["reject"]
        self.command(
            "reject",
            ["data", "reject", "--model", self.path("sft"), "--records", self.world / "train.jsonl",
             "--out", self.path("rejection"), "--k", r["k"], "--limit", r["limit"],
             "--temperature", r["temperature"], "--max-new-tokens", r["max_new_tokens"], "--world", *self.redo],
        )  # fmt: skip

    def done_rft(self) -> bool:
        return self.path("rft", "manifest.json").is_file()

    def step_rft(self) -> None:
        """RFT: SFT on the accepted trajectories, mixed with the cold-start data"""
        files = [
            f for f in (self.path("rejection", "accepted.jsonl"), self.path("distill", "kept.jsonl")) if _nonempty(f)
        ]
        self._train(
            "rft",
            self.path("sft"),
            ["--train_files", *files, "--num_train_epochs", self.cfg["rft"]["num_train_epochs"]],
        )

    def done_grpo(self) -> bool:
        return self.path("grpo", "manifest.json").is_file()

    def step_grpo(self) -> None:
        """GRPO with multi-turn tool rollouts on the GRPO pool"""
        g = self.cfg["grpo"]
        pool = self.path("rejection", "grpo_pool.jsonl")
        records = pool if _nonempty(pool) else self.world / "train.jsonl"
        self._train(
            "grpo",
            self.path("rft"),
            ["--train_files", records, "--media_root", self.world, "--max_steps", g["max_steps"],
             "--limit", g["limit"], *(["--max_completion_length", g["max_completion_length"]]
                                      if g.get("max_completion_length") else [])],
        )  # fmt: skip

    def eval_dir(self, stage: str, split: str, tools: str) -> Path:
        return self.path("eval", stage, f"{split}-tools_{tools}")

    def done_eval(self) -> bool:
        return (
            all(
                (self.eval_dir(st, sp, t) / "metrics.json").is_file()
                for st in STAGES
                for sp in self.cfg["eval"]["splits"]
                for t in ("on", "off")
            )
            and self.path("eval", "oracle.json").is_file()
            and all(self.path("eval", "probes", who, "probes.json").is_file() for who in ("grpo", "oracle"))
        )

    def step_eval(self) -> None:
        """evaluate every stage's checkpoint on the test and compositional splits, tools on and off"""
        e = self.cfg["eval"]
        for stage in STAGES:
            for split in e["splits"]:
                for tools in ("on", "off"):
                    d = self.eval_dir(stage, split, tools)
                    if (d / "metrics.json").is_file() and not self.force:
                        continue
                    print(f"  {stage} on {split}, tools {tools}", flush=True)
                    self.command(
                        "eval",
                        ["eval", "run", "--suite", f"synthetic_{split}", "--model", self.checkpoint(stage),
                         "--data", self.world, "--out", d, "--limit", e["limit"], "--tools", tools,
                         "--max-new-tokens", e["max_new_tokens"], *self.redo],
                    )  # fmt: skip
        from data_pipelines.synthetic.oracle import oracle_accuracy  # noqa: PLC0415

        oracle = {sp: oracle_accuracy(str(self.world), sp, limit=e.get("oracle_limit")) for sp in e["splits"]}
        (self.path("eval", "oracle.json")).write_text(json.dumps(oracle, indent=2))
        # Reward-hacking probes on the final judge, and on the oracle, which must pass them all (the probes are fair).
        for who, model in (("grpo", self.checkpoint("grpo")), ("oracle", "oracle")):
            d = self.path("eval", "probes", who)
            if (d / "probes.json").is_file() and not self.force:
                continue
            print(f"  reward-hacking probes: {who}", flush=True)
            self.command(
                "eval",
                ["eval", "probe", "--model", model, "--data", self.world, "--out", d,
                 "--limit", e.get("probe_limit", 8), "--max-new-tokens", e["max_new_tokens"]],
            )  # fmt: skip

    def done_serve(self) -> bool:
        return self.path("serve", "smoke.json").is_file()

    def step_serve(self) -> None:
        """smoke check: serve the final model and judge a few test pairs through the openai client"""

        result = serve_smoke(self.path("grpo"), self.world, self.cfg["serve"]["requests"])
        self.path("serve").mkdir(exist_ok=True)
        self.path("serve", "smoke.json").write_text(json.dumps(result, indent=2))

    def done_report(self) -> bool:
        return False  # cheap: always rewritten from what is on disk

    def step_report(self) -> None:
        """write report.md, plots and the final model card"""

        table = write_report(self)
        print(table, flush=True)


def _nonempty(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


# --------------------------------------------------------------------------------------------------------------------
# CLI


def register(sub) -> dict:
    p = sub.add_parser(
        "pipeline",
        help="run the whole staged pipeline on the embedded default (tiny model, synthetic world)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--recipe", default="tiny-cpu", help="train/recipes/<recipe>/pipeline.yaml")
    p.add_argument("--out", default="runs/quickstart", help="the run folder: every step's output, report.md")
    p.add_argument("--fast", action="store_true", help="a few-minute smoke version (tiny data, few steps)")
    p.add_argument("--force", action="store_true", help="redo steps whose output exists")
    p.add_argument("--only", nargs="+", choices=STEPS, help="run only these steps")
    return {"pipeline": cmd_pipeline}


def cmd_pipeline(args: argparse.Namespace) -> int:
    try:
        Pipeline(args.recipe, args.out, args.fast, args.force).run(args.only)
    except StepFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
