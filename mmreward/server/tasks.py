"""Requests -> judging tasks: the checks, limits and media loading that the judging endpoints share (the chat
endpoint's own reading of messages is in :mod:`mmreward.server.chat`).

The routes in :mod:`mmreward.server.app` only sequence these calls; everything that decides what a request means
lives here. Methods that load media block, so the routes run them in a thread pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mmreward.generators import SamplingSettings
from mmreward.judge import JudgeSettings, Judgment
from mmreward.protocol import JudgeTask
from mmreward.server.inputs import MediaResolver, RequestError, limit_error
from mmreward.server.schemas import JudgeOptions, JudgeRequest, RewardItem, RewardsRequest
from mmreward.server.settings import RequestLimits

# Refusals that concern the whole request (security rules, limits), as opposed to one unusable media item.
REQUEST_LEVEL = {"local_paths_disabled", "path_not_allowed", "url_fetch_disabled", "address_not_allowed"}


class RequestTasks:
    def __init__(self, resolver: MediaResolver, limits: RequestLimits, default_max_tokens: int) -> None:
        self.resolver = resolver
        self.lim = limits
        self.default_max_tokens = default_max_tokens

    # ---- shared checks

    def sampling(self, o: JudgeOptions) -> SamplingSettings:
        lim = self.lim
        if o.votes > lim.max_n:
            raise limit_error("max_n", f"votes={o.votes} is above {lim.max_n}")
        if o.max_tokens is not None and o.max_tokens > lim.max_tokens:
            raise limit_error("max_tokens", f"max_tokens={o.max_tokens} is above {lim.max_tokens}")
        if o.votes > 1 and o.temperature == 0:
            raise RequestError(400, "invalid_request", "votes > 1 needs temperature > 0 (greedy votes are identical)")
        max_new = o.max_tokens or self.default_max_tokens
        if o.min_tokens > max_new:
            raise RequestError(400, "invalid_request", f"min_tokens={o.min_tokens} is above max_tokens={max_new}")
        seed = o.seed if o.seed is not None else 0
        return SamplingSettings(max_new, o.temperature, o.top_p, seed, min_new_tokens=o.min_tokens)

    @staticmethod
    def judge_settings(o: JudgeOptions) -> JudgeSettings:
        return JudgeSettings(swap=o.swap, votes=o.votes, tools=o.tools, reward=o.reward)

    def check_text(self, text: str, where: str) -> None:
        if len(text) > self.lim.max_text_chars:
            raise limit_error("max_text_chars", f"{where}: {len(text)} characters, above {self.lim.max_text_chars}")

    def count_media(self, kinds: list[str]) -> None:
        n_img, n_vid = kinds.count("image"), kinds.count("video")
        if n_img > self.lim.max_images:
            raise limit_error("max_images", f"{n_img} images in one request, above {self.lim.max_images}")
        if n_vid > self.lim.max_videos:
            raise limit_error("max_videos", f"{n_vid} videos in one request, above {self.lim.max_videos}")

    def load(self, ref: str, kind: str, where: str):
        return self.resolver.image(ref, where) if kind == "image" else self.resolver.video(ref, where)

    @staticmethod
    def task(**kw) -> JudgeTask:
        try:
            return JudgeTask(**kw)
        except ValueError as exc:
            raise RequestError(400, "invalid_request", str(exc)) from None

    # ---- /v1/judge

    def judge_task(self, req: JudgeRequest) -> JudgeTask:
        """The task of a ``/v1/judge`` request, media loaded (blocks)."""
        self.check_text(req.prompt, "prompt")
        kind = req.kind or ("pointwise" if len(req.candidates) == 1 else "multi" if req.dimensions else "pairwise")
        if req.modality == "answer":
            for i, c in enumerate(req.candidates):
                self.check_text(c, f"candidates[{i}]")
            self.count_media([req.media_kind] * len(req.media))
            media = [self.load(m, req.media_kind, f"media[{i}]") for i, m in enumerate(req.media)]
            candidates = list(req.candidates)
        else:
            if req.media:
                raise RequestError(400, "invalid_request", "media is only for modality=answer", "media")
            self.count_media([req.modality] * len(req.candidates))
            candidates = [self.load(c, req.modality, f"candidates[{i}]") for i, c in enumerate(req.candidates)]
            media = []
        return self.task(
            prompt=req.prompt,
            candidates=candidates,
            modality=req.modality,
            kind=kind,
            media=media,
            media_kind=req.media_kind,
            dimensions=req.dimensions,
            allow_tie=req.allow_tie,
            id=req.id or "request",
        )

    # ---- /v1/rewards

    def reward_groups(self, req: RewardsRequest) -> list[RewardGroupPlan]:
        """The call's groups with each item's prompt, checked against the limits and the mode."""
        given = [x for x in ("items", "groups") if getattr(req, x) is not None]
        if len(given) != 1:
            raise RequestError(400, "invalid_request", "give either `items` (with `prompt`) or `groups`", "items")
        if req.groups is not None:
            if req.group_size is not None or req.prompts is not None:
                raise RequestError(400, "invalid_request", "group_size and prompts go with `items`, not `groups`")
            raw = [(g.prompt, g.items) for g in req.groups]
        elif req.group_size is not None:
            items = req.items or []
            if len(items) % req.group_size:
                raise RequestError(
                    400,
                    "invalid_request",
                    f"{len(items)} items do not split into groups of {req.group_size}",
                    "group_size",
                )
            n_groups = len(items) // req.group_size
            prompts = req.prompts if req.prompts is not None else [req.prompt] * n_groups
            if len(prompts) != n_groups:
                raise RequestError(400, "invalid_request", f"{len(prompts)} prompts for {n_groups} groups", "prompts")
            raw = [(prompts[g], items[g * req.group_size : (g + 1) * req.group_size]) for g in range(n_groups)]
        else:
            if req.prompts is not None:
                raise RequestError(400, "invalid_request", "prompts goes with group_size", "prompts")
            raw = [(req.prompt, req.items or [])]
        total = sum(len(items) for _, items in raw)
        if total > self.lim.max_items:
            raise limit_error("max_items", f"{total} items in one call, above {self.lim.max_items}")
        groups, start = [], 0
        for g, (prompt, items) in enumerate(raw):
            its = [it if isinstance(it, RewardItem) else RewardItem(media=it) for it in items]
            prompts = [it.prompt or prompt for it in its]
            where = f"groups[{g}]" if req.groups is not None else "items"
            if any(not p for p in prompts):
                raise RequestError(400, "invalid_request", f"{where}: give the group's prompt or one per item")
            for i, p in enumerate(prompts):
                self.check_text(p, f"{where}[{i}].prompt")
            if req.mode == "pairwise_winrate":
                if len(its) < 2:
                    raise RequestError(400, "invalid_request", f"{where}: pairwise_winrate needs at least 2 items")
                if len(set(prompts)) > 1:
                    raise RequestError(
                        400, "invalid_request", f"{where}: pairwise_winrate compares items of one prompt"
                    )
            groups.append(RewardGroupPlan(its, prompts, start))
            start += len(its)
        return groups

    def load_groups(self, req: RewardsRequest, groups: list[RewardGroupPlan]) -> tuple[list[Any], dict[int, str]]:
        """Each item's media (blocks), by flat index; an item that cannot be used is reported, not fatal, unless
        the refusal concerns the whole request."""
        loaded: list[Any] = []
        failed: dict[int, str] = {}
        for g in groups:
            for i, it in enumerate(g.items):
                try:
                    loaded.append(self.load(it.media, req.modality, f"item {g.start + i}"))
                except RequestError as exc:
                    if exc.code in REQUEST_LEVEL or exc.code == "limit_exceeded":
                        raise
                    loaded.append(None)
                    failed[g.start + i] = exc.message
        return loaded, failed

    def reward_tasks(
        self, req: RewardsRequest, groups: list[RewardGroupPlan], loaded: list[Any], failed: dict[int, str]
    ) -> tuple[list[tuple[int, ...]], list[JudgeTask]]:
        """(the flat item indices each task judges, the tasks): one per usable item, or one per pair in a group."""
        pairs: list[tuple[int, ...]] = []
        tasks: list[JudgeTask] = []
        for g in groups:
            ok = [g.start + i for i in range(len(g.items)) if g.start + i not in failed]
            prompt = {g.start + i: p for i, p in enumerate(g.prompts)}
            if req.mode == "pointwise":
                common = dict(modality=req.modality, kind="pointwise", dimensions=req.dimensions)
                for i in ok:
                    pairs.append((i,))
                    tasks.append(self.task(prompt=prompt[i], candidates=[loaded[i]], id=f"item-{i}", **common))
                continue
            kind = "multi" if req.dimensions else "pairwise"
            common = dict(modality=req.modality, kind=kind, dimensions=req.dimensions, allow_tie=req.ties == "allow")
            for a, i in enumerate(ok):
                for j in ok[a + 1 :]:
                    pairs.append((i, j))
                    tasks.append(
                        self.task(prompt=prompt[i], candidates=[loaded[i], loaded[j]], id=f"pair-{i}-{j}", **common)
                    )
        return pairs, tasks


@dataclass
class RewardGroupPlan:
    items: list[RewardItem]
    prompts: list[str]
    start: int  # the flat index of its first item


def group_rewards(
    req: RewardsRequest,
    groups: list[RewardGroupPlan],
    pairs: list[tuple[int, ...]],
    judgments: list[Judgment],
    failed: dict[int, str],
) -> dict[str, Any]:
    """Per-item rewards from pointwise scores or from pairwise win rates within each group; failures stay visible
    (``null``, or ``failure_value`` when the request gives one) and never touch a neighbour's reward.

    With ``reward=true`` the continuous reward is used: the expected score (pointwise), or P(better) in place of a
    0/1 win (pairwise), so items of a group rarely tie."""
    n = sum(len(g.items) for g in groups)
    rewards: list[float | None] = [None] * n
    details: list[dict[str, Any]] = [{"index": i} for i in range(n)]
    failures = [{"index": i, "reason": r} for i, r in sorted(failed.items())]
    if req.mode == "pointwise":
        for (i,), j in zip(pairs, judgments):
            score = j.reward if req.reward and j.reward is not None else j.score
            details[i].update(outcome=j.outcome, score=j.score, expected_score=j.reward, dimensions=j.dimensions)
            if score is None:
                failures.append({"index": i, "reason": "; ".join(j.failures) or j.outcome})
                continue
            rewards[i] = (score - 1.0) / 9.0 if req.normalize else score
    else:
        wins = [0.0] * n
        played = [0] * n
        unresolved = [0] * n
        for (a, b), j in zip(pairs, judgments):
            if j.outcome == "failed":
                unresolved[a] += 1
                unresolved[b] += 1
                continue
            played[a] += 1
            played[b] += 1
            if req.reward and j.reward is not None:
                wins[a] += j.reward
                wins[b] += 1.0 - j.reward
            elif j.outcome == "prefer":
                wins[a if j.preferred == 0 else b] += 1.0
            else:  # tie or abstain: half a win each
                wins[a] += 0.5
                wins[b] += 0.5
        for i in range(n):
            if i in failed:
                continue
            details[i].update(wins=wins[i], comparisons=played[i], failed_comparisons=unresolved[i])
            if played[i] == 0:
                failures.append({"index": i, "reason": "every comparison of this item failed"})
                continue
            rewards[i] = wins[i] / played[i]
    failures.sort(key=lambda f: f["index"])
    if req.failure_value is not None:
        rewards = [req.failure_value if r is None else r for r in rewards]
    body: dict[str, Any] = {"object": "rewards", "mode": req.mode, "rewards": rewards, "details": details}
    body["failures"] = failures
    if len(groups) > 1 or req.groups is not None:
        body["groups"] = [rewards[g.start : g.start + len(g.items)] for g in groups]
    return body
