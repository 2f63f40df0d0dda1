"""Test scaffolding: GRPO in vLLM server mode against ``tests/fake_vllm.py``, launched with ``accelerate launch``.

Everything TRL does in server mode runs for real (its ``VLLMClient`` over HTTP, image features, sampling
parameters, the tool loop, the collectives between ranks) except the two parts that need vLLM's NCCL
weight-transfer engine on a GPU: joining the weight-update group and streaming the weights, which are replaced by
counting what would be sent. Each rank writes its rollouts (the case tag of the prompt and the text of every
assistant turn) to ``$ROLLOUT_LOG/rank<N>.jsonl`` so the test can check every completion landed in its own rollout.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def patch_weight_transfer() -> None:
    import trl.generation.vllm_client as vllm_client
    import trl.generation.vllm_generation as vllm_generation
    from trl.generation.vllm_client import VLLMClient

    # The server stands for vLLM; on the trainer's side TRL only checks that vLLM is importable.
    vllm_generation.is_vllm_available = vllm_client.is_vllm_available = lambda *a, **k: True

    def init_communicator(self, device=0):
        self.get_server_info()  # as TRL does first; the NCCL group itself needs CUDA

    def update_named_params(self, metadata, params):
        self.weights_sent = sum(1 for _ in params)

    VLLMClient.init_communicator = init_communicator
    VLLMClient.update_named_params = update_named_params
    VLLMClient.close_communicator = lambda self: None


def record_rollouts(trainer_cls, folder: Path) -> None:
    original = trainer_cls._generate

    def _generate(self, prompts):
        out = original(self, prompts)
        completions = out[3]
        rank = self.accelerator.process_index
        with open(folder / f"rank{rank}.jsonl", "a") as fh:
            for prompt, turns in zip(prompts, completions, strict=True):
                text = json.dumps(prompt, default=str)
                case = re.search(r"\[case \d+ (?:tools|plain)\]", text).group(0)
                said = [f"{m.get('reasoning_content') or ''} {m.get('content') or ''}" for m in turns
                        if m["role"] == "assistant"]  # fmt: skip
                calls = [m for m in turns if m["role"] == "assistant" and m.get("tool_calls")]
                tools = sum(m["role"] == "tool" for m in turns)
                fh.write(
                    json.dumps({"case": case, "assistant": said, "calls": len(calls), "tool_results": tools}) + "\n"
                )
        return out

    trainer_cls._generate = _generate


def main(argv: list[str] | None = None) -> int:
    import train.grpo as grpo

    patch_weight_transfer()
    record_rollouts(grpo.JudgeGRPOTrainer, Path(os.environ["ROLLOUT_LOG"]))
    return grpo.main(argv)


if __name__ == "__main__":
    sys.exit(main())
