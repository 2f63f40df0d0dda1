"""Batching rendered trajectories: padded batches, or padding-free packing with correct 3-D mRoPE positions.

**Packing.** All examples of a batch are concatenated into one row. Qwen-VL's multimodal RoPE gives image tokens
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
    m = model
    for attr in ("get_base_model",):
        if hasattr(m, attr):
            m = getattr(m, attr)()
    inner = getattr(m, "model", m)
    fn = getattr(inner, "get_rope_index", None)
    if fn is None:
        raise ValueError(f"{type(model).__name__} has no get_rope_index; packing needs a Qwen-VL model")
    return fn


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
    """One row per batch, no padding; positions per sequence from ``rope_fn`` (see the module docstring)."""

    def __init__(self, rope_fn: RopeFn) -> None:
        self.rope_fn = rope_fn

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

    def __call__(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        labels = []
        for e in examples:
            lab = e.labels.clone()
            lab[0] = IGNORE  # never predict across a sequence boundary
            labels.append(lab)
        batch = {
            "input_ids": torch.cat([e.input_ids for e in examples])[None],
            "labels": torch.cat(labels)[None],
            "position_ids": torch.cat([self.positions(e) for e in examples], dim=1)[:, None, :],
            "mm_token_type_ids": torch.cat([e.mm_token_type_ids for e in examples])[None],
            "loss_kinds": torch.cat([e.kinds for e in examples])[None],
        }
        batch.update(_vision(examples))
        return batch
