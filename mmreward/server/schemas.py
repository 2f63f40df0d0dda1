"""Request bodies of the judge API (pydantic). Unknown fields are refused on mmreward's own endpoints (a typo
should not silently change a judgment); the OpenAI-compatible endpoint accepts and ignores OpenAI fields it
does not use."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class JudgeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    swap: Literal["none", "both", "random"] = Field("none", description="presented orders: both = position swap")
    votes: int = Field(1, ge=1, description="sampled trajectories per order; majority vote")
    tools: bool = Field(True, description="let the judge crop / select frames")
    reward: bool = Field(False, description="continuous reward from the verdict logits (local backend)")
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1, description="tokens per assistant turn")
    min_tokens: int = Field(0, ge=0, description="suppress end of turn before this many tokens (as vLLM's)")
    seed: int | None = None


class JudgeRequest(JudgeOptions):
    prompt: str = Field(description="the generation prompt, or the question for answer candidates")
    candidates: list[str] = Field(
        min_length=1, max_length=2, description="media (data URLs / base64) or, for modality=answer, texts"
    )
    modality: Literal["image", "video", "answer"] = "image"
    kind: Literal["pairwise", "pointwise", "multi"] | None = Field(
        None, description="default: pointwise for one candidate, multi when dimensions are given, else pairwise"
    )
    media: list[str] = Field(default_factory=list, description="for answer tasks: the media the question is about")
    media_kind: Literal["image", "video"] = "image"
    dimensions: list[str] = Field(default_factory=list)
    allow_tie: bool = False
    id: str | None = Field(None, max_length=200)
    return_trajectories: bool = Field(False, description="include the full trajectory records")


class RewardItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    media: str
    prompt: str | None = None


class RewardGroup(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str | None = Field(None, description="the group's prompt (or give one per item)")
    items: list[str | RewardItem] = Field(min_length=1)


class RewardsRequest(JudgeOptions):
    """One group (``prompt`` + ``items``), a flat batch cut into groups of ``group_size`` (with one prompt per
    group in ``prompts``), or ``groups``: a whole RL batch in one call."""

    prompt: str | None = Field(None, description="the group's prompt (or give one per item)")
    items: list[str | RewardItem] | None = Field(None, description="generated images/videos")
    groups: list[RewardGroup] | None = Field(None, description="several groups, each judged on its own")
    group_size: int | None = Field(None, ge=1, description="cut `items` into groups of this many")
    prompts: list[str] | None = Field(None, description="with group_size: one prompt per group")
    modality: Literal["image", "video"] = "image"
    mode: Literal["pointwise", "pairwise_winrate"] = "pointwise"
    dimensions: list[str] = Field(default_factory=list)
    normalize: bool = Field(False, description="pointwise: map the 1-10 score to [0, 1]")
    failure_value: float | None = Field(
        None, description="the reward of an item that could not be judged (null keeps it visible; Pref-GRPO uses 0.5)"
    )
    ties: Literal["allow", "forbid"] = Field(
        "allow", description="pairwise_winrate: may the judge call a pair a tie (half a win each)?"
    )


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat-completions body. mmreward options travel in ``mmreward`` (``extra_body`` in the client)."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    n: int = Field(1, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stream: bool = False
    seed: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    mmreward: dict[str, Any] | None = None
