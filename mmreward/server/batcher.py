"""Dynamic batching: concurrent requests are gathered into batched multi-turn engine calls.

The model lives in one worker thread. Request handlers put a :class:`Job` (one or more judging tasks) on a
bounded queue and await an ``asyncio`` future, so the HTTP side never blocks on the model. The worker takes
the first waiting job, then keeps gathering while requests keep arriving: it stops once none has come for
``batch_wait_ms``, ``batch_max_wait_ms`` after the first, or at ``max_batch`` tasks. A burst of concurrent requests
(an RL step's group, a closed-loop client's next wave) spreads over tens of milliseconds while the HTTP side parses
and decodes it, with gaps above 10 ms; a fixed 10 ms window cut such bursts in two (19 + 13 of 32), and two
part-batches take about 1.5x as long as one full one. A lone request waits only ``batch_wait_ms``. The worker groups
the jobs by sampling settings (temperature, top-p, tokens per turn: those are per generator call), and runs
each group as one :meth:`mmreward.judge.Judge.judge` call, in which every trajectory of every request advances
together, turn by turn.

* A full queue raises :class:`QueueFull` (the handler answers 503 with ``Retry-After``).
* A job whose client stopped waiting (timeout, disconnect) is skipped if still queued; if it is running, its
  trajectories stop at their next turn (:meth:`Job.cancel`). ``on_cancel`` counts both.
* A job may carry a token budget over each trajectory's turns (chat's ``max_tokens``); jobs are grouped by it too.
* If a batch raises, each of its jobs is retried alone, so one bad request cannot fail its neighbours.
* :meth:`Batcher.stop` lets the worker finish what is queued before it exits (graceful shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from mmreward.generators import SamplingSettings
from mmreward.judge import Judge, JudgeSettings, Judgment
from mmreward.protocol import JudgeTask

logger = logging.getLogger(__name__)


class QueueFull(Exception):
    pass


@dataclass
class Job:
    tasks: list[JudgeTask]
    settings: list[JudgeSettings]
    sampling: SamplingSettings
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    enqueued: float = field(default_factory=time.perf_counter)
    started: float | None = None
    finished: float | None = None
    batch_tasks: int = 0  # tasks in the engine call this job ran in
    budget_tokens: int | None = None  # tokens over all of a trajectory's turns (None: the engine's budget)
    forward: dict | None = None  # passthrough: a chat body for the backend, forwarded untouched
    cancelled: threading.Event = field(default_factory=threading.Event)

    @property
    def sampling_key(self) -> tuple:
        s = self.sampling
        return (s.temperature, s.top_p, s.max_new_tokens, s.seed, s.min_new_tokens, self.budget_tokens)

    def cancel(self) -> None:
        """Nobody waits for this job any more: drop it if queued, stop its trajectories if running."""
        self.cancelled.set()

    def resolve(self, result: Any = None, error: BaseException | None = None) -> None:
        def _set() -> None:
            if self.future.done():
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result)

        with contextlib.suppress(RuntimeError):  # the event loop is gone (server stopped): nobody is waiting
            self.loop.call_soon_threadsafe(_set)


def set_sampling(generator: Any, sampling: SamplingSettings) -> None:
    """Point a generator at per-call sampling settings (local transformers or a remote OpenAI-style server)."""
    remote = getattr(generator, "settings", None)
    if remote is not None and hasattr(remote, "temperature") and hasattr(remote, "max_tokens"):
        generator.settings = replace(
            remote, temperature=sampling.temperature, top_p=sampling.top_p, max_tokens=sampling.max_new_tokens
        )
        generator.sampling.max_new_tokens = sampling.max_new_tokens
    else:
        generator.sampling = sampling


class Batcher:
    def __init__(
        self,
        judge: Judge,
        max_batch: int = 16,
        batch_wait_ms: float = 30.0,
        max_queue: int = 256,
        batch_max_wait_ms: float = 200.0,
        threads: int | None = None,
        on_batch: Callable[[int, float], None] | None = None,
        on_cancel: Callable[[str], None] | None = None,
        upstream: Any = None,
    ) -> None:
        self.judge = judge
        self.max_batch = max_batch
        self.batch_wait_s = batch_wait_ms / 1000.0
        self.batch_max_wait_s = max(batch_max_wait_ms, batch_wait_ms) / 1000.0
        self.threads = threads
        self.queue: queue.Queue[Job] = queue.Queue(maxsize=max_queue)
        self.on_batch = on_batch
        self.on_cancel = on_cancel or (lambda stage: None)
        self.upstream = upstream  # passthrough.Upstream: where passthrough jobs go
        self.in_flight = 0
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # ---------------------------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="mmreward-judge-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Finish the queued jobs, then stop the worker."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def depth(self) -> int:
        return self.queue.qsize()

    def enqueue(
        self,
        tasks: list[JudgeTask],
        settings: list[JudgeSettings],
        sampling: SamplingSettings,
        budget_tokens: int | None = None,
        forward: dict | None = None,
    ) -> Job:
        """Queue tasks; await ``job.future`` for their judgments. Raises QueueFull at once when the queue is full.
        Must be called from the event loop."""
        if self._stopping.is_set():
            raise QueueFull("the server is shutting down")
        loop = asyncio.get_running_loop()
        job = Job(tasks, settings, sampling, loop.create_future(), loop, budget_tokens=budget_tokens, forward=forward)
        try:
            self.queue.put_nowait(job)
        except queue.Full:
            raise QueueFull(f"queue is full ({self.queue.maxsize} requests waiting)") from None
        return job

    async def submit(self, tasks: list[JudgeTask], settings: list[JudgeSettings], sampling: SamplingSettings):
        """Queue tasks and wait for their judgments."""
        job = self.enqueue(tasks, settings, sampling)
        judgments = await job.future
        return judgments, job

    # ---------------------------------------------------------------------------------------------------------------
    def _loop(self) -> None:
        if self.threads:
            import torch  # noqa: PLC0415

            torch.set_num_threads(self.threads)  # per thread under OpenMP: see ServerSettings.engine_threads
        while True:
            try:
                first = self.queue.get(timeout=0.05)
            except queue.Empty:
                if self._stopping.is_set():  # stop only once the queue is drained
                    return
                continue
            jobs = [first]
            n = len(first.tasks)
            now = time.perf_counter()
            cap, quiet = now + self.batch_max_wait_s, now + self.batch_wait_s
            while n < self.max_batch:
                remaining = min(cap, quiet) - time.perf_counter()
                try:
                    job = self.queue.get(timeout=remaining) if remaining > 0 else self.queue.get_nowait()
                except queue.Empty:
                    break
                jobs.append(job)
                n += max(1, len(job.tasks))
                quiet = time.perf_counter() + self.batch_wait_s  # still arriving: wait for the rest
            for j in jobs:
                if j.cancelled.is_set() or j.future.cancelled():
                    self.on_cancel("queued")
            jobs = [j for j in jobs if not (j.cancelled.is_set() or j.future.cancelled())]
            passthrough = [j for j in jobs if j.forward is not None]
            if passthrough:
                self._forward(passthrough)
            groups: dict[tuple, list[Job]] = {}
            for j in jobs:
                if j.forward is None:
                    groups.setdefault(j.sampling_key, []).append(j)
            for group in groups.values():
                self._run(group)

    def _forward(self, jobs: list[Job]) -> None:
        """Passthrough jobs: their bodies go to the backend together; each job gets (status, body)."""
        from mmreward.server.passthrough import forward  # noqa: PLC0415

        started = time.perf_counter()
        try:
            results = asyncio.run(forward(self.upstream, [j.forward for j in jobs]))
        except Exception as exc:
            logger.exception("passthrough failed")
            for j in jobs:
                j.resolve(error=exc)
            return
        finished = time.perf_counter()
        for j, result in zip(jobs, results):
            j.started, j.finished, j.batch_tasks = started, finished, len(jobs)
            j.resolve(result)

    def _run(self, jobs: list[Job]) -> None:
        tasks = [t for j in jobs for t in j.tasks]
        settings = [s for j in jobs for s in j.settings]
        started = time.perf_counter()
        self.in_flight = len(jobs)
        owner = [j for j in jobs for _ in j.tasks]
        engine = self.judge.engine
        engine_settings = engine.settings
        try:
            set_sampling(engine.generator, jobs[0].sampling)
            if jobs[0].budget_tokens is not None:
                engine.settings = replace(
                    engine_settings, budget=replace(engine_settings.budget, max_tokens=jobs[0].budget_tokens)
                )
            judgments = self.judge.judge(tasks, settings=settings, cancelled=lambda i: owner[i].cancelled.is_set())
        except Exception as exc:
            if len(jobs) > 1:
                logger.warning("a batch of %d requests failed (%s); retrying each alone", len(jobs), exc)
                for j in jobs:
                    self._run([j])
                return
            logger.exception("judging failed")
            jobs[0].resolve(error=exc)
            return
        finally:
            self.in_flight = 0
            engine.settings = engine_settings
        finished = time.perf_counter()
        if self.on_batch is not None:
            self.on_batch(len(tasks), finished - started)
        for j in jobs:
            if j.cancelled.is_set():
                self.on_cancel("running")
        k = 0
        for j in jobs:
            part: list[Judgment] = judgments[k : k + len(j.tasks)]
            k += len(j.tasks)
            j.started, j.finished, j.batch_tasks = started, finished, len(tasks)
            j.resolve(part)
