"""Teacher-forced match calls: is the judge's comparison step right when everything before it is right?

``scripts/diagnose_judge.py`` scores what a judge writes when it runs free, so an error early in a turn (a wrong
list of objects) shows up again at every later step. This probe separates the comparison itself: it renders the
oracle's own trajectories (``crop_policy="each"``) exactly as SFT trains on them, runs the judge over each one in a single
forward pass, and at the first token of every match call ("That matches the prompt." or "But ...") asks which of
the two the judge prefers, given the oracle's correct lists, checks and restated prompt before it.
"""

from __future__ import annotations

import bisect
from typing import Any

import torch

from data_pipelines.synthetic.oracle import MATCH_PHRASES
from mmreward.trajectory import Trajectory
from mmreward_tiny.curriculum.diagnose import FINDING
from train.render import IGNORE, Example, Renderer


class ProbeError(ValueError):
    pass


def call_tokens(tokenizer) -> tuple[int, set[int]]:
    """The token id that opens a no-match call (" But") and the ids that open the match phrases."""

    def first(text: str) -> int:
        return tokenizer.encode(" " + text, add_special_tokens=False)[0]

    but = first("But")
    match = {first(p) for p in MATCH_PHRASES}
    if but in match:
        raise ProbeError("the tokenizer starts a match phrase and 'But' with the same token; the probe cannot tell")
    return but, match


def call_positions(example: Example, tokenizer) -> list[tuple[str, int]]:
    """(image name, index of the call's first token) for each finding in the trained (assistant) tokens."""
    ids = example.input_ids.tolist()
    trained = (example.labels != IGNORE).tolist()
    out: list[tuple[str, int]] = []
    i = 0
    while i < len(ids):  # one assistant span at a time: its text, and each token's first character in it
        if not trained[i]:
            i += 1
            continue
        j = i
        while j < len(ids) and trained[j]:
            j += 1
        pieces = [tokenizer.decode([t]) for t in ids[i:j]]
        starts, pos = [], 0
        for p in pieces:
            starts.append(pos)
            pos += len(p)
        text = "".join(pieces)
        for m in FINDING.finditer(text):
            at = m.start(4)  # the call's first character; its token may begin with the space before it
            k = bisect.bisect_right(starts, at) - 1  # the token that holds it
            if starts[k] < at and text[starts[k] : at].strip():
                raise ProbeError(f"{example.id}: the call at character {at} does not begin a token ({pieces[k]!r})")
            out.append((m.group(2), i + k))
        i = j
    return out


@torch.no_grad()
def probe_calls(model, renderer: Renderer, trajs: list[Trajectory], truth: list[dict[str, bool]]) -> dict[str, Any]:
    """Teacher-forced match calls of ``model`` on ``trajs`` (the oracle's, whose calls are right by construction).

    ``truth[i]`` maps each image name of ``trajs[i]`` to whether the oracle called it a match. At every call the
    judge's choice is the higher of its logit for " But" and its best logit for a match phrase's first token.
    Returns the share of calls it gets right overall and by the order the views were described in, and its
    "But" rate (what always saying "no match" would score is the share of no-match calls, ``but_share``)."""
    tok = renderer.tokenizer
    but, match = call_tokens(tok)
    match_ids = torch.tensor(sorted(match))
    n: dict[str, int] = {}

    def add(key: str, value: int = 1) -> None:
        n[key] = n.get(key, 0) + value

    for traj, calls in zip(trajs, truth):
        order = 0  # the views in the order the trajectory describes them, across its segments
        for ex in renderer.segments(traj):
            found = call_positions(ex, tok)
            if not found:
                continue
            inputs = {"input_ids": ex.input_ids[None], "mm_token_type_ids": ex.mm_token_type_ids[None]}
            if ex.pixel_values is not None:
                inputs.update(pixel_values=ex.pixel_values, image_grid_thw=ex.image_grid_thw)
            logits = model(**inputs).logits[0].float()
            for image, k in found:
                order += 1
                actual = int(ex.input_ids[k])
                is_match = calls[image]
                if actual != but and actual not in match:
                    raise ProbeError(f"{ex.id}: token {k} ({tok.decode([actual])!r}) opens no known call")
                if (actual != but) != is_match:
                    raise ProbeError(f"{ex.id}: {image}'s call in the text disagrees with the truth given")
                row = logits[k - 1]
                says_match = bool(row[match_ids].max() > row[but])
                for key in ("calls", f"view_{order}_calls"):
                    add(key)
                    add(key + "_right", says_match == is_match)
                add("says_but", not says_match)
                add("truth_but", not is_match)

    def rate(a: str, b: str) -> float | None:
        return round(n.get(a, 0) / n[b], 4) if n.get(b) else None

    return {
        "calls": n.get("calls", 0),
        "call_right": rate("calls_right", "calls"),
        "first_view": rate("view_1_calls_right", "view_1_calls"),
        "second_view": rate("view_2_calls_right", "view_2_calls"),
        "says_but": rate("says_but", "calls"),
        "but_share": rate("truth_but", "calls"),
    }


def oracle_calls(traj: Trajectory) -> dict[str, bool]:
    """Each described image's match call in an oracle trajectory: True for a match phrase, False for "But"."""
    out: dict[str, bool] = {}
    for m in traj.messages:
        if m["role"] == "assistant":
            for finding in FINDING.finditer(m["content"][0]["text"]):
                out[finding.group(2)] = not finding.group(4).startswith("But")
    return out


__all__ = ["ProbeError", "call_positions", "call_tokens", "oracle_calls", "probe_calls"]
