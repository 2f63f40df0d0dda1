"""The pipeline's report: a summary table (terminal and ``report.md``), plots, the goals check, the model card,
and the judge-server smoke check. Each step pushes the numbers it owns (:func:`push_section`, read from what the
stage wrote: manifests, eval predictions) to ``<out>/report/``, and :func:`write_report` assembles those sections;
nothing here trains or judges except the smoke check."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from data_pipelines.batch import mean_by_group
from data_pipelines.labels import chance_accuracy, first_choices
from data_pipelines.records import read_records
from data_pipelines.synthetic.oracle import world_groups
from mmreward_tiny.steps import STAGES, WARMUPS

GOALS = {  # after the pipeline, on the final checkpoint
    "test image tasks (tools on)": ("test", "on", "visual=image", 0.85),
    "test video tasks (tools on)": ("test", "on", "visual=video", 0.75),
    "compositional (tools on)": ("compositional", "on", "all", 0.75),
}
NEEDS_TOOL_GAIN = 0.10


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def eval_groups(eval_dir: Path, records: dict[str, Any]) -> dict[str, Any] | None:
    """Accuracy by world group (all, kind, image/video, needs-tool), tool-call and parse-failure rates, and the share
    of decided pairwise verdicts that name the candidate shown first (near 0 or 1: the judge answers by position)."""
    pred = eval_dir / "predictions.jsonl"
    if not pred.is_file():
        return None
    rows = [json.loads(x) for x in pred.read_text().splitlines() if x.strip()]
    known = [(records[r["record_id"]], r) for r in rows if r["record_id"] in records]
    accuracy, counts = mean_by_group((world_groups(rec), bool(r["correct"])) for rec, r in known)
    chance, _ = mean_by_group((world_groups(rec), chance_accuracy(rec)) for rec, _ in known)
    n = max(1, len(rows))
    first = first_choices(r["verdict"] for r in rows)
    return {
        "accuracy": accuracy,
        "chance": chance,
        "n": counts,
        "tool_call_rate": round(sum(r["tool_calls"] > 0 for r in rows) / n, 4),
        "parse_failure_rate": round(sum(r["verdict"] is None for r in rows) / n, 4),
        "first_is_better": round(sum(first) / len(first), 4) if first else None,
    }


# --------------------------------------------------------------------------------------------------------------------
# Sections: each step pushes the numbers it owns to <out>/report/<step>.json when it has run; the report is written
# from those files alone.


def _stage0_section(pipe) -> dict[str, Any]:
    manifests = {s: _read(pipe.path(s, "manifest.json")) for s in ("vision", "see", *WARMUPS)}
    return {
        "vision": (manifests["vision"] or {}).get("summary"),
        "perception": (manifests["see"] or {}).get("summary", {}).get("perception"),
        "warmups": {w: (manifests[w] or {}).get("summary", {}).get("perception") for w in WARMUPS if manifests[w]},
        "summaries": {s: (m or {}).get("summary") for s, m in manifests.items()},
    }


def _training_section(stage: str):
    def section(pipe) -> dict[str, Any]:
        return {"summaries": {stage: (_read(pipe.path(stage, "manifest.json")) or {}).get("summary")}}

    return section


def _eval_section(pipe) -> dict[str, Any]:
    splits = pipe.cfg["eval"]["splits"]
    records = {
        sp: {r.id: r for r in read_records(pipe.world / f"{sp}.jsonl")}
        for sp in splits
        if (pipe.world / f"{sp}.jsonl").is_file()
    }
    evals: dict[str, dict] = {}
    for stage in STAGES:
        for sp in splits:
            for tools in ("on", "off"):
                g = eval_groups(pipe.eval_dir(stage, sp, tools), records.get(sp, {}))
                if g is not None:
                    evals.setdefault(stage, {}).setdefault(sp, {})[tools] = g
    return {"evals": evals, "oracle": _read(pipe.path("eval", "oracle.json"))}


SECTIONS = {
    "see": _stage0_section,
    "distill": lambda pipe: {"distill": _read(pipe.path("distill", "summary.json"))},
    "sft": _training_section("sft"),
    "reject": lambda pipe: {"rejection": _read(pipe.path("rejection", "report.json"))},
    "rft": _training_section("rft"),
    "grpo": _training_section("grpo"),
    "eval": _eval_section,
    "serve": lambda pipe: {"serve": _read(pipe.path("serve", "smoke.json"))},
}


def push_section(pipe, step: str) -> None:
    """Record what ``step`` produced for the report (steps without numbers of their own push nothing)."""
    if step not in SECTIONS:
        return
    folder = pipe.path("report")
    folder.mkdir(exist_ok=True)
    tmp = folder / f".{step}.json.tmp"
    tmp.write_text(json.dumps(SECTIONS[step](pipe), indent=2, default=str))
    tmp.replace(folder / f"{step}.json")


def collect(pipe) -> dict[str, Any]:
    """The report's data: every pushed section, in step order, and the pipeline's own timings."""
    data: dict[str, Any] = {
        "evals": {},
        "oracle": None,
        "vision": None,
        "perception": None,
        "warmups": {},
        "summaries": {},
        "distill": None,
        "rejection": None,
        "serve": None,
    }
    for step in SECTIONS:
        section = _read(pipe.path("report", f"{step}.json")) or {}
        data["summaries"].update(section.pop("summaries", {}))
        data.update(section)
    data["steps"] = pipe.state.get("steps", {})
    return data


# How the report names each stage-0 warm-up (mmreward_tiny.pipeline.WARMUPS) and the rows it trains on.
WARMUP_TITLES = {
    "compare": ("0b", "comparing with the prompt", "text-only rows: a prompt and what a picture shows"),
    "crops": ("0c", "one crop at a time", "rows of one candidate's crop after the prompt, as the judge gets it"),
}


def _warmup_scores(scores: dict | None) -> tuple[float | None, float | None]:
    """A warm-up's held-out scores: the per-crop match call and the exact answer."""
    scores = scores or {}
    call = (scores.get("groups", {}).get("compare_match_call") or {}).get("accuracy")
    return call, scores.get("accuracy")


def _warmup_rows(pipe, data: dict) -> str:
    """The stages table's rows for the warm-ups the recipe has."""
    out = ""
    for w in pipe._warmups():
        code, name, what = WARMUP_TITLES[w]
        call, exact = _warmup_scores(data.get("warmups", {}).get(w))
        n = (data["summaries"].get(w) or {}).get("chat_examples", "-")
        out += f"| {code} {name} | {n} {what} | match call {_f(call)}, exact answer {_f(exact)} (held out) |\n"
    return out


def _acc(evals, stage, split, tools, group="all"):
    return evals.get(stage, {}).get(split, {}).get(tools, {}).get("accuracy", {}).get(group)


def _f(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def goals(data: dict[str, Any]) -> list[dict[str, Any]]:
    ev = data["evals"]
    out = []
    for name, (split, tools, group, target) in GOALS.items():
        got = _acc(ev, "grpo", split, tools, group)
        out.append({"goal": f"{name} >= {target}", "value": got, "met": got is not None and got >= target})
    on, off = _acc(ev, "grpo", "test", "on", "needs_tool=True"), _acc(ev, "grpo", "test", "off", "needs_tool=True")
    gain = None if on is None or off is None else round(on - off, 4)
    out.append(
        {
            "goal": f"needs-tool items: tools on - tools off >= {NEEDS_TOOL_GAIN}",
            "value": gain,
            "met": gain is not None and gain >= NEEDS_TOOL_GAIN,
        }
    )
    return out


def summary_table(data: dict[str, Any], splits: list[str]) -> str:
    ev = data["evals"]
    head = ["stage"] + [f"{sp} {g}" for sp in splits for g in ("all", "image", "video")]
    head += ["needs-tool on", "needs-tool off", "tool calls", "parse fail", "first shown"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for stage in STAGES:
        if stage not in ev:
            continue
        cells = [stage]
        for sp in splits:
            for g in ("all", "visual=image", "visual=video"):
                cells.append(_f(_acc(ev, stage, sp, "on", g)))
        cells += [
            _f(_acc(ev, stage, "test", "on", "needs_tool=True")),
            _f(_acc(ev, stage, "test", "off", "needs_tool=True")),
        ]
        t = ev[stage].get("test", {}).get("on", {})
        cells += [_f(t.get("tool_call_rate")), _f(t.get("parse_failure_rate")), _f(t.get("first_is_better"))]
        lines.append("| " + " | ".join(cells) + " |")
    # the level a judge must beat: a uniformly random valid verdict on the same items (first stage evaluated)
    first = next((ev[s] for s in STAGES if s in ev), None)
    if first:
        cells = ["chance (random verdict)"]
        for sp in splits:
            ch = first.get(sp, {}).get("on", {}).get("chance", {})
            cells += [_f(ch.get("all")), _f(ch.get("visual=image")), _f(ch.get("visual=video"))]
        ch = first.get("test", {}).get("on", {}).get("chance", {})
        cells += [_f(ch.get("needs_tool=True")), _f(ch.get("needs_tool=True")), "-", "-", "0.500"]
        lines.append("| " + " | ".join(cells) + " |")
    o = data.get("oracle") or {}
    for name, key in (("oracle (tools)", "tools"), ("oracle (overview only)", "overview_only")):
        if not o:
            break
        cells = [name]
        for sp in splits:
            acc = (o.get(sp) or {}).get(key, {}).get("accuracy", {})
            cells += [_f(acc.get("all")), _f(acc.get("visual=image")), _f(acc.get("visual=video"))]
        acc = (o.get("test") or {}).get(key, {}).get("accuracy", {})
        cells += [
            _f(acc.get("needs_tool=True")),
            "-",
            _f((o.get("test") or {}).get(key, {}).get("tool_calls_per_item")),
            "-",
            "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plots(data: dict[str, Any], out: Path, splits: list[str]) -> list[str]:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    ev = data["evals"]
    stages = [s for s in STAGES if s in ev]
    if not stages:
        return []
    paths = []
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    width = 0.8 / max(1, 2 * len(splits))
    k = 0
    for sp in splits:
        for tools in ("on", "off"):
            vals = [_acc(ev, s, sp, tools) or 0 for s in stages]
            axes[0].bar([i + k * width for i in range(len(stages))], vals, width, label=f"{sp}, tools {tools}")
            k += 1
    axes[0].set_xticks([i + 0.4 - width / 2 for i in range(len(stages))], stages)
    axes[0].set_title("accuracy per stage and split")
    axes[0].set_ylim(0, 1)
    axes[0].legend(fontsize=7)
    for group, label in (("needs_tool=True", "needs-tool"), ("needs_tool=False", "no tool needed")):
        axes[1].plot(stages, [_acc(ev, s, "test", "on", group) or 0 for s in stages], marker="o", label=f"{label}, on")
        axes[1].plot(
            stages,
            [_acc(ev, s, "test", "off", group) or 0 for s in stages],
            marker="x",
            ls="--",
            label=f"{label}, off",
        )
    axes[1].set_title("test: tools on vs off")
    axes[1].set_ylim(0, 1)
    axes[1].legend(fontsize=7)
    axes[2].plot(
        stages,
        [ev[s].get("test", {}).get("on", {}).get("tool_call_rate", 0) for s in stages],
        marker="o",
        label="tool-call rate",
    )
    axes[2].plot(
        stages,
        [ev[s].get("test", {}).get("on", {}).get("parse_failure_rate", 0) for s in stages],
        marker="x",
        label="parse failures",
    )
    axes[2].set_title("test (tools on): tool calls and parse failures")
    axes[2].set_ylim(0, 1)
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    path = out / "accuracy.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    paths.append(str(path))
    return paths


def _vision_data(v: dict[str, Any] | None) -> str:
    return f"{v['images']:,} drawn scenes, one label per image token" if v else "-"


def _vision_result(v: dict[str, Any] | None) -> str:
    if not v:
        return "-"
    return (
        ", ".join(f"{k} {v['before'][k]:.2f} -> {v['after'][k]:.2f}" for k in v["targets"]) + " (per token, held out)"
    )


def vision_lines(v: dict[str, Any] | None) -> list[str]:
    """The vision pretraining section: per-token accuracy before and after, beside chance."""
    if not v:
        return []
    lines = [
        "## Vision pretraining (per image token, held-out drawn scenes)",
        "",
        "| target | before | after | chance |",
        "|---|---|---|---|",
    ]
    for k in v["targets"]:
        lines.append(f"| {k} | {v['before'][k]:.3f} | {v['after'][k]:.3f} | {v['chance'][k]:.3f} |")
    if "background" in v["after"]:
        lines.append(f"| background | {v['before'].get('background', 0):.3f} | {v['after']['background']:.3f} | - |")
    lines += [
        "",
        f"{v['steps']} steps on {v['images']:,} scenes in {v['train_runtime']:.0f}s; shape and colour on the tokens"
        " that hold an object. Row and column are learned only by towers with absolute position embeddings"
        f" ({'this one has them' if v['absolute_positions'] else 'this one has only rotary positions'}).",
        "",
    ]
    return lines


def model_card(pipe, data: dict[str, Any], table: str) -> str:
    s = data["summaries"]
    return f"""---
library_name: transformers
tags: [mmreward, reward-model, vision-language, judge, tool-use]
---
# mmreward tiny judge (synthetic world)

A thinking multimodal reward model trained by `mmreward pipeline --recipe {pipe.recipe}` on the embedded synthetic
world. It is a toy: a Qwen2.5-VL-architecture model with about a million parameters, trained from random weights on
2 CPU cores. It exists to show that every stage of mmreward runs and what each does; it judges only the synthetic
world's shapes and clips.

## Base architecture
`Qwen2_5_VLForConditionalGeneration` built by `mmreward init-tiny` with sizes {json.dumps(pipe.cfg["model"])},
a tokenizer trained on the project's vocabulary and a tool-calling chat template.

## Protocol and answer format
Each assistant turn is `<think>...</think>` then one `<tool_call>{{"name": ..., "arguments": {{...}}}}</tool_call>`
(`crop(image, bbox_2d)` with 0-1000 relative coordinates, `select_frames(video, frames|timestamps)`) or an
`<answer>` (`Image 1 is better`, `Video 2 is better`, `Answer 1 is better`, `Tie`, `Score: 7`, or one
`<Dimension>: ...` line per dimension and `Overall: ...`). Videos travel as an overview of frames. Visual settings
of the synthetic world: overview images at most 112x112, 4 overview frames (`data_pipelines.synthetic.generate.WORLD_VISUAL`).

## Stages and their data
| stage | data | result |
|---|---|---|
| 0a vision pretraining | {_vision_data(data.get("vision"))} | {_vision_result(data.get("vision"))} |
| 0 learning to see | {pipe.cfg["world"]["see"]} captions/questions on images, crops, frames | perception {_f((data.get("perception") or {}).get("accuracy"))} (exact match, held out) |
{_warmup_rows(pipe, data)}| 1 cold-start SFT | oracle-distilled trajectories ({(data.get("distill") or {}).get("kept", "-")} kept) | val {_f(((s.get("sft") or {}).get("eval") or {}).get("accuracy"))} |
| 2 rejection sampling + RFT | K={pipe.cfg["reject"]["k"]} samples on {pipe.cfg["reject"]["limit"]} items | val {_f(((s.get("rft") or {}).get("eval") or {}).get("accuracy"))} |
| 3 GRPO with tools | the GRPO pool, {pipe.cfg["grpo"]["max_steps"]} steps | val {_f(((s.get("grpo") or {}).get("eval_after") or {}).get("accuracy"))} |

## Evaluation (synthetic test and compositional splits; tools on unless noted)
{table}
{chr(10).join(probe_lines(pipe))}

## Use
```bash
mmreward judge --model {pipe.path("grpo")} --prompt "a red circle" --image a.png --image b.png --swap both
mmreward serve --model {pipe.path("grpo")} --port 8000     # /v1/judge, /v1/rewards, OpenAI-compatible chat
```
```python
from mmreward.judge import Judge
judge = Judge.from_pretrained("{pipe.path("grpo")}")
print(judge.compare("a red circle", ["a.png", "b.png"]).outcome)
```
"""


def probe_lines(pipe) -> list[str]:
    """The reward-hacking probe tables of the final judge and the oracle (``eval/probes/*/probes.md``)."""
    lines = []
    for who in ("grpo", "oracle"):
        f = pipe.path("eval", "probes", who, "probes.md")
        if f.is_file():
            lines += ["", f.read_text().replace("## Reward-hacking probes: ", f"### {who}: ", 1)]
    return ["", "## Robustness: reward-hacking probes", *lines] if lines else []


def write_report(pipe) -> str:
    splits = pipe.cfg["eval"]["splits"]
    data = collect(pipe)
    table = summary_table(data, splits)
    plot_paths = plots(data, pipe.out, splits)
    checks = goals(data)
    lines = [
        f"# mmreward pipeline report ({pipe.recipe}{', fast' if pipe.fast else ''})",
        "",
        f"Written {time.strftime('%Y-%m-%d %H:%M:%S')} from `{pipe.out}`.",
        "",
        "## Held-out judging accuracy per stage",
        "",
        table,
        "",
        "![accuracy](accuracy.png)" if plot_paths else "",
        "",
        "## Goals (final checkpoint)",
        "",
        "| goal | value | met |",
        "|---|---|---|",
        *[f"| {c['goal']} | {_f(c['value'])} | {'yes' if c['met'] else 'no'} |" for c in checks],
        "",
        *vision_lines(data.get("vision")),
        "## Stage 0: perception (held-out captions and questions, exact match)",
        "",
    ]
    perception = data.get("perception") or {}
    for k, v in (perception.get("groups") or {}).items():
        lines.append(f"- {k}: {v['accuracy']:.3f} (n={v['n']})")
    locate = perception.get("locate")
    if locate:
        lines.append(
            f"- crop boxes (locating questions, n={locate['n']}): median centre error {locate['median_centre_error']}"
            f" (a constant box: {locate['constant_box_median_centre_error']}), mean IoU {locate['mean_iou']:.3f}"
            f" (constant box: {locate['constant_box_mean_iou']:.3f}), 0-1000 coordinates"
        )
    if perception.get("visual_contrast") is not None:
        lines.append(
            f"- object/background contrast of the image tokens on overviews: {perception['visual_contrast']:.4f}"
            " (about 0.2 at random init; near 0 means the image features collapsed to a constant)"
        )
    for w, scores in data.get("warmups", {}).items():
        call, exact = _warmup_scores(scores)
        code, name, what = WARMUP_TITLES[w]
        lines += [
            "",
            f"## Stage {code}: {name} (held-out {what})",
            "",
            f"- match / no-match call per crop: {_f(call)}; whole answer exact: {_f(exact)} (n={scores.get('items')})",
        ]
    lines += ["", "## Training", ""]
    for stage in ("see", *WARMUPS, "sft", "rft", "grpo"):
        s = data["summaries"].get(stage)
        if not s:
            continue
        brief = {
            k: s.get(k)
            for k in ("global_step", "train_loss", "seconds", "train_trajectories", "chat_examples", "rows")
        }
        lines.append(f"- **{stage}**: {json.dumps({k: v for k, v in brief.items() if v is not None})}")
        if (pipe.path(stage, "curves.png")).is_file():
            lines.append(f"  ![{stage} curves]({stage}/curves.png)")
    g = data["summaries"].get("grpo") or {}
    if g.get("eval_before") or g.get("eval_after"):
        lines += [
            "",
            f"GRPO on val: before {json.dumps(g.get('eval_before'))}",
            f"after {json.dumps(g.get('eval_after'))}",
        ]
    rej = data.get("rejection") or {}
    if rej:
        overall = (rej.get("groups") or {}).get("all", {})
        lines += [
            "",
            f"Rejection sampling: {json.dumps({k: overall.get(k) for k in ('items', 'pass@1', 'pass@k', 'tool_call_rate', 'parse_failure_rate')})}",
        ]
    lines += probe_lines(pipe)
    serve = data.get("serve") or {}
    if serve:
        lines += ["", "## Judge server smoke check", "", f"```json\n{json.dumps(serve, indent=2)[:2000]}\n```"]
    lines += ["", "## Time per step (seconds)", ""]
    for step, info in data["steps"].items():
        lines.append(f"- {step}: {info.get('seconds')}")
    (pipe.out / "report.md").write_text("\n".join(lines) + "\n")
    (pipe.out / "report.json").write_text(json.dumps({**data, "goals": checks}, indent=2, default=str))
    final = pipe.path("grpo")
    if final.is_dir():
        (final / "README.md").write_text(model_card(pipe, data, table))
    return (
        table + "\n\n" + "\n".join(f"{'met ' if c['met'] else 'MISS'} {c['goal']}: {_f(c['value'])}" for c in checks)
    )


# --------------------------------------------------------------------------------------------------------------------


def serve_smoke(model_dir: Path, world: Path, n_requests: int) -> dict[str, Any]:
    """Start the judge server on ``model_dir`` (with the visual settings it recorded), send ``n_requests`` test image
    pairs through the ``openai`` client and one ``/v1/rewards`` group, stop it."""
    import openai  # noqa: PLC0415

    from mmreward.client import JudgeClient, encode_media  # noqa: PLC0415
    from mmreward.server import BackendSettings, BackgroundServer, ServerSettings, build_judge  # noqa: PLC0415

    # The checkpoint records the visual/tool settings it was trained with; build_judge uses them.
    judge = build_judge(BackendSettings(model=str(model_dir), max_new_tokens=160, max_turns=4, max_tool_calls=2))
    pairs = [r for r in read_records(world / "test.jsonl") if r.task == "pairwise" and r.modality == "image"]
    results = []
    started = time.perf_counter()
    with BackgroundServer(judge, ServerSettings(port=0)) as srv:
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="local", max_retries=0, timeout=300)
        for r in pairs[:n_requests]:
            t0 = time.perf_counter()
            content = [{"type": "text", "text": r.prompt}] + [
                {"type": "image_url", "image_url": {"url": encode_media(world / c)}} for c in r.candidates
            ]
            out = client.chat.completions.create(
                model="mmreward-judge", messages=[{"role": "user", "content": content}]
            )
            verdict = out.model_extra["mmreward"]
            results.append(
                {
                    "record": r.id,
                    "label_preferred": r.preferred,
                    "preferred": verdict["preferred"],
                    "outcome": verdict["outcome"],
                    "latency_s": round(time.perf_counter() - t0, 3),
                    "answer": out.choices[0].message.content[-200:],
                }
            )
        with JudgeClient(srv.url) as jc:
            group = jc.rewards(pairs[0].prompt, [world / c for c in pairs[0].candidates], mode="pairwise_winrate")
            health = jc.health()
    return {
        "requests": len(results),
        "all_answered": all(x["outcome"] for x in results),
        "seconds": round(time.perf_counter() - started, 2),
        "chat_completions": results,
        "rewards_pairwise_winrate": {"rewards": group["rewards"], "failures": group["failures"]},
        "health": health,
    }
