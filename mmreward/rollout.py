"""The agentic engine: batched multi-turn generation with tools, ending in a verdict.

For every live trajectory in a batch the engine generates one assistant turn, parses it with the protocol's
turn grammar, runs the tool it calls (or reads the verdict), appends the observation, and continues until
every trajectory has answered or hit its budget. Generation is behind a small :class:`Generator` interface:
:class:`TransformersGenerator` runs a local model with ``generate`` (left padding, vision placeholder tokens
suppressed), :class:`ScriptedGenerator` replays given turns for tests and teachers.

Each finished trajectory is a serializable :class:`Trajectory`: messages with media by reference, the tool
trace, the verdict or parse failure, the stop reason and token counts. SFT, rejection sampling and eval all
consume these records (JSONL).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from mmreward.media import DEFAULT_LIMITS, MediaError, MediaLimits, PixelBudget
from mmreward.protocol import (
    JudgeTask,
    VisualSettings,
    assistant_message,
    build_conversation,
    image_refs,
    parse_turn,
    resolve_images,
    tool_message,
    windowed,
)
from mmreward.tools import Budget, ToolContext, ToolRegistry, ToolSettings, default_registry
from mmreward.verdict import ParseFailure, Verdict, parse_verdict

logger = logging.getLogger(__name__)

STOP_TAGS = ("</tool_call>", "</answer>")


@dataclass
class SamplingSettings:
    """Sampling for each assistant turn. ``temperature == 0`` is greedy (and reproducible).

    Every field is passed explicitly, so a checkpoint's ``generation_config.json`` (Qwen2.5-VL's release asks for
    ``repetition_penalty`` 1.05) does not change the judge behind its back; 1.0 is what GRPO trains with."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = 0
    min_new_tokens: int = 0  # end-of-turn tokens are suppressed before this many (fixed-work benchmarks)
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
        if self.max_new_tokens <= 0:
            raise ValueError("max_new_tokens must be positive")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise ValueError("need 0 <= min_new_tokens <= max_new_tokens")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError("need temperature >= 0 and 0 < top_p <= 1")
        if self.repetition_penalty <= 0:
            raise ValueError("repetition_penalty must be positive (1.0: none)")


@dataclass
class EngineSettings:
    max_turns: int = 6
    batch_size: int = 8
    budget: Budget = field(default_factory=Budget)
    visual: VisualSettings = field(default_factory=VisualSettings)
    tools: ToolSettings = field(default_factory=ToolSettings)
    verdict_mode: str = "lenient"  # strict | lenient: how the final answer is read
    max_context_tokens: int | None = None  # stop a trajectory whose prompt would exceed this
    limits: MediaLimits = DEFAULT_LIMITS  # media size/format limits applied when a task's media is loaded
    # Visual memory window: tool observations older than this many rounds leave the context as text stubs, so
    # the visual tokens in context stay bounded by the overview plus `visual_window` observations. None: off.
    visual_window: int | None = None

    def __post_init__(self) -> None:
        if self.max_turns < 1 or self.batch_size < 1:
            raise ValueError("max_turns and batch_size must be at least 1")
        if self.verdict_mode not in ("strict", "lenient"):
            raise ValueError("verdict_mode must be 'strict' or 'lenient'")
        if self.visual_window is not None and self.visual_window < 0:
            raise ValueError("visual_window must be >= 0 (or None for no window)")


# --------------------------------------------------------------------------------------------------------------------
# Generators


@dataclass
class GenerationRequest:
    key: str  # trajectory id
    turn: int
    messages: list[dict[str, Any]]  # images resolved to PIL
    images: list[Image.Image]  # in the order they appear in ``messages``
    tools: list[dict[str, Any]] | None
    max_new_tokens: int
    image_names: list[str] = field(default_factory=list)  # the protocol name of each image in ``images``


@dataclass
class GenerationOutput:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None  # the generator could not produce a turn (e.g. a remote teacher kept failing)


class Generator(Protocol):
    def generate(self, requests: list[GenerationRequest]) -> list[GenerationOutput]: ...


class ScriptedGenerator:
    """Replays given turns: ``script[key]`` is the list of turn texts for trajectory ``key`` (or a callable
    ``(request) -> str``). Used to test the tool loop and by rule-based teachers."""

    def __init__(self, script: dict[str, list[str]] | Callable[[GenerationRequest], str]) -> None:
        self.script = script
        self.requests: list[GenerationRequest] = []

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationOutput]:
        outs = []
        for r in requests:
            self.requests.append(r)
            if callable(self.script):
                text = self.script(r)
            else:
                turns = self.script.get(r.key, [])
                text = turns[r.turn] if r.turn < len(turns) else ""
            outs.append(GenerationOutput(text=text, prompt_tokens=0, completion_tokens=len(text.split())))
        return outs


class TransformersGenerator:
    """Generation with a local ``transformers`` model and its processor.

    Vision placeholder tokens are suppressed (a sampled ``<|video_pad|>`` would crash Qwen's rope index), the
    batch is left-padded, and a turn stops at ``</tool_call>``, ``</answer>`` or end of turn.
    """

    def __init__(self, model, processor, sampling: SamplingSettings | None = None, reuse_cache: bool = False) -> None:
        self.model = model
        self.processor = processor
        self.sampling = sampling or SamplingSettings()
        # Keep each trajectory's KV cache between turns and encode only what a turn appends (see `_generate_cached`).
        self.reuse_cache = reuse_cache
        self._caches: dict[str, tuple[list[int], Any]] = {}
        tok = processor.tokenizer
        self.tokenizer = tok
        self.suppress_ids = vision_token_ids(tok)
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        eos = model.generation_config.eos_token_id
        eos_ids = list(eos) if isinstance(eos, (list, tuple)) else ([eos] if eos is not None else [])
        eos_ids.append(tok.convert_tokens_to_ids("<|im_end|>"))
        self.stop_strings: list[str] = []
        self.stop_tag_ids: set[int] = set()  # single-token stop tags: generation ends on them, the text keeps them
        for tag in STOP_TAGS:
            ids = tok.encode(tag, add_special_tokens=False)
            if len(ids) == 1:
                eos_ids.append(ids[0])
                self.stop_tag_ids.add(ids[0])
            else:
                self.stop_strings.append(tag)
        self.eos_ids = sorted({int(i) for i in eos_ids if i is not None})
        self.end_ids = set(self.eos_ids) | {self.pad_id}
        self.chat_template = processor.chat_template
        # Processors emit mm_token_type_ids; older model classes do not take them.
        self.drop_keys = {"mm_token_type_ids"} - set(_forward_args(model))

    def render(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, generation: bool = True
    ) -> str:
        return self.processor.apply_chat_template(
            messages, tools=tools, add_generation_prompt=generation, tokenize=False
        )

    def _encode(self, texts: list[str], images: list[Image.Image]):
        self.processor.tokenizer.padding_side = "left"
        batch = self.processor(text=texts, images=images or None, padding=True, return_tensors="pt")
        for key in self.drop_keys:
            batch.pop(key, None)
        return batch.to(self.model.device)

    def release(self, key: str) -> None:
        """Forget a finished trajectory's cache."""
        self._caches.pop(key, None)

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationOutput]:
        import torch  # noqa: PLC0415

        if self.reuse_cache:
            return [self._generate_cached(r) for r in requests]
        texts = [self.render(r.messages, r.tools) for r in requests]
        images = [im for r in requests for im in r.images]
        batch = self._encode(texts, images)
        s = self.sampling
        kwargs: dict[str, Any] = dict(
            max_new_tokens=max(r.max_new_tokens for r in requests),
            suppress_tokens=self.suppress_ids,
            eos_token_id=self.eos_ids,
            pad_token_id=self.pad_id,
            do_sample=s.temperature > 0,
            repetition_penalty=s.repetition_penalty,
        )
        if s.temperature > 0:
            kwargs.update(temperature=s.temperature, top_p=s.top_p, top_k=0)
        if s.min_new_tokens:
            kwargs.update(min_new_tokens=min(s.min_new_tokens, kwargs["max_new_tokens"]))
        if self.stop_strings:
            kwargs.update(stop_strings=self.stop_strings, tokenizer=self.tokenizer)
        if s.seed is not None:
            torch.manual_seed(s.seed + sum(r.turn for r in requests))
        with torch.inference_mode():
            out = self.model.generate(**batch, **kwargs)
        prompt_len = batch["input_ids"].shape[1]
        attention = batch["attention_mask"].sum(dim=1).tolist()
        outputs = []
        for row, r in enumerate(requests):
            ids = out[row, prompt_len:].tolist()[: r.max_new_tokens]
            n = next((k for k, t in enumerate(ids) if t in self.end_ids), len(ids))
            completion = n + (1 if n < len(ids) and ids[n] != self.pad_id else 0)
            keep = n + (1 if n < len(ids) and ids[n] in self.stop_tag_ids else 0)  # "</tool_call>" is part of the turn
            text = self.tokenizer.decode(ids[:keep], skip_special_tokens=False)
            outputs.append(
                GenerationOutput(
                    text=_cut_at_stop(text), prompt_tokens=int(attention[row]), completion_tokens=completion
                )
            )
        return outputs

    # ---------------------------------------------------------------------------------------------------------------
    # Cache reuse across tool turns (one trajectory at a time, no padding)

    def _positions(self, batch) -> Any:
        """Qwen-VL's 3-D rope positions of a whole (unpadded) sequence, from the model's own rope index."""
        import torch  # noqa: PLC0415

        ids = batch["input_ids"]
        if batch.get("image_grid_thw") is None:
            return torch.arange(ids.shape[1]).view(1, 1, -1).expand(3, 1, -1)
        inner = getattr(self.model, "model", self.model)
        mm = batch.get("mm_token_type_ids")
        if mm is None:
            mm = (ids == self.tokenizer.convert_tokens_to_ids("<|image_pad|>")).long()
        pos, _ = inner.get_rope_index(
            ids, mm, image_grid_thw=batch["image_grid_thw"], attention_mask=torch.ones_like(ids)
        )
        return pos

    def extend(self, key: str, text: str, images: list[Image.Image]):
        """Bring ``key``'s cache up to the tokens of ``text`` and return (logits of the last position, the number
        of tokens that had to be encoded, the full ids). Reuses the longest cached prefix that does not cut an
        image; the appended images get their 3-D positions from the rope index of the whole sequence, so the
        result equals encoding everything again (tested)."""
        import torch  # noqa: PLC0415
        from transformers import DynamicCache  # noqa: PLC0415

        batch = self.processor(text=[text], images=images or None, return_tensors="pt")
        ids = batch["input_ids"][0].tolist()
        pos = self._positions(batch)
        pad_id = self.tokenizer.convert_tokens_to_ids("<|image_pad|>")
        spans, i = [], 0
        while i < len(ids):
            if ids[i] == pad_id:
                j = i
                while j < len(ids) and ids[j] == pad_id:
                    j += 1
                spans.append((i, j))
                i = j
            else:
                i += 1
        cached_ids, cache = self._caches.get(key, ([], None))
        p = 0
        while p < min(len(cached_ids), len(ids) - 1) and cached_ids[p] == ids[p]:
            p += 1
        for a, b in spans:  # never split an image: re-encode it whole
            if a < p < b:
                p = a
        if cache is None or p == 0:
            cache, p = DynamicCache(config=self.model.config), 0
        elif cache.get_seq_length() > p:
            # transformers 5: a negative count removes that many tokens from the end (a positive one is refused)
            cache.crop(p - cache.get_seq_length())
        n_cached = sum(1 for _, b in spans if b <= p)
        grid = batch.get("image_grid_thw")
        kwargs: dict[str, Any] = {}
        if grid is not None and n_cached < len(grid):
            first_patch = int(grid[:n_cached].prod(-1).sum())
            kwargs = {"pixel_values": batch["pixel_values"][first_patch:], "image_grid_thw": grid[n_cached:]}
        with torch.inference_mode():
            out = self.model(
                input_ids=batch["input_ids"][:, p:].to(self.model.device),
                position_ids=pos[:, :, p:].to(self.model.device),
                past_key_values=cache,
                use_cache=True,
                cache_position=torch.arange(p, len(ids), device=self.model.device),
                **{k: v.to(self.model.device) for k, v in kwargs.items()},
            )
        self._caches[key] = (ids, cache)
        return out.logits[0, -1].float(), len(ids) - p, ids, int(pos[0, 0, -1]) + 1

    def _generate_cached(self, r: GenerationRequest) -> GenerationOutput:
        import torch  # noqa: PLC0415

        s = self.sampling
        logits, _, ids, next_pos = self.extend(r.key, self.render(r.messages, r.tools), r.images)
        ids = list(ids)
        prompt_len = len(ids)
        _, cache = self._caches[r.key]
        rng = torch.Generator().manual_seed((s.seed or 0) + r.turn) if s.temperature > 0 else None
        out: list[int] = []
        for step in range(r.max_new_tokens):
            logits = logits.clone()
            if s.repetition_penalty != 1.0:  # as transformers' RepetitionPenaltyLogitsProcessor, over the context
                seen = torch.tensor(sorted(set(ids) | set(out)), device=logits.device)
                score = logits[seen]
                logits[seen] = torch.where(score < 0, score * s.repetition_penalty, score / s.repetition_penalty)
            logits[self.suppress_ids] = float("-inf")
            if step < s.min_new_tokens:
                logits[self.eos_ids] = float("-inf")
            if rng is None:
                tok = int(logits.argmax())
            else:
                probs = torch.softmax(logits / s.temperature, dim=-1)
                if s.top_p < 1.0:
                    sp, si = probs.sort(descending=True)
                    keep = sp.cumsum(-1) - sp < s.top_p
                    probs = torch.zeros_like(probs).scatter(0, si[keep], sp[keep])
                tok = int(torch.multinomial(probs / probs.sum(), 1, generator=rng))
            out.append(tok)
            if tok in self.end_ids or step == r.max_new_tokens - 1:
                break
            with torch.inference_mode():
                o = self.model(
                    input_ids=torch.tensor([[tok]], device=self.model.device),
                    position_ids=torch.full((3, 1, 1), next_pos, device=self.model.device),
                    past_key_values=cache,
                    use_cache=True,
                    cache_position=torch.tensor([len(ids)], device=self.model.device),
                )
            ids.append(tok)
            next_pos += 1
            logits = o.logits[0, -1].float()
        self._caches[r.key] = (ids, cache)
        n = next((k for k, t in enumerate(out) if t in self.end_ids), len(out))
        keep = n + (1 if n < len(out) and out[n] in self.stop_tag_ids else 0)
        text = self.tokenizer.decode(out[:keep], skip_special_tokens=False)
        completion = n + (1 if n < len(out) and out[n] != self.pad_id else 0)
        return GenerationOutput(text=_cut_at_stop(text), prompt_tokens=prompt_len, completion_tokens=completion)

    def option_logprobs(
        self, messages: list[dict[str, Any]], images: list[Image.Image], tools, prefix: str, options: list[str]
    ) -> list[float]:
        """Log-probability of each ``option`` continuing ``prefix`` at the start of a new assistant turn."""
        import torch  # noqa: PLC0415

        base = self.render(messages, tools) + prefix
        n_base = len(self.tokenizer(base, add_special_tokens=False)["input_ids"])
        texts = [base + o for o in options]
        batch = self._encode(texts, images * len(options))
        with torch.inference_mode():
            logits = self.model(**batch).logits.float()
        logp = torch.log_softmax(logits, dim=-1)
        ids = batch["input_ids"]
        result = []
        for row, text in enumerate(texts):
            n_opt = len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) - n_base
            total = 0.0
            for k in range(n_opt):
                pos = ids.shape[1] - n_opt + k
                total += float(logp[row, pos - 1, ids[row, pos]])
            result.append(total)
        return result


def vision_token_ids(tokenizer) -> list[int]:
    """Vision placeholder tokens a model must never sample (a sampled ``<|video_pad|>`` crashes Qwen's rope index)."""
    vision = ["<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"]
    return [tokenizer.convert_tokens_to_ids(t) for t in vision if t in tokenizer.get_vocab()]


def _forward_args(model) -> set[str]:
    import inspect  # noqa: PLC0415

    return set(inspect.signature(model.forward).parameters)


def _cut_at_stop(text: str) -> str:
    """Keep a turn up to and including its first closing tag; drop end-of-turn markers."""
    cut = len(text)
    for tag in STOP_TAGS:
        i = text.find(tag)
        if i != -1:
            cut = min(cut, i + len(tag))
    text = text[:cut]
    for marker in ("<|im_end|>", "<|endoftext|>"):
        text = text.split(marker)[0]
    return text.strip()


# --------------------------------------------------------------------------------------------------------------------
# Trajectories


@dataclass
class Trajectory:
    """One judged item, end to end. Serializable: images are references (see ``images``)."""

    id: str
    task: dict[str, Any]
    order: list[int]
    tools_on: bool
    messages: list[dict[str, Any]] = field(default_factory=list)
    tool_trace: list[dict[str, Any]] = field(default_factory=list)
    verdict: dict[str, Any] | None = None
    parse_failure: str | None = None
    format_ok: bool = False
    stop_reason: str = "running"
    num_turns: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    peak_prompt_tokens: int = 0
    latency_s: float = 0.0
    images: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> provenance (input, frame, tool)
    settings: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    # In-memory only: the context with decoded images (for rewards, replays). Not serialized.
    context: ToolContext | None = field(default=None, repr=False, compare=False)

    @property
    def judge_task(self) -> JudgeTask:
        return JudgeTask.from_dict(self.task)

    @property
    def parsed_verdict(self) -> Verdict | None:
        return Verdict.from_dict(self.verdict) if self.verdict else None

    @property
    def final_text(self) -> str:
        for m in reversed(self.messages):
            if m["role"] == "assistant":
                return m["content"][0]["text"]
        return ""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self) if f.name != "context"}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trajectory:
        return cls(**{k: v for k, v in d.items() if k != "context"})


def write_trajectories(trajectories: Iterable[Trajectory], path: str | os.PathLike, append: bool = False) -> None:
    """Write JSONL; with ``append=False`` the file is replaced atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if append:
        with path.open("a", encoding="utf-8") as f:
            for t in trajectories:
                f.write(json.dumps(t.to_dict(), ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for t in trajectories:
            f.write(json.dumps(t.to_dict(), ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def read_trajectories(path: str | os.PathLike) -> list[Trajectory]:
    out = []
    with Path(path).open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(Trajectory.from_dict(json.loads(line)))
            except (json.JSONDecodeError, TypeError) as exc:
                raise ValueError(f"{path}:{lineno}: not a trajectory record ({exc})") from None
    return out


def visual_to_dict(v: VisualSettings) -> dict[str, Any]:
    return asdict(v)


def tools_to_dict(t: ToolSettings) -> dict[str, Any]:
    return asdict(t)


def settings_of(traj: Trajectory) -> EngineSettings:
    """The engine settings a trajectory was produced with (visual and tool budgets), as far as it recorded them."""
    return settings_from_dict(traj.settings or {})


def settings_to_dict(s: EngineSettings) -> dict[str, Any]:
    """The visual/tool part of engine settings as recorded in trajectories and checkpoints."""
    return {
        "max_turns": s.max_turns,
        "budget": s.budget.to_dict(),
        "visual": visual_to_dict(s.visual),
        "tools": tools_to_dict(s.tools),
        "visual_window": s.visual_window,
    }


JUDGE_SETTINGS_FILE = "mmreward_judge.json"


def save_judge_settings(model_dir: str | os.PathLike, settings: dict[str, Any] | EngineSettings) -> None:
    """Record in a checkpoint the visual and tool settings it was trained with, so the judge and the server use
    them by default (a model trained on 112x112 overviews should be shown 112x112 overviews)."""
    d = settings_to_dict(settings) if isinstance(settings, EngineSettings) else dict(settings)
    keep = {k: d[k] for k in ("max_turns", "visual", "tools", "visual_window") if k in d}
    Path(model_dir, JUDGE_SETTINGS_FILE).write_text(json.dumps(keep, indent=2))


def load_judge_settings(model_dir: str | os.PathLike) -> EngineSettings | None:
    path = Path(model_dir, JUDGE_SETTINGS_FILE)
    return settings_from_dict(json.loads(path.read_text())) if path.is_file() else None


def settings_from_dict(s: dict[str, Any]) -> EngineSettings:
    visual, tools = VisualSettings(), ToolSettings()
    if "visual" in s:
        v = s["visual"]
        extra = {k: v[k] for k in ("overview_fps", "min_overview_frames", "max_video_tokens") if k in v}
        extra["frame_rule"] = v.get("frame_rule", "centre")  # recorded before the field existed: the old rule
        visual = VisualSettings(
            PixelBudget(**v["image_budget"]), v["overview_frames"], PixelBudget(**v["frame_budget"]), **extra
        )
    if "tools" in s:
        t = dict(s["tools"])
        t["crop_budget"] = PixelBudget(**t["crop_budget"])
        t["frame_budget"] = PixelBudget(**t["frame_budget"])
        tools = ToolSettings(**t)
    return EngineSettings(
        max_turns=s.get("max_turns", 6), visual=visual, tools=tools, visual_window=s.get("visual_window")
    )


def materialize(
    traj: Trajectory, registry: ToolRegistry | None = None, settings: EngineSettings | None = None
) -> ToolContext:
    """Rebuild every image a trajectory refers to (inputs, overview frames, tool observations).

    Records keep media by reference; tools are deterministic, so replaying the successful calls of the tool
    trace on the task's media reproduces the observation images exactly. SFT rendering and rejection
    sampling use this to turn JSONL records back into model inputs. ``settings`` must match the run's visual
    and tool settings; without ``settings`` they are read from the trajectory's own record of them.
    """
    settings = settings or settings_of(traj)
    registry = registry or default_registry()
    conv = build_conversation(
        traj.judge_task,
        traj.order,
        tools_on=traj.tools_on,
        visual=settings.visual,
        tool_settings=settings.tools,
        budget=Budget(max_tool_calls=None, max_images=None, max_tokens=None),
    )
    ctx = conv.context
    for call in traj.tool_trace:
        if not call["ok"]:
            continue
        result = registry.call(ctx, call["name"], call["arguments"])
        produced = [name for name, _ in result.images]
        if not result.ok or produced != call["observations"]:
            raise ValueError(
                f"trajectory {traj.id}: replaying {call['name']}({call['arguments']}) gave {produced or result.error}, "
                f"but the record says {call['observations']}; were the tool or visual settings changed?"
            )
    return ctx


# --------------------------------------------------------------------------------------------------------------------
# The engine


@dataclass
class _State:
    traj: Trajectory
    ctx: ToolContext
    spec: Any
    tools: list[dict[str, Any]] | None
    started: float
    done: bool = False
    well_formed: bool = True


class RolloutEngine:
    """Runs judging trajectories in batches. ``generator`` produces turns; tools come from ``registry``."""

    def __init__(
        self, generator: Generator, registry: ToolRegistry | None = None, settings: EngineSettings | None = None
    ) -> None:
        self.generator = generator
        self.registry = registry or default_registry()
        self.settings = settings or EngineSettings()

    def _start(self, task: JudgeTask, order: list[int] | None, tools_on: bool, key: str) -> _State:
        s = self.settings
        traj = Trajectory(
            id=key,
            task=task.to_dict(),
            order=list(order) if order is not None else list(range(len(task.candidates))),
            tools_on=tools_on,
            settings={
                "max_turns": s.max_turns,
                "budget": s.budget.to_dict(),
                "verdict_mode": s.verdict_mode,
                "overview_frames": s.visual.overview_frames,
                "visual": visual_to_dict(s.visual),
                "tools": tools_to_dict(s.tools),
                "visual_window": s.visual_window,
            },
        )
        started = time.perf_counter()
        try:
            conv = build_conversation(
                task,
                order,
                tools_on=tools_on,
                visual=s.visual,
                tool_settings=s.tools,
                budget=s.budget,
                limits=s.limits,
            )
        except (MediaError, ValueError) as exc:
            traj.stop_reason, traj.error = "input_error", str(exc)
            traj.parse_failure = f"input error: {exc}"
            return _State(traj, ToolContext(), task.answer_spec, None, started, done=True)
        traj.messages = conv.messages
        traj.context = conv.context
        return _State(traj, conv.context, task.answer_spec, self.tool_schemas(task, tools_on), started)

    def context_messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """What the model is shown of a conversation: the record under the visual memory window."""
        return windowed(messages, self.settings.visual_window)

    def tool_schemas(self, task: JudgeTask, tools_on: bool) -> list[dict[str, Any]] | None:
        """The tools offered for a task: crop always, select_frames when there is video."""
        if not tools_on:
            return None
        wanted = ["crop"] + (["select_frames"] if task.visual_kind == "video" else [])
        names = [n for n in wanted if n in self.registry]
        return self.registry.schemas(names) if names else None

    def run(
        self,
        tasks: list[JudgeTask],
        orders: list[list[int] | None] | None = None,
        tools_on: bool | list[bool] = True,
        keys: list[str] | None = None,
        progress: bool = False,
    ) -> list[Trajectory]:
        """Judge every task; returns one trajectory per task, in input order. ``tools_on`` is one setting for
        all tasks or one per task."""
        orders = orders or [None] * len(tasks)
        keys = keys or [t.id or f"item-{i}" for i, t in enumerate(tasks)]
        tools = [tools_on] * len(tasks) if isinstance(tools_on, bool) else list(tools_on)
        if not len(tasks) == len(orders) == len(keys) == len(tools):
            raise ValueError("tasks, orders, keys and tools_on must have the same length")
        states = [self._start(t, o, on, k) for t, o, on, k in zip(tasks, orders, tools, keys)]
        bar = None
        if progress:
            from tqdm.auto import tqdm  # noqa: PLC0415

            bar = tqdm(total=len(states), desc="judging", unit="item")
            bar.update(sum(st.done for st in states))
        bs = self.settings.batch_size
        # Batches are formed over live trajectories each round, so finished ones free their slot at once.
        while True:
            live = [st for st in states if not st.done]
            if not live:
                break
            for i in range(0, len(live), bs):
                chunk = live[i : i + bs]
                self._step(chunk)
                if bar is not None:
                    bar.update(sum(st.done for st in chunk))
        if bar is not None:
            bar.close()
        for st in states:
            st.traj.images = {name: dict(p) for name, p in st.ctx.provenance.items()}
        return [st.traj for st in states]

    def _step(self, chunk: list[_State]) -> None:
        s = self.settings
        requests, ready = [], []
        for st in chunk:
            t = st.traj
            if t.num_turns >= s.max_turns:
                self._finish(st, "max_turns", parse_failure=f"no answer within max_turns={s.max_turns}")
                continue
            remaining = None if s.budget.max_tokens is None else s.budget.max_tokens - t.completion_tokens
            if remaining is not None and remaining <= 0:
                self._finish(st, "max_tokens", parse_failure=f"token budget ({s.budget.max_tokens}) used up")
                continue
            context = self.context_messages(t.messages)
            messages, images = resolve_images(context, st.ctx.images, s.visual)
            max_new = self._max_new_tokens(remaining)
            names = image_refs(context)
            requests.append(GenerationRequest(t.id, t.num_turns, messages, images, st.tools, max_new, names))
            ready.append(st)
        if not requests:
            return
        outputs = self.generator.generate(requests)
        for st, out in zip(ready, outputs):
            t = st.traj
            if out.error is not None:
                t.error = out.error
                self._finish(st, "generation_error", parse_failure=f"generation failed: {out.error}")
                continue
            t.num_turns += 1
            t.prompt_tokens += out.prompt_tokens
            t.completion_tokens += out.completion_tokens
            t.peak_prompt_tokens = max(t.peak_prompt_tokens, out.prompt_tokens)
            if s.max_context_tokens is not None and out.prompt_tokens > s.max_context_tokens:
                self._finish(
                    st,
                    "context_overflow",
                    parse_failure=f"prompt of {out.prompt_tokens} tokens is over max_context_tokens",
                )
                continue
            self._advance(st, out.text)

    def _max_new_tokens(self, remaining: int | None) -> int:
        cap = getattr(getattr(self.generator, "sampling", None), "max_new_tokens", 256)
        return cap if remaining is None else max(1, min(cap, remaining))

    def _advance(self, st: _State, text: str) -> None:
        t = st.traj
        t.messages.append(assistant_message(text))
        turn = parse_turn(text)
        if turn.is_answer:
            self._conclude(st, text)
            return
        if turn.is_tool_call or (turn.error and "<tool_call>" in text):
            if not t.tools_on:
                st.well_formed = False
                self._observe(st, None, None, "Error: tools are not available for this task; give your answer.")
                return
            if turn.error:  # a call attempt that does not parse: an error observation, as for any bad call
                st.well_formed = False
                self._observe(
                    st,
                    None,
                    None,
                    f'Error: {turn.error}. Use <tool_call>{{"name": ..., "arguments": {{...}}}}</tool_call>.',
                )
                return
            self._observe(st, turn.tool_name, turn.tool_arguments)
            return
        # Neither a tool call nor a well-formed answer: one last lenient reading, else a parse failure.
        st.well_formed = False
        self._conclude(st, text)

    def _observe(self, st: _State, name: Any, arguments: Any, error_text: str | None = None) -> None:
        t = st.traj
        if error_text is not None:
            st.ctx.tool_calls += 1
            trace = {
                "name": name,
                "arguments": arguments,
                "ok": False,
                "error": error_text,
                "latency_s": 0.0,
                "observations": [],
            }
            t.tool_trace.append(trace)
            t.messages.append(tool_message(error_text, []))
            return
        result = self.registry.call(st.ctx, name, arguments)
        t.tool_trace.append(result.trace())
        t.messages.append(tool_message(result.text, [n for n, _ in result.images]))

    def _conclude(self, st: _State, text: str) -> None:
        result = parse_verdict(text, st.spec, self.settings.verdict_mode)
        if isinstance(result, ParseFailure):
            self._finish(st, "parse_failure", parse_failure=result.reason)
            return
        st.traj.verdict = result.to_dict()
        st.traj.format_ok = st.well_formed and result.strict
        self._finish(st, "answer")

    def _finish(self, st: _State, reason: str, parse_failure: str | None = None) -> None:
        release = getattr(self.generator, "release", None)
        if release is not None:
            release(st.traj.id)
        st.done = True
        st.traj.stop_reason = reason
        st.traj.parse_failure = parse_failure
        st.traj.latency_s = time.perf_counter() - st.started
