"""GRPO generation through a vLLM server, safe for multi-turn tool loops on several training processes.

TRL 1.16 generates through the server with a collective: every rank gathers its prompts to rank 0, which calls
the server and broadcasts the completions, and each rank takes the slice ``rank * len(prompts)``. Its tool loop,
though, generates only on ranks that still have pending tool calls, and with as many prompts as each has left. A
rank with no tool call in a round skips the collective (the others wait for it forever), and ranks with different
counts slice each other's completions.

:class:`ServerRounds` keeps every rank in every round instead. Each generation starts by gathering how many
prompts each rank brings; completions are sliced by those counts; a rank whose tool loop has ended keeps joining
rounds with no prompts until every rank's loop has ended. The same call keeps each request within the server's
model length: a turn's ``max_tokens`` is lowered to what is left of the context (``tools/clamped_turns``), and a
turn whose prompt already fills it gets no completion (``tools/full_context_turns``), where vLLM would reject the
request and stop the run.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from accelerate.utils import broadcast_object_list, gather_object
from trl.extras.profiling import profiling_context


def turn_budgets(lengths: list[int], max_tokens: int, model_len: int) -> list[int]:
    """Per-prompt ``max_tokens`` that keeps prompt + completion within ``model_len`` (0: the prompt fills it)."""
    return [max(0, min(max_tokens, model_len - n)) for n in lengths]


def split_by_counts(items: list, counts: list[int]) -> list[list]:
    """``items`` cut into consecutive pieces of ``counts`` lengths (one piece per rank)."""
    if sum(counts) != len(items):
        raise RuntimeError(f"the server returned {len(items)} completions for {sum(counts)} prompts")
    out, start = [], 0
    for n in counts:
        out.append(items[start : start + n])
        start += n
    return out


class ServerRounds:
    """Mix-in for ``GRPOTrainer``: server-mode generation in lockstep across ranks, within the server's length."""

    _in_tool_loop = False
    _server_model_len: int | None = None

    def _server_mode(self) -> bool:
        return bool(self.use_vllm) and self.vllm_mode == "server"

    def _tool_call_loop(self, *args, **kwargs):
        if not self._server_mode():
            return super()._tool_call_loop(*args, **kwargs)
        self._in_tool_loop = True
        try:
            result = super()._tool_call_loop(*args, **kwargs)
        finally:
            self._in_tool_loop = False
        # This rank's rollouts are done; serve the others' remaining rounds with no prompts of its own.
        while self._server_round([], None, 1) is not None:
            pass
        mode = "train" if self.model.training else "eval"
        stats = vars(self).pop("_round_stats", defaultdict(int))
        for key in ("clamped_turns", "full_context_turns", "server_rounds"):
            self._metrics[mode][f"tools/{key}"].append(float(stats[key]))
        return result

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        if not self._server_mode():
            return super()._generate_single_turn(
                prompt_ids, images, multimodal_fields, num_generations, has_tool_images
            )
        if self.state.global_step != self._last_loaded_step:  # as TRL does, once per optimiser step
            with profiling_context(self, "sync_weights"):
                self.vllm_generation.sync_weights()
            self._last_loaded_step = self.state.global_step
        completion_ids, logprobs = self._server_round(prompt_ids, images, num_generations)
        if logprobs is not None:
            logprobs = [[lp[0] for lp in seq] for seq in logprobs]  # top-1: the sampled token, as TRL keeps it
        return completion_ids, logprobs

    def _server_round(self, prompt_ids: list[list[int]], images: list | None, num_generations: int):
        """One collective generation round; returns this rank's (completion_ids, logprobs), or None when no rank
        brought a prompt (every tool loop has ended)."""
        counts = gather_object([len(prompt_ids)])
        if not any(counts):
            return None
        all_prompts = gather_object(prompt_ids)
        all_images = gather_object(images if images is not None else [None] * len(prompt_ids))
        payload = None
        if self.accelerator.is_main_process:
            payload = self._request_round(all_prompts, all_images, num_generations)
        payload = broadcast_object_list([payload], from_process=0)[0]
        completion_ids, logprobs, stats, model_len = payload
        if stats["full_context_turns"] and not self._in_tool_loop:
            # Every rank raises together (what rank 0 found travelled in the broadcast), so none is left waiting.
            raise ValueError(
                f"{stats['full_context_turns']} prompt(s) fill the vLLM server's whole context (max_model_len "
                f"{model_len}) before the first turn: start the server with a larger --max-model-len, or lower the "
                "records' image/video pixel budgets"
            )
        if "_round_stats" not in vars(self):
            self._round_stats = defaultdict(int)
        for key, value in stats.items():
            self._round_stats[key] += value
        rank = self.accelerator.process_index
        per_rank = split_by_counts(completion_ids, counts)
        mine_logprobs = split_by_counts(logprobs, counts)[rank] if logprobs is not None else None
        return per_rank[rank], mine_logprobs

    def _model_len(self) -> int:
        """The server's context length (vLLM lists it as ``max_model_len`` in ``/v1/models``)."""
        if self._server_model_len is None:
            client = self.vllm_generation.vllm_client
            card = client._get(f"{client.base_url}/v1/models")["data"][0]
            config = self.model.config
            fallback = getattr(getattr(config, "text_config", config), "max_position_embeddings", None)
            self._server_model_len = int(card.get("max_model_len") or fallback)
        return self._server_model_len

    def _request_round(self, prompts: list[list[int]], images: list, num_generations: int):
        """On rank 0: generate for every rank's prompts (``num_generations`` copies of each prompt arrive in a row,
        as TRL lays them out), one request group per ``max_tokens`` value."""
        vg = self.vllm_generation
        unique = prompts[::num_generations]
        unique_images = images[::num_generations]
        budgets = turn_budgets([len(p) for p in unique], vg.max_completion_length, self._model_len())
        stats = {
            "server_rounds": 1,
            "clamped_turns": sum(0 < b < vg.max_completion_length for b in budgets),
            "full_context_turns": sum(b == 0 for b in budgets),
        }
        completions: list[list[int] | None] = [None] * len(unique) * num_generations
        logprobs: list | None = [None] * len(completions) if vg.logprobs is not None else None
        for budget in sorted(set(budgets)):
            picked = [i for i, b in enumerate(budgets) if b == budget]
            if budget == 0:
                for i in picked:
                    for j in range(num_generations):
                        completions[i * num_generations + j] = []
                        if logprobs is not None:
                            logprobs[i * num_generations + j] = []
                continue
            group_images = [unique_images[i] for i in picked]
            features = None
            if any(group_images):
                raw = vg.vllm_client.image_features(group_images)
                features = [vg._place_features(f, unique[i]) for f, i in zip(raw, picked, strict=True)]
            with profiling_context(self, "vLLM.generate"):
                out = vg.vllm_client.generate(
                    prompts=[unique[i] for i in picked], features=features, **self._sampling(budget, num_generations)
                )
            for k, i in enumerate(picked):
                for j in range(num_generations):
                    completions[i * num_generations + j] = out["completion_ids"][k * num_generations + j]
                    if logprobs is not None:
                        logprobs[i * num_generations + j] = out["logprobs"][k * num_generations + j]
        return completions, logprobs, stats, self._model_len()

    def _sampling(self, max_tokens: int, n: int) -> dict[str, Any]:
        vg = self.vllm_generation
        return {
            "n": n,
            "repetition_penalty": vg.repetition_penalty,
            "temperature": vg.temperature,
            "top_p": vg.top_p,
            "top_k": vg.top_k,
            "min_p": 0.0 if vg.min_p is None else vg.min_p,
            "max_tokens": max_tokens,
            "logprobs": vg.logprobs,
            "structured_outputs_regex": vg.structured_outputs_regex,
            "generation_kwargs": vg.generation_kwargs,
        }
