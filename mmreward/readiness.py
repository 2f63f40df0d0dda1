"""``mmreward check-model``: is a checkpoint folder ready for each stage, and if not, what to fix.

Reads the folder as the stages do (config, adapter chain, processor, tokenizer, chat template, recorded judge
settings) without loading weights, and reports one row per stage: judge, SFT, GRPO with tools, serve, and the vLLM
backend (which reads the folder's own files, so the template must be on disk, not only installed at load).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STAGES = ("judge", "sft", "grpo", "serve", "vllm")
NEEDS = {
    # stage -> the checks it needs (names of Finding.check)
    "judge": ("config", "chain", "tokens", "processor", "template_loaded", "settings"),
    "sft": ("config", "chain", "tokens", "processor", "template_loaded", "settings"),
    "grpo": ("config", "chain", "tokens", "processor", "template_loaded", "settings", "grpo_tools"),
    "serve": ("config", "chain", "tokens", "processor", "template_loaded", "settings"),
    "vllm": ("config", "tokens", "processor", "template_loaded", "settings", "full_checkpoint"),
}
VISION_TOKENS = {
    "image_token_id": "<|image_pad|>",
    "video_token_id": "<|video_pad|>",
    "vision_start_token_id": "<|vision_start|>",
    "vision_end_token_id": "<|vision_end|>",
}


@dataclass
class Finding:
    check: str
    ok: bool
    detail: str
    fix: str = ""


@dataclass
class Readiness:
    model: str
    findings: list[Finding] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def add(self, check: str, ok: bool, detail: str, fix: str = "") -> None:
        self.findings.append(Finding(check, ok, detail, fix))

    def failed(self, check: str) -> list[Finding]:
        return [f for f in self.findings if f.check == check and not f.ok]

    def stages(self) -> dict[str, list[Finding]]:
        """Each stage's failing findings (empty: ready)."""
        return {stage: [f for c in NEEDS[stage] for f in self.failed(c)] for stage in STAGES}

    @property
    def ok(self) -> bool:
        return not any(self.stages().values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "ready": self.ok,
            "stages": {
                s: {"ready": not fails, "problems": [f.detail for f in fails]} for s, fails in self.stages().items()
            },
            "findings": [f.__dict__ for f in self.findings],
            "info": self.info,
        }

    def render(self) -> str:
        lines = [f"mmreward check-model {self.model}", ""]
        lines.append(f"{'stage':<8} {'ready':<6} problems")
        for stage, fails in self.stages().items():
            problems = "; ".join(sorted({f.check for f in fails})) or "-"
            lines.append(f"{stage:<8} {'yes' if not fails else 'NO':<6} {problems}")
        lines += ["", "checks:"]
        for f in self.findings:
            lines.append(f"  [{'ok' if f.ok else 'FAIL'}] {f.check}: {f.detail}")
            if not f.ok and f.fix:
                lines.append(f"         fix: {f.fix}")
        for key, value in self.info.items():
            lines.append(f"  {key}: {value}")
        return "\n".join(lines)


def check_model(path: str | Path, base_model: str | None = None) -> Readiness:
    from transformers import AutoProcessor  # noqa: PLC0415

    from mmreward.chat_templates import check_template, ensure_tool_template, family_of, stock_template  # noqa: PLC0415
    from mmreward.modeling import ModelLoadError, adapter_chain, has_processor, read_model_type  # noqa: PLC0415

    path = Path(path)
    report = Readiness(str(path))
    # The chain of adapters, and the full checkpoint under it.
    try:
        root, adapters = adapter_chain(path, base_model)
        chain = " -> ".join(str(p) for p in [root, *adapters])
        report.add("chain", True, f"weights: {chain}" if adapters else "a full checkpoint (no adapter)")
    except ModelLoadError as exc:
        report.add("chain", False, str(exc), "pass --base-model, or run `mmreward merge` where the base exists")
        root, adapters = path, []
    report.add(
        "full_checkpoint",
        not adapters,
        "full weights in the folder" if not adapters else "a LoRA adapter: vLLM serves full checkpoints",
        f"mmreward merge {path} {path}-merged, and serve that folder",
    )
    try:
        model_type = read_model_type(root)
        config = json.loads((root / "config.json").read_text(encoding="utf-8"))
        report.add("config", True, f"model_type {model_type}")
    except ModelLoadError as exc:
        report.add("config", False, str(exc), "give a Qwen2-VL / Qwen2.5-VL / Qwen3-VL checkpoint folder")
        return report
    processor_dir = next((p for p in [*reversed(adapters), root] if has_processor(p)), root)
    processor = AutoProcessor.from_pretrained(processor_dir)
    tok = processor.tokenizer

    # Special tokens: the config's ids are the tokenizer's, and the turn end is an end-of-generation id.
    bad = []
    for key, token in VISION_TOKENS.items():
        cid, tid = config.get(key), tok.convert_tokens_to_ids(token)
        if cid is not None and cid != tid:
            bad.append(f"{key}={cid} but the tokenizer has {token}={tid}")
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    gen_path = next(
        (p / "generation_config.json" for p in (path, root) if (p / "generation_config.json").is_file()), None
    )
    gen = json.loads(gen_path.read_text(encoding="utf-8")) if gen_path else {}
    eos = gen.get("eos_token_id", config.get("eos_token_id"))
    eos = eos if isinstance(eos, list) else [eos]
    if im_end not in eos:
        bad.append(f"<|im_end|> ({im_end}) is not among the end-of-generation ids {eos}")
    report.add(
        "tokens",
        not bad,
        "; ".join(bad) or f"vision ids {[config.get(k) for k in VISION_TOKENS]}, <|im_end|>={im_end}, eos {eos}",
        "the tokenizer and config.json must come from the same release",
    )
    report.info["generation_config"] = {
        k: gen[k] for k in ("do_sample", "temperature", "top_p", "top_k", "repetition_penalty") if k in gen
    }

    # Processor: patch and merge factors, pixel budgets.
    ip = processor.image_processor
    factor = int(ip.patch_size) * int(ip.merge_size)
    size = getattr(ip, "size", None) or {}
    min_px = size.get("shortest_edge", getattr(ip, "min_pixels", None))
    max_px = size.get("longest_edge", getattr(ip, "max_pixels", None))
    vision_patch = (config.get("vision_config") or {}).get("patch_size")
    ok = vision_patch in (None, ip.patch_size)
    report.add(
        "processor",
        ok,
        f"patch {ip.patch_size} x merge {ip.merge_size} = {factor} px per visual token; pixels {min_px}..{max_px}"
        + ("" if ok else f"; but the vision tower's patch is {vision_patch}"),
        "use the processor files of the same release",
    )

    # Chat template: as saved on disk (vLLM reads it), and as the loader leaves it (every mmreward stage).
    family = family_of(model_type)
    on_disk = check_template(processor)
    stock = processor.chat_template == stock_template(family)
    name = "the stock template" if stock else "a custom template"
    report.add(
        "template_on_disk",
        on_disk.ok,
        f"{name}: "
        + ("does tools, prefix-preserving, tool calls parse" if on_disk.ok else "; ".join(on_disk.problems())),
        "serve a checkpoint written by an mmreward stage or `mmreward merge` (they save the tool template), or "
        "start vLLM with --chat-template pointing at mmreward/templates/qwen2_5_vl_tools.jinja",
    )
    note = ensure_tool_template(processor, model_type)
    loaded = check_template(processor)
    report.add(
        "template_loaded",
        loaded.ok,
        (note or "kept as saved") + ("" if loaded.ok else ": " + "; ".join(loaded.problems())),
        "give the processor a tool-calling Qwen template",
    )
    missing = [t for t in VISION_TOKENS.values() if t not in tok.get_vocab()]
    report.add(
        "grpo_tools",
        loaded.ok and not missing,
        "TRL's tool checks pass and the vision tokens can be suppressed in sampling"
        if loaded.ok and not missing
        else f"missing vision tokens {missing}"
        if missing
        else "the template fails TRL's checks",
        "see the template checks above",
    )

    # Recorded engine settings: their pixel budgets must be multiples of this processor's factor.
    from mmreward.settings import recorded_settings  # noqa: PLC0415

    recorded = recorded_settings(path)
    if recorded is None:
        report.add("settings", True, "no recorded judge settings: the engine's defaults, sized for this processor")
    else:
        budgets = {
            "overview images": recorded.visual.image_budget,
            "overview frames": recorded.visual.frame_budget,
            "crops": recorded.tools.crop_budget,
            "tool frames": recorded.tools.frame_budget,
        }
        wrong = [f"{k} use factor {b.factor}" for k, b in budgets.items() if b.factor != factor]
        report.add(
            "settings",
            True,
            f"recorded: {recorded.visual.overview_frames} overview frames, images <= {recorded.visual.image_budget.max_pixels} px"
            + (f"; {', '.join(wrong)}: resized to {factor} at load" if wrong else ""),
        )
    return report
