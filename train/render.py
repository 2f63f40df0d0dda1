"""Turn trajectory records into training examples: token ids, the loss mask, and the images in order.

The conversation is rendered exactly as the engine renders it at inference (same protocol messages, same
chat template, same tool schemas, same pixel budgets, observation images rebuilt by replaying the tool trace).
The loss covers the assistant turns only: each turn's text and its closing ``<|im_end|>``. The system prompt,
the user prompt with its media, and every tool observation (text and image tokens) are masked.

Per-token *kinds* label what a trained token belongs to, so the trainer can log sub-losses: ``THINK`` (reasoning
and anything outside the tags), ``TOOL_CALL`` (inside ``<tool_call>...</tool_call>``), ``ANSWER`` (inside
``<answer>...</answer>``, the verdict), and ``END`` (the closing ``<|im_end|>``).
"""

from __future__ import annotations

import itertools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mmreward.protocol import resolve_images, windowed
from mmreward.rollout import RolloutEngine
from mmreward.settings import EngineSettings
from mmreward.trajectory import Trajectory, materialize, read_trajectories, settings_of

IGNORE = -100
MASKED, THINK, TOOL_CALL, ANSWER, END = 0, 1, 2, 3, 4
KIND_NAMES = {THINK: "think", TOOL_CALL: "tool_call", ANSWER: "answer", END: "end"}


class RenderError(ValueError):
    pass


@dataclass
class Example:
    """One rendered trajectory."""

    input_ids: torch.Tensor  # (L,)
    labels: torch.Tensor  # (L,) IGNORE outside assistant turns
    kinds: torch.Tensor  # (L,) MASKED / THINK / TOOL_CALL / ANSWER / END
    mm_token_type_ids: torch.Tensor  # (L,) 0 text, 1 image
    pixel_values: torch.Tensor | None  # (patches, dim) for all images, in order
    image_grid_thw: torch.Tensor | None  # (images, 3)
    id: str = ""

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def trained_tokens(self) -> int:
        return int((self.labels != IGNORE).sum())


class Renderer:
    """Renders trajectories with one processor. ``settings`` overrides the visual/tool budgets a trajectory
    recorded (normally leave it ``None``)."""

    def __init__(self, processor, settings: EngineSettings | None = None, max_length: int | None = None) -> None:
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.settings = settings
        self.max_length = max_length
        tok = self.tokenizer
        self.im_end = tok.convert_tokens_to_ids("<|im_end|>")
        self.assistant_start = tok.encode("<|im_start|>assistant\n", add_special_tokens=False)
        self.image_pad = tok.convert_tokens_to_ids("<|image_pad|>")

    def conversation(self, traj: Trajectory) -> tuple[list[dict[str, Any]], list, list[dict[str, Any]] | None]:
        settings = self.settings or settings_of(traj)
        ctx = materialize(traj, settings=settings)
        messages, images = resolve_images(traj.messages, ctx.images, settings.visual)
        tools = RolloutEngine(None, settings=settings).tool_schemas(traj.judge_task, traj.tools_on)
        return messages, images, tools

    def text(self, traj: Trajectory) -> str:
        messages, _, tools = self.conversation(traj)
        return self.processor.apply_chat_template(messages, tools=tools, tokenize=False)

    def render(self, traj: Trajectory) -> Example:
        """The whole trajectory as one example (what the model saw, when no visual memory window evicted)."""
        segments = self.segments(traj)
        if len(segments) != 1:
            raise RenderError(
                f"trajectory {traj.id}: its visual window makes {len(segments)} segments; use segments()"
            )
        return segments[0]

    def segment_views(self, traj: Trajectory) -> list[tuple[list[dict[str, Any]], int]]:
        """(messages as the model saw them, number of trailing assistant turns to train) per training segment.

        Without a visual memory window (or when it never evicted) this is the whole trajectory. Otherwise each
        assistant turn is trained in the context the engine gave it (:func:`mmreward.protocol.windowed` of the
        conversation so far); consecutive turns share a segment as long as no observation left the view between
        them, so a trajectory with evictions becomes a few segments."""
        window = (self.settings or settings_of(traj)).visual_window
        msgs = traj.messages
        turns = [i for i, m in enumerate(msgs) if m["role"] == "assistant"]
        if not turns:
            raise RenderError(f"trajectory {traj.id}: no assistant turn to train on")
        views: list[tuple[list[dict[str, Any]], int]] = []
        for i in turns:
            view = windowed(msgs[:i], window) + [msgs[i]]
            if views and view[: len(views[-1][0])] == views[-1][0]:
                views[-1] = (view, views[-1][1] + 1)
            else:
                views.append((view, 1))
        return views

    def segments(self, traj: Trajectory) -> list[Example]:
        settings = self.settings or settings_of(traj)
        ctx = materialize(traj, settings=settings)
        tools = RolloutEngine(None, settings=settings).tool_schemas(traj.judge_task, traj.tools_on)
        out = []
        views = self.segment_views(traj)
        for k, (view, n_train) in enumerate(views):
            messages, images = resolve_images(view, ctx.images, settings.visual)
            rid = traj.id if len(views) == 1 else f"{traj.id}#seg{k}"
            out.append(self.render_messages(messages, images, tools, rid, train_last=n_train))
        return out

    def render_messages(
        self, messages: list[dict[str, Any]], images: list, tools=None, rid: str = "", train_last: int | None = None
    ) -> Example:
        """Any chat (images as PIL parts in order), trained on its assistant turns (the last ``train_last``)."""
        n_assistant = sum(m["role"] == "assistant" for m in messages)
        if n_assistant == 0:
            raise RenderError(f"trajectory {rid}: no assistant turn to train on")
        text = self.processor.apply_chat_template(messages, tools=tools, tokenize=False)
        batch = self.processor(text=[text], images=images or None, return_tensors="pt")
        ids = batch["input_ids"][0]
        labels, kinds = self.mask(ids, n_assistant, rid, train_last)
        if self.max_length is not None and len(ids) > self.max_length:
            raise RenderError(
                f"trajectory {rid}: {len(ids)} tokens exceed max_length={self.max_length}; raise max_length or "
                "lower the pixel budgets (truncating would cut image tokens away from their pixels)"
            )
        mm = batch.get("mm_token_type_ids")
        mm = mm[0] if mm is not None else (ids == self.image_pad).long()
        return Example(
            input_ids=ids,
            labels=labels,
            kinds=kinds,
            mm_token_type_ids=mm,
            pixel_values=batch.get("pixel_values"),
            image_grid_thw=batch.get("image_grid_thw"),
            id=rid,
        )

    def mask(
        self, ids: torch.Tensor, n_assistant: int, tid: str = "", train_last: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Labels and kinds: assistant spans run from after ``<|im_start|>assistant\\n`` through ``<|im_end|>``;
        with ``train_last``, only the last that many spans are trained (earlier ones are context)."""
        seq = ids.tolist()
        labels = torch.full_like(ids, IGNORE)
        kinds = torch.zeros_like(ids)
        head = self.assistant_start
        spans = []
        i = 0
        while i <= len(seq) - len(head):
            if seq[i : i + len(head)] == head:
                start = i + len(head)
                try:
                    end = seq.index(self.im_end, start)
                except ValueError:
                    raise RenderError(f"trajectory {tid}: an assistant turn has no <|im_end|>") from None
                spans.append((start, end + 1))
                i = end + 1
            else:
                i += 1
        if len(spans) != n_assistant:
            raise RenderError(
                f"trajectory {tid}: found {len(spans)} assistant spans for {n_assistant} assistant turns"
            )
        for start, end in spans[-train_last:] if train_last else spans:
            labels[start:end] = ids[start:end]
            kinds[start:end] = torch.tensor(self._kinds(seq[start : end - 1]) + [END])
        return labels, kinds

    def _kinds(self, span: list[int]) -> list[int]:
        """THINK / TOOL_CALL / ANSWER per token: the block (tags included) its first character falls in."""
        pieces = [self.tokenizer.decode([t]) for t in span]
        text = "".join(pieces)
        char_kind = [THINK] * (len(text) + 1)
        for pattern, kind in ((r"<tool_call>.*?(</tool_call>|$)", TOOL_CALL), (r"<answer>.*?(</answer>|$)", ANSWER)):
            for m in re.finditer(pattern, text, re.S):
                char_kind[m.start() : m.end()] = [kind] * (m.end() - m.start())
        out, pos = [], 0
        for piece in pieces:
            out.append(char_kind[min(pos, len(text))] if piece else THINK)
            pos += len(piece)
        return out


# --------------------------------------------------------------------------------------------------------------------
# Datasets


def read_trajectory_files(paths: list[str | os.PathLike]) -> list[Trajectory]:
    return [t for p in paths for t in read_trajectories(p)]


class ExampleCache:
    """Rendered examples kept in memory up to a byte budget. Pixel values dominate (a 224-px image is about 1.2 MB
    in float32), so caching every example of a large see file does not fit: 17,500 one-crop rows took 24 GB and
    were killed. Past the budget an example is rendered again on each access (a few milliseconds), so any dataset
    trains in bounded memory. One cache serves all of a run's datasets, so the budget is the run's."""

    def __init__(self, max_bytes: int | None = 8 << 30) -> None:
        self.max_bytes = max_bytes  # None: no limit
        self.bytes = 0
        self.uncached = 0  # keys rendered but not kept
        self._items: dict[Any, Any] = {}

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Any, make):
        if key in self._items:
            return self._items[key]
        value = make()
        size = sum(_nbytes(e) for e in (value if isinstance(value, list) else [value]))
        if self.max_bytes is None or self.bytes + size <= self.max_bytes:
            self._items[key] = value
            self.bytes += size
        else:
            self.uncached += 1
        return value


_DATASETS = itertools.count()  # each dataset's own key prefix in a shared cache


def _nbytes(e: Example) -> int:
    tensors = (e.input_ids, e.labels, e.kinds, e.mm_token_type_ids, e.pixel_values, e.image_grid_thw)
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


class TrajectoryDataset(torch.utils.data.Dataset):
    """Training examples of trajectories: one per trajectory, or one per segment where a visual memory window
    evicted observations (see :meth:`Renderer.segment_views`). Rendered on first access and kept in ``cache``
    (an :class:`ExampleCache`, a few milliseconds to render again when it is full); with ``skip_bad`` everything
    is rendered now and trajectories that cannot be rendered are skipped and counted in ``skipped`` (with the
    reason logged by the caller)."""

    def __init__(
        self,
        trajectories: list[Trajectory],
        renderer: Renderer,
        skip_bad: bool = False,
        cache: ExampleCache | None = None,
    ) -> None:
        self.renderer = renderer
        self.skipped: list[str] = []
        self.cache = cache if cache is not None else ExampleCache()
        self._tag = next(_DATASETS)
        good, counts = [], []
        for t in trajectories:
            if skip_bad:
                try:
                    n = len(self.cache.get((self._tag, len(good)), lambda t=t: renderer.segments(t)))
                except RenderError as exc:
                    self.skipped.append(str(exc))
                    continue
            else:
                n = len(renderer.segment_views(t))
            good.append(t)
            counts.append(n)
        self.trajectories = good
        self.index = [(i, k) for i, n in enumerate(counts) for k in range(n)]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> Example:
        t, k = self.index[i]
        return self.cache.get((self._tag, t), lambda: self.renderer.segments(self.trajectories[t]))[k]


def chat_row_content(row: dict, images: list) -> list[dict]:
    """The user turn of a chat row: its images, each after its label where the row has ``labels`` (as the judging
    prompt shows "Image 1:", "Image 2:"), then the question."""
    labels = row.get("labels") or [None] * len(images)
    content: list[dict] = []
    for label, im in zip(labels, images, strict=True):
        if label:
            content.append({"type": "text", "text": f"{label}\n"})
        content.append({"type": "image", "image": im})
        if label:
            content.append({"type": "text", "text": "\n"})
    return content + [{"type": "text", "text": row["question"]}]


class ChatRowsDataset(torch.utils.data.Dataset):
    """Chat rows as one-turn chats: images and a question from the user, the answer from the assistant (the only
    trained tokens). A row: ``{"id", "images": [paths relative to the file's folder], "question", "answer"}``, and
    optionally ``"labels"``, the text shown before each image. Captions, VQA or grounding data in this form can be
    mixed into SFT beside the trajectories."""

    def __init__(
        self,
        path: str | os.PathLike,
        renderer: Renderer,
        root: str | os.PathLike | None = None,
        limit: int | None = None,
        cache: ExampleCache | None = None,
    ) -> None:
        from PIL import Image  # noqa: PLC0415

        self.renderer = renderer
        root = Path(root) if root is not None else Path(path).parent
        self.rows = [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()][:limit]
        self._load = lambda p: Image.open(root / p).convert("RGB")
        self.cache = cache if cache is not None else ExampleCache()
        self._tag = next(_DATASETS)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> Example:
        return self.cache.get((self._tag, i), lambda: self._render(self.rows[i]))

    def _render(self, row: dict) -> Example:
        images = [self._load(p) for p in row["images"]]
        messages = [
            {"role": "user", "content": chat_row_content(row, images)},
            {"role": "assistant", "content": [{"type": "text", "text": row["answer"]}]},
        ]
        return self.renderer.render_messages(messages, images, None, row["id"])
