"""Batching rendered trajectories: padded batches, or padding-free packing with correct 3-D mRoPE positions.

**Packing.** The examples of a batch are concatenated into rows without padding between them. Qwen-VL's multimodal RoPE gives image tokens
3-D (temporal, height, width) positions, so plain 1-D ``arange`` positions would be wrong; each sequence's
positions come from the model's own ``get_rope_index`` on that sequence alone, and a fourth row holds the text
positions restarting at 0 for every sequence. transformers reads that row to find the sequence boundaries and
builds a block-diagonal causal mask (sdpa on CPU) or uses flash-attention's varlen kernels (GPU), so no token
attends across sequences. ``attention_mask`` is left out. The first label of every sequence is ignored, so no
loss crosses a boundary either.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from train.render import IGNORE, Example

RopeFn = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def rope_function(model) -> RopeFn:
    """``get_rope_index`` of a (possibly PEFT-wrapped) Qwen-VL model."""
    m = model.get_base_model() if hasattr(model, "get_base_model") else model
    inner = getattr(m, "model", m)
    fn = getattr(inner, "get_rope_index", None)
    if fn is None:
        raise ValueError(f"{type(model).__name__} has no get_rope_index; packing needs a Qwen-VL model")
    return fn


def attention_width(model) -> float | None:
    """The row length at which attention costs a packed row as much as its linear layers: ``None`` under
    flash-attention (varlen: attention is per sequence), else about ``6 * hidden_size`` (per token and layer the
    projections and an MLP of 2-4x the hidden size do some 12 h^2 multiply-adds, attention over a whole row of
    W tokens 2 h W)."""
    config = getattr(model, "config", None)
    if getattr(config, "_attn_implementation", None) == "flash_attention_2":
        return None
    text = getattr(config, "text_config", config)
    return 6.0 * text.hidden_size


def _vision(examples: list[Example]) -> dict[str, torch.Tensor]:
    out = {}
    pix = [e.pixel_values for e in examples if e.pixel_values is not None]
    if pix:
        out["pixel_values"] = torch.cat(pix)
        out["image_grid_thw"] = torch.cat([e.image_grid_thw for e in examples if e.image_grid_thw is not None])
    return out


class PaddedCollator:
    """Right-padded batches with an attention mask; the model computes rope positions itself."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad = pad_token_id

    def __call__(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        n = max(len(e) for e in examples)

        def pad(t: torch.Tensor, value: int) -> torch.Tensor:
            return torch.nn.functional.pad(t, (0, n - len(t)), value=value)

        batch = {
            "input_ids": torch.stack([pad(e.input_ids, self.pad) for e in examples]),
            "attention_mask": torch.stack([pad(torch.ones_like(e.input_ids), 0) for e in examples]),
            "labels": torch.stack([pad(e.labels, IGNORE) for e in examples]),
            "mm_token_type_ids": torch.stack([pad(e.mm_token_type_ids, 0) for e in examples]),
            "loss_kinds": torch.stack([pad(e.kinds, 0) for e in examples]),
        }
        batch.update(_vision(examples))
        return batch


class PackedCollator:
    """Padding-free batches; positions per sequence from ``rope_fn`` (see the module docstring).

    A packed batch is ``n`` rows of one width ``W`` (the longest row; shorter rows get filler). How the examples
    are split into rows is chosen per batch by a cost model of one training step, ``n * W * (1 + W /
    attention_width)``: the linear layers cost per token, attention per token grows with the row length when the
    kernel is not varlen-aware (sdpa builds a block-diagonal mask over the whole row and computes all of it).
    ``attention_width`` is the row length at which a row's attention costs as much as its linear layers (about
    ``6 * hidden_size``); ``None`` means a varlen kernel (flash-attention), where attention costs per sequence and
    one row per batch, with no filler, is best. ``row_tokens`` caps the row width (at least the longest example).
    The filler tokens form their own masked "sequence" with restarting positions, so they attend only to each
    other and carry no loss.
    """

    def __init__(
        self,
        rope_fn: RopeFn,
        row_tokens: int | None = None,
        pad_token_id: int = 0,
        attention_width: float | None = None,
    ) -> None:
        self.rope_fn = rope_fn
        self.row_tokens = row_tokens
        self.pad = pad_token_id
        self.attention_width = attention_width

    def positions(self, e: Example) -> torch.Tensor:
        """(4, L): text positions, then the three mRoPE rows, for one sequence on its own."""
        with torch.no_grad():
            pos, _ = self.rope_fn(
                input_ids=e.input_ids[None],
                mm_token_type_ids=e.mm_token_type_ids[None],
                image_grid_thw=e.image_grid_thw,
                attention_mask=None,
            )
        text = torch.arange(len(e), dtype=pos.dtype)[None]
        return torch.cat([text, pos[:, 0]], dim=0)

    def cost(self, n_rows: int, width: int) -> float:
        """Modelled cost of a step on ``n_rows`` rows of ``width`` tokens (linear layers + attention)."""
        attention = width / self.attention_width if self.attention_width else 0.0
        return n_rows * width * (1.0 + attention)

    def bins(self, examples: list[Example]) -> list[list[int]]:
        """Rows as lists of example indices, the cheapest split under :meth:`cost`.

        For each row count ``n`` that the width cap allows, sequences go longest first to the currently shortest
        row (rows end up nearly equal); the ``n`` with the lowest modelled cost wins. ``n`` = one row per example
        is the padded batch's shape, so packing never plans more work than padding.
        """
        lengths = [len(e) for e in examples]
        cap = max(self.row_tokens or sum(lengths), max(lengths))
        order = sorted(range(len(examples)), key=lambda i: -lengths[i])
        best: tuple[float, list[list[int]]] | None = None
        for n_rows in range(max(1, -(-sum(lengths) // cap)), len(examples) + 1):
            rows: list[list[int]] = [[] for _ in range(n_rows)]
            load = [0] * n_rows
            for i in order:
                k = min(range(n_rows), key=lambda r: load[r])
                rows[k].append(i)
                load[k] += lengths[i]
            if max(load) > cap:
                continue
            c = self.cost(n_rows, max(load))
            if best is None or c < best[0]:
                best = (c, rows)
        assert best is not None  # one row per example always fits
        # Images are fed to the vision tower in batch order: keep each row's examples in input order.
        return sorted((sorted(r) for r in best[1] if r), key=lambda r: r[0])

    def __call__(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        rows = self.bins(examples)
        width = max(sum(len(examples[i]) for i in r) for r in rows)
        fields: dict[str, list[torch.Tensor]] = {k: [] for k in ("input_ids", "labels", "position_ids", "mm", "kinds")}
        order = []
        for r in rows:
            ids, labels, pos, mm, kinds = [], [], [], [], []
            for i in r:
                e = examples[i]
                lab = e.labels.clone()
                lab[0] = IGNORE  # never predict across a sequence boundary
                ids.append(e.input_ids)
                labels.append(lab)
                pos.append(self.positions(e))
                mm.append(e.mm_token_type_ids)
                kinds.append(e.kinds)
                order.append(i)
            fill = width - sum(len(x) for x in ids)
            if fill:
                ids.append(torch.full((fill,), self.pad, dtype=ids[0].dtype))
                labels.append(torch.full((fill,), IGNORE, dtype=labels[0].dtype))
                pos.append(torch.arange(fill, dtype=pos[0].dtype)[None].expand(4, -1))
                mm.append(torch.zeros(fill, dtype=mm[0].dtype))
                kinds.append(torch.zeros(fill, dtype=kinds[0].dtype))
            fields["input_ids"].append(torch.cat(ids))
            fields["labels"].append(torch.cat(labels))
            fields["position_ids"].append(torch.cat(pos, dim=1))
            fields["mm"].append(torch.cat(mm))
            fields["kinds"].append(torch.cat(kinds))
        batch = {
            "input_ids": torch.stack(fields["input_ids"]),
            "labels": torch.stack(fields["labels"]),
            "position_ids": torch.stack(fields["position_ids"], dim=1),
            "mm_token_type_ids": torch.stack(fields["mm"]),
            "loss_kinds": torch.stack(fields["kinds"]),
        }
        batch.update(_vision([examples[i] for i in order]))
        return batch
