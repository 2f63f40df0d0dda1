"""Test scaffolding: GRPO with a *scripted* policy sampler, so rollouts really call tools.

A random-weight tiny model never writes a well-formed tool call, so the tool loop would go untested. Here the
model's ``generate`` is replaced by a script (first turn: a crop call, sometimes an invalid one; after a tool
result: a verdict, picked at random so rewards vary); everything else is real: TRL's tool loop and masks, the
environment running our tools, the rewards, the log-probabilities and gradients of the real model, the
optimizer step, checkpoints. Used in-process by ``tests/test_grpo.py`` and as a script for ``accelerate launch``:

    accelerate launch --config_file train/accelerate/ddp_cpu_2proc.yaml tests/grpo_scripted.py --config ...
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmreward.protocol import format_turn  # noqa: E402

GOOD_CALL = ("crop", {"image": "image_1", "bbox_2d": [0, 0, 600, 600]})
BAD_CALL = ("crop", {"image": "image_1", "bbox_2d": [0, 0, 2000, 10]})


def scripted_generate(model, tokenizer, seed: int = 0):
    """A ``generate`` that writes protocol turns and returns prompt + completion ids like transformers does."""
    rng = random.Random(seed)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def generate(input_ids=None, attention_mask=None, generation_config=None, **_):
        rows = []
        for ids in input_ids.tolist():
            prompt = tokenizer.decode(ids, skip_special_tokens=False)
            noun = "Answer" if "[Answer 1]" in prompt else "Image"
            if "<tool_response>" in prompt:
                text = format_turn("now I can see it", answer=f"{noun} {rng.choice([1, 2])} is better")
            else:
                text = format_turn("let me look closer", tool=GOOD_CALL if rng.random() < 0.75 else BAD_CALL)
            rows.append(tokenizer(text + "<|im_end|>", add_special_tokens=False)["input_ids"])
        width = max(len(r) for r in rows)
        new = torch.tensor([r + [pad] * (width - len(r)) for r in rows], dtype=input_ids.dtype)
        return torch.cat([input_ids, new.to(input_ids.device)], dim=1)

    return generate


def install(trainer, seed: int = 0) -> None:
    trainer.model.generate = scripted_generate(trainer.model, trainer.processing_class.tokenizer, seed)


def main(argv: list[str] | None = None) -> int:
    import train.grpo as grpo

    original = grpo.JudgeGRPOTrainer.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        install(self, seed=int(self.args.seed) + self.accelerator.process_index)

    grpo.JudgeGRPOTrainer.__init__ = init
    return grpo.main(argv)


if __name__ == "__main__":
    sys.exit(main())
