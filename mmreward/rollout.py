"""The agentic engine: batched multi-turn generation with tools, ending in a verdict.

For every live trajectory in a batch the engine generates one assistant turn, parses it with the protocol's
turn grammar, runs the tool it calls (or reads the verdict), appends the observation, and continues until
every trajectory has answered or hit its budget. Generation is behind a small :class:`Generator` interface:
generators live in :mod:`mmreward.generators`, settings in :mod:`mmreward.settings`, and each finished
trajectory is a serializable :class:`~mmreward.trajectory.Trajectory`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mmreward.generators import GenerationRequest, Generator
from mmreward.media import MediaError
from mmreward.protocol import (
    JudgeTask,
    assistant_message,
    build_conversation,
    image_refs,
    parse_turn,
    resolve_images,
    tool_message,
    windowed,
)
from mmreward.settings import EngineSettings, settings_to_dict
from mmreward.tools import ToolContext, ToolRegistry, default_registry
from mmreward.trajectory import Trajectory
from mmreward.verdict import ParseFailure, parse_verdict

logger = logging.getLogger(__name__)


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
    index: int = 0  # position in the run's input
    key: str = ""  # the generator's name for this trajectory: unique within the run, even if ids repeat


class RolloutEngine:
    """Runs judging trajectories in batches. ``generator`` produces turns; tools come from ``registry``."""

    def __init__(
        self, generator: Generator, registry: ToolRegistry | None = None, settings: EngineSettings | None = None
    ) -> None:
        self.generator = generator
        self.registry = registry or default_registry()
        self.settings = settings or EngineSettings()
        self._cancelled: Callable[[int], bool] | None = None

    def _start(self, task: JudgeTask, order: list[int] | None, tools_on: bool, key: str) -> _State:
        s = self.settings
        traj = Trajectory(
            id=key,
            task=task.to_dict(),
            order=list(order) if order is not None else list(range(len(task.candidates))),
            tools_on=tools_on,
            settings={
                **settings_to_dict(s),
                "verdict_mode": s.verdict_mode,
                "overview_frames": s.visual.overview_frames,
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
        cancelled: Callable[[int], bool] | None = None,
    ) -> list[Trajectory]:
        """Judge every task; returns one trajectory per task, in input order. ``tools_on`` is one setting for
        all tasks or one per task. ``cancelled(i)`` is asked before each of input ``i``'s turns: once true, that
        trajectory stops (``stop_reason`` "cancelled"), so work nobody waits for any more ends at its next turn."""
        orders = orders or [None] * len(tasks)
        keys = keys or [t.id or f"item-{i}" for i, t in enumerate(tasks)]
        tools = [tools_on] * len(tasks) if isinstance(tools_on, bool) else list(tools_on)
        if not len(tasks) == len(orders) == len(keys) == len(tools):
            raise ValueError("tasks, orders, keys and tools_on must have the same length")
        states = [self._start(t, o, on, k) for t, o, on, k in zip(tasks, orders, tools, keys)]
        repeated = {k for k, n in Counter(keys).items() if n > 1}
        for i, st in enumerate(states):
            st.index = i
            st.key = f"{st.traj.id}@{i}" if st.traj.id in repeated else st.traj.id
        self._cancelled = cancelled
        bar = None
        if progress:
            from tqdm.auto import tqdm  # noqa: PLC0415

            bar = tqdm(total=len(states), desc="judging", unit="item")
            bar.update(sum(st.done for st in states))
        bs = self.settings.batch_size
        # Batches are formed over live trajectories each round, so finished ones free their slot at once.
        try:
            while True:
                live = [st for st in states if not st.done]
                if not live:
                    break
                for i in range(0, len(live), bs):
                    chunk = live[i : i + bs]
                    self._step(chunk)
                    if bar is not None:
                        bar.update(sum(st.done for st in chunk))
        finally:
            # A run that raised leaves no per-trajectory state behind: keys recur across runs ("chat#01#0"), and a
            # stale KV cache matched by token ids alone would carry another request's images.
            release = getattr(self.generator, "release", None)
            if release is not None:
                for st in states:
                    if not st.done:
                        release(st.key)
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
            if self._cancelled is not None and self._cancelled(st.index):
                self._finish(st, "cancelled", parse_failure="cancelled: the client stopped waiting")
                continue
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
            requests.append(GenerationRequest(st.key, t.num_turns, messages, images, st.tools, max_new, names))
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
            release(st.key)
        st.done = True
        st.traj.stop_reason = reason
        st.traj.parse_failure = parse_failure
        st.traj.latency_s = time.perf_counter() - st.started
