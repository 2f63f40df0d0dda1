"""Generators: what produces one assistant turn for a batch of judging requests.

:class:`TransformersGenerator` runs a local ``transformers`` model (left padding, vision placeholder tokens
suppressed, optional KV-cache reuse across a trajectory's turns); ``mmreward.remote.OpenAIGenerator`` calls an
OpenAI-compatible server. The engine (:mod:`mmreward.rollout`) only needs the :class:`Generator` interface.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from PIL import Image

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
        # Per trajectory: each image's processed pixels and grid, by content, so a turn preprocesses only its new
        # images (the processor would otherwise resize and patch every image of the context again, every turn).
        self._pixels: dict[str, dict[bytes, tuple[Any, Any]]] = {}
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
        self._pixels.pop(key, None)

    def encode_context(self, key: str, text: str, images: list[Image.Image]):
        """What ``processor(text=[text], images=images)`` returns, preprocessing only the images this trajectory
        has not shown before (tested equal to the processor's own output)."""
        import hashlib  # noqa: PLC0415

        import torch  # noqa: PLC0415

        if not images:
            return self.processor(text=[text], return_tensors="pt")
        memo = self._pixels.setdefault(key, {})
        prints = [hashlib.blake2b(im.tobytes(), digest_size=16, person=im.mode.encode()[:16]).digest()
                  + f"{im.width}x{im.height}".encode() for im in images]  # fmt: skip
        new = {p: im for p, im in zip(prints, images) if p not in memo}
        if new:
            out = self.processor.image_processor(images=list(new.values()), return_tensors="pt")
            sizes = out["image_grid_thw"].prod(-1).tolist()
            for p, pixels, grid in zip(new, out["pixel_values"].split(sizes), out["image_grid_thw"]):
                memo[p] = (pixels, grid)
        grid = torch.stack([memo[p][1] for p in prints])
        replacements = [self.processor.replace_image_token({"image_grid_thw": grid}, i) for i in range(len(prints))]
        expanded, _ = self.processor.get_text_with_replacements([text], replacements)
        batch = dict(self.tokenizer(expanded, return_tensors="pt"))
        batch["pixel_values"] = torch.cat([memo[p][0] for p in prints])
        batch["image_grid_thw"] = grid
        return batch

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationOutput]:
        import torch  # noqa: PLC0415

        if self.reuse_cache:
            if len(requests) == 1:
                return [self._generate_cached(requests[0])]
            return self._generate_cached_batch(requests)
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

    def _rope_owner(self):
        """The module with Qwen-VL's ``get_rope_index``: the inner model, under a PEFT wrapper's layers too."""
        m = self.model
        for _ in range(6):
            if any("get_rope_index" in vars(c) for c in type(m).__mro__):  # not via PEFT's attribute forwarding
                return m
            m = getattr(m, "model", None)
            if m is None:
                break
        raise AttributeError(f"{type(self.model).__name__}: no module with get_rope_index (a Qwen-VL model is needed)")

    def _positions(self, batch) -> Any:
        """Qwen-VL's 3-D rope positions of a whole (unpadded) sequence, from the model's own rope index."""
        import torch  # noqa: PLC0415

        ids = batch["input_ids"]
        if batch.get("image_grid_thw") is None:
            return torch.arange(ids.shape[1]).view(1, 1, -1).expand(3, 1, -1)
        inner = self._rope_owner()
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

        plan = self._plan(key, text, images)
        ids, pos, p, cache = plan["ids"], plan["pos"], plan["p"], plan["cache"]
        with torch.inference_mode():
            out = self.model(
                input_ids=plan["input_ids"][:, p:].to(self.model.device),
                position_ids=pos[:, :, p:].to(self.model.device),
                past_key_values=cache,
                use_cache=True,
                cache_position=torch.arange(p, len(ids), device=self.model.device),
                **{k: v.to(self.model.device) for k, v in plan["vision"].items()},
            )
        self._caches[key] = (ids, cache)
        return out.logits[0, -1].float(), len(ids) - p, ids, int(pos[0, 0, -1]) + 1

    def _plan(self, key: str, text: str, images: list[Image.Image]) -> dict[str, Any]:
        """What bringing ``key``'s cache up to ``text`` takes: the full ids and 3-D positions, the reuse point ``p``
        (the longest cached prefix that does not cut an image), the cache cut back to it, and the pixels of the
        images after it."""
        from transformers import DynamicCache  # noqa: PLC0415

        batch = self.encode_context(key, text, images)
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
        vision: dict[str, Any] = {}
        if grid is not None and n_cached < len(grid):
            first_patch = int(grid[:n_cached].prod(-1).sum())
            vision = {"pixel_values": batch["pixel_values"][first_patch:], "image_grid_thw": grid[n_cached:]}
        return {"ids": ids, "input_ids": batch["input_ids"], "pos": pos, "p": p, "cache": cache, "vision": vision}

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
            tok = self._next_token(logits, ids, out, step, rng)
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

    def _next_token(self, logits, context: list[int], out: list[int], step: int, rng) -> int:
        """One token from one row's last logits: the repetition penalty over the context, vision tokens suppressed,
        end of turn held back before ``min_new_tokens``, then greedy or top-p sampling."""
        import torch  # noqa: PLC0415

        s = self.sampling
        logits = logits.clone()
        if s.repetition_penalty != 1.0:  # as transformers' RepetitionPenaltyLogitsProcessor, over the context
            seen = torch.tensor(sorted(set(context) | set(out)), device=logits.device)
            score = logits[seen]
            logits[seen] = torch.where(score < 0, score * s.repetition_penalty, score / s.repetition_penalty)
        logits[self.suppress_ids] = float("-inf")
        if step < s.min_new_tokens:
            logits[self.eos_ids] = float("-inf")
        if rng is None:
            return int(logits.argmax())
        return self._sample(logits, rng)

    def _sample(self, logits, rng) -> int:
        """Top-p sampling at the sampling temperature from one row's processed logits."""
        return self._sample_rows(logits[None], [rng])[0]

    def _sample_rows(self, scores, rngs: list) -> list[int]:
        """One token per row of processed logits, all rows at once: top-p at the sampling temperature, then the
        inverse CDF at one uniform draw from each row's own generator, so a row's tokens do not depend on the rows
        beside it. One softmax and one host sync per step instead of one per row (a 151k vocabulary: 37 ms against
        104 ms a step for 32 rows on CPU; on a GPU one sync against 32)."""
        import torch  # noqa: PLC0415

        s = self.sampling
        probs = torch.softmax(scores.float() / s.temperature, dim=-1)
        if s.top_p < 1.0:
            sp, si = probs.sort(dim=-1, descending=True)
            sp = sp * (sp.cumsum(-1) - sp < s.top_p)
            probs = torch.zeros_like(probs).scatter(-1, si, sp)
        cdf = probs.double().cumsum(-1)
        draws = [float(torch.rand((), generator=g, dtype=torch.float64)) for g in rngs]
        u = torch.tensor(draws, dtype=torch.float64, device=cdf.device) * cdf[:, -1]
        picked = torch.searchsorted(cdf, u[:, None], right=True).squeeze(-1)
        # A draw that rounds up to the total must still land on a token that has probability.
        last = probs.shape[-1] - 1 - (probs.flip(-1) > 0).int().argmax(-1)
        return torch.minimum(picked, last).tolist()

    def _prefill(self, requests: list[GenerationRequest], texts: list[str]) -> dict[str, tuple[Any, list[int], int]]:
        """First turns, encoded as one left-padded batch (as generation without cache reuse encodes them), then cut
        into one cache per trajectory. Returns key -> (last logits, ids, next position)."""
        import torch  # noqa: PLC0415
        from transformers import DynamicCache  # noqa: PLC0415

        batch = self._encode(texts, [im for r in requests for im in r.images])
        mask = batch["attention_mask"]
        ids = batch["input_ids"]
        inner = self._rope_owner()
        if batch.get("image_grid_thw") is not None:
            mm = (ids == self.tokenizer.convert_tokens_to_ids("<|image_pad|>")).long()
            pos, _ = inner.get_rope_index(ids, mm, image_grid_thw=batch["image_grid_thw"], attention_mask=mask)
        else:
            pos = (mask.cumsum(-1) - 1).clamp(min=0).unsqueeze(0).expand(3, -1, -1)
        cache = DynamicCache(config=self.model.config)
        extra = {k: v for k, v in batch.items() if k in ("pixel_values", "image_grid_thw")}
        with torch.inference_mode():
            out = self.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=pos,
                past_key_values=cache,
                use_cache=True,
                cache_position=torch.arange(ids.shape[1], device=ids.device),
                **extra,
            )
        width = ids.shape[1]
        result = {}
        for i, r in enumerate(requests):
            start = width - int(mask[i].sum())
            own = [
                (layer.keys[i : i + 1, :, start:].clone(), layer.values[i : i + 1, :, start:].clone())
                for layer in cache.layers
            ]
            row_ids = ids[i, start:].tolist()
            self._caches[r.key] = (row_ids, DynamicCache(own, config=self.model.config))
            result[r.key] = (out.logits[i, -1].float(), row_ids, int(pos[0, i, -1]) + 1)
        return result

    def _generate_cached_batch(self, requests: list[GenerationRequest]) -> list[GenerationOutput]:
        """Cache reuse inside a batch: each trajectory brings its own cache up to date (encoding only what its
        last turn and tool observation appended), then all of them decode together. The caches are left-padded
        into one batch for decoding and cut back into per-trajectory caches afterwards, so the next turn again
        encodes only what it appends."""
        import torch  # noqa: PLC0415
        from transformers import DynamicCache  # noqa: PLC0415

        s = self.sampling
        texts = [self.render(r.messages, r.tools) for r in requests]
        fresh = [i for i, r in enumerate(requests) if r.key not in self._caches]
        prefilled = self._prefill([requests[i] for i in fresh], [texts[i] for i in fresh]) if len(fresh) > 1 else {}
        plans = {r.key: self._plan(r.key, t, r.images) for r, t in zip(requests, texts) if r.key not in prefilled}
        dev = self.model.device
        # Every row's cache, left-padded to the longest cached part (``width``); then every row's suffix (what its
        # turn appended), right-padded to the longest, encoded in one forward. Pads are masked out everywhere.
        cached = [len(prefilled[r.key][1]) if r.key in prefilled else plans[r.key]["p"] for r in requests]
        suffix = [0 if r.key in prefilled else len(plans[r.key]["ids"]) - plans[r.key]["p"] for r in requests]
        caches = [self._caches[r.key][1] if r.key in prefilled else plans[r.key]["cache"] for r in requests]
        width, span = max(cached), max(suffix)
        n_layers = self.model.config.get_text_config().num_hidden_layers
        padded = []
        for layer in range(n_layers if width else 0):
            ks, vs = [], []
            for cache, n in zip(caches, cached):
                if n:
                    k, v = cache.layers[layer].keys, cache.layers[layer].values
                else:  # an empty cache: shaped from a neighbour's
                    ref = next(c for c, m in zip(caches, cached) if m).layers[layer].keys
                    k = v = ref.new_zeros((1, ref.shape[1], 0, ref.shape[3]))
                ks.append(torch.nn.functional.pad(k, (0, 0, width - n, 0)))
                vs.append(torch.nn.functional.pad(v, (0, 0, width - n, 0)))
            padded.append((torch.cat(ks), torch.cat(vs)))
        batch_cache = (
            DynamicCache(padded, config=self.model.config) if width else DynamicCache(config=self.model.config)
        )
        mask = torch.tensor(
            [[0] * (width - c) + [1] * c + [1] * n + [0] * (span - n) for c, n in zip(cached, suffix)], device=dev
        )
        logits_rows, ids_rows, next_rows = [], [], []
        if span:
            input_ids = torch.full((len(requests), span), self.pad_id, dtype=torch.long)
            positions = torch.zeros((3, len(requests), span), dtype=torch.long)
            pixels, grids = [], []
            for i, r in enumerate(requests):
                if r.key in prefilled:
                    continue
                plan = plans[r.key]
                input_ids[i, : suffix[i]] = plan["input_ids"][0, plan["p"] :]
                positions[:, i, : suffix[i]] = plan["pos"][:, 0, plan["p"] :]
                if plan["vision"]:
                    pixels.append(plan["vision"]["pixel_values"])
                    grids.append(plan["vision"]["image_grid_thw"])
            vision = (
                {"pixel_values": torch.cat(pixels).to(dev), "image_grid_thw": torch.cat(grids).to(dev)}
                if pixels
                else {}
            )
            with torch.inference_mode():
                out = self.model(
                    input_ids=input_ids.to(dev),
                    position_ids=positions.to(dev),
                    attention_mask=mask,
                    past_key_values=batch_cache,
                    use_cache=True,
                    cache_position=torch.arange(width, width + span, device=dev),
                    **vision,
                )
        for i, r in enumerate(requests):
            if r.key in prefilled:
                logits, ids, next_pos = prefilled[r.key]
            else:
                plan = plans[r.key]
                logits, ids = out.logits[i, suffix[i] - 1].float(), plan["ids"]
                next_pos = int(plan["pos"][0, 0, -1]) + 1
            logits_rows.append(logits)
            ids_rows.append(list(ids))
            next_rows.append(next_pos)
        rows = [(r, lg, ids, nxt, None) for r, lg, ids, nxt in zip(requests, logits_rows, ids_rows, next_rows)]
        start = width + span  # where generated tokens begin in the batch cache
        rngs = [torch.Generator().manual_seed((s.seed or 0) + r.turn) if s.temperature > 0 else None for r, *_ in rows]
        outs: list[list[int]] = [[] for _ in rows]
        done = [False] * len(rows)
        logits = torch.stack([row[1] for row in rows])
        # The rows' token choices, all at once: the same arithmetic as _next_token, one row per line.
        seen = torch.zeros(logits.shape, dtype=torch.bool, device=logits.device)
        for i, (_, _, ids, _, _) in enumerate(rows):
            seen[i, ids] = True
        budget = max(r.max_new_tokens for r in requests)
        for step in range(budget):
            scores = logits.clone()
            if s.repetition_penalty != 1.0:
                penalized = torch.where(scores < 0, scores * s.repetition_penalty, scores / s.repetition_penalty)
                scores = torch.where(seen, penalized, scores)
            scores[:, self.suppress_ids] = float("-inf")
            if step < s.min_new_tokens:
                scores[:, self.eos_ids] = float("-inf")
            active = [i for i in range(len(rows)) if not done[i]]
            if s.temperature <= 0:
                picks = dict(zip(active, scores[active].argmax(-1).tolist()))
            else:
                picks = dict(zip(active, self._sample_rows(scores[active], [rngs[i] for i in active])))
            toks = []
            for i, (r, _, _, _, _) in enumerate(rows):
                if done[i]:
                    toks.append(self.pad_id)
                    continue
                tok = picks[i]
                outs[i].append(tok)
                done[i] = tok in self.end_ids or len(outs[i]) >= r.max_new_tokens
                toks.append(tok)
            seen[active, [picks[i] for i in active]] = True
            if all(done):
                break
            mask = torch.cat([mask, torch.ones(len(rows), 1, dtype=mask.dtype, device=dev)], dim=1)
            positions = torch.tensor([row[3] + step for row in rows], device=dev).view(1, -1, 1).expand(3, -1, 1)
            with torch.inference_mode():
                o = self.model(
                    input_ids=torch.tensor([[t] for t in toks], device=dev),
                    position_ids=positions,
                    attention_mask=mask,
                    past_key_values=batch_cache,
                    use_cache=True,
                    cache_position=torch.tensor([start + step], device=dev),
                )
            logits = o.logits[:, -1].float()
        outputs = []
        for i, (r, _, ids, _, _) in enumerate(rows):
            out = outs[i]
            # The cache holds every generated token but a final end token (as the one-row loop leaves it).
            fed = out[:-1] if out and (out[-1] in self.end_ids or len(out) >= r.max_new_tokens) else out
            # The row's own tokens: its cached part, its suffix, what it generated (the pads between are dropped).
            keep_at = torch.cat(
                [
                    torch.arange(width - cached[i], width + suffix[i]),
                    torch.arange(start, start + len(fed)),
                ]
            ).to(dev)
            own = [
                (layer.keys[i : i + 1, :, keep_at].clone(), layer.values[i : i + 1, :, keep_at].clone())
                for layer in batch_cache.layers
            ]
            self._caches[r.key] = (ids + fed, DynamicCache(own, config=self.model.config))
            n = next((k for k, t in enumerate(out) if t in self.end_ids), len(out))
            keep = n + (1 if n < len(out) and out[n] in self.stop_tag_ids else 0)
            text = self.tokenizer.decode(out[:keep], skip_special_tokens=False)
            completion = n + (1 if n < len(out) and out[n] != self.pad_id else 0)
            outputs.append(
                GenerationOutput(text=_cut_at_stop(text), prompt_tokens=len(ids), completion_tokens=completion)
            )
        return outputs

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
