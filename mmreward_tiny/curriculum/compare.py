"""Text-only comparison exercises for the tiny backbone (``view: compare``): what is seen against what was asked.

A judge that looks at each candidate writes what it sees, the prompt's objects, and whether the two agree ("In obs_2
(the crop of image_2) I see an orange square. The prompt asks for an orange cross. But there is no orange cross; there
is an unexpected orange square."). The call follows from the two lists before it alone; no picture is needed. The tiny
judge trained on distilled trajectories gets it wrong 39% of the time (``scripts/diagnose_judge.py``: "I see a yellow
triangle. But there is no yellow triangle" for "A yellow triangle"). A pretrained language model would bring this
from its pretraining; a randomly initialised 2-layer one sees only a few thousand such sentences in the
trajectories. These rows give it tens of thousands, at about 50 tokens each.

Each row shows a world prompt (``world.describe``) and what a picture shows, and asks for the judge's sentences:
``"I see <list>. The prompt asks for <list>. <checks> <match phrase | But <issues>.>"``, worded by the oracle's own
functions (``oracle.say_counts``, ``oracle.asks_for``, ``oracle.check_lists``, ``oracle.count_issues``,
``oracle.MATCH_PHRASES``), so the rows teach exactly the sentences the trajectories use.
What is seen is the prompt's objects (about 40% of rows) or the prompt's objects with one or two of the world's
defects (a colour, a shape or a count changed, an object missing or added), listed in a shuffled order as a
picture's objects are. Relations and quality problems need the picture; these rows leave them out.

Rows have the learning-to-see form (``mmreward_tiny.curriculum.questions``) with no images, so the same dataset, trainer
and evaluation read them.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from typing import Any

from data_pipelines.synthetic.oracle import MATCH_PHRASES, asks_for, check_lists, count_issues, say_counts
from data_pipelines.synthetic.world import (
    PALETTE,
    SHAPES,
    Description,
    allowed_combos,
    describe,
    sample_description,
    share_first_colour,
)
from mmreward_tiny.curriculum.lookup import write_text_rows

QUESTION = "What do you see, and does it match the prompt?"
EDITS = ("colour", "shape", "count", "missing", "extra")


def _edit(seen: Counter, rng: random.Random, combos: list[tuple[str, str]]) -> Counter:
    """``seen`` with one of the world's defects (or a perception slip of the same kind) applied."""
    out = Counter(seen)
    kind = rng.choice(EDITS)
    c, s = rng.choice(sorted(out))
    if kind in ("colour", "shape"):
        if kind == "colour":
            options = [(x, s) for x in PALETTE if x != c and (x, s) in combos]
        else:
            options = [(c, x) for x in SHAPES if x != s and (c, x) in combos]
        out[(c, s)] -= 1
        out[rng.choice(options)] += 1
    elif kind == "count":
        out[(c, s)] += 1 if out[(c, s)] == 1 or rng.random() < 0.5 else -1
    elif kind == "missing":
        del out[(c, s)]
    else:
        out[rng.choice(combos)] += 1
    return +out  # drop zero counts


def _prompt(rng: random.Random, combos: list[tuple[str, str]], n_objects: tuple[int, int]) -> Description:
    desc = sample_description(rng, combos, n_objects, relation_prob=0.0)
    if len(desc.groups) >= 2 and rng.random() < 0.5:  # as the world does half the time
        share_first_colour(desc, rng, combos)
    return desc


def _seen(want: dict, match: bool, rng: random.Random, combos: list[tuple[str, str]]) -> Counter:
    """What one picture shows: the prompt's objects, or with one or two edits, listed in a shuffled order (a picture
    lists its objects in the order they were found, not the prompt's)."""
    seen = Counter(want)
    if not match:
        for _ in range(rng.choice((1, 1, 1, 2))):
            seen = _edit(seen, rng, combos) or Counter({rng.choice(combos): 1})
    order = list(seen)
    rng.shuffle(order)
    return Counter({k: seen[k] for k in order})


def compare_example(rng: random.Random, rid: str, split: str, n_objects: tuple[int, int] = (1, 3)) -> dict[str, Any]:
    """One row: a prompt and what one or two crops show, answered with the judge's sentence about each crop.

    Two-crop rows are what a pairwise judge writes: one sentence per candidate, the second after the first, whose
    objects it must not confuse with the prompt's. Most often one candidate matches and the other has a defect, in
    either order, as in the world's pairs; otherwise each matches or not on its own."""
    combos = allowed_combos(False)
    desc = _prompt(rng, combos, n_objects)
    prompt = describe(desc, rng)
    want = {(c, s): n for c, s, n in desc.groups}
    if rng.random() < 0.5:
        matches = [rng.random() < 0.4]
    elif rng.random() < 0.7:
        matches = [True, False] if rng.random() < 0.5 else [False, True]
    else:
        matches = [rng.random() < 0.4, rng.random() < 0.4]
    shows, says, match = [], [], []
    for k, m in enumerate(matches, 1):
        seen = _seen(want, m, rng, combos)
        issues = count_issues(want, seen)  # an edit can undo another: the sentence says what is true
        view = f"obs_{k} (the crop of image_{k})"
        shows.append(f"{view} shows {say_counts(seen)}.")
        verdict = "But " + "; ".join(issues) + "." if issues else rng.choice(MATCH_PHRASES)
        checks = check_lists(Counter(want), seen)
        says.append(f"In {view} I see {say_counts(seen)}. {asks_for(desc)} {checks} {verdict}")
        match.append(not issues)
    return {
        "id": rid,
        "images": [],
        "question": "\n".join([f"Prompt: {prompt}", *shows, QUESTION]),
        "answer": " ".join(says),
        "match": match,
        "level": 0,
        "view": "compare",
        "split": split,
    }


def generate_compare(out: str | os.PathLike, n: int, seed: int = 0, n_val: int = 300) -> dict[str, Any]:
    """Write ``train.jsonl`` (``n`` rows) and ``val.jsonl`` (``n_val`` rows) under ``out``; returns a manifest with
    the share of crops that match their prompt per split."""
    manifest, rows = write_text_rows(out, "compare", compare_example, n, n_val, seed)
    calls = {split: [m for r in split_rows for m in r["match"]] for split, split_rows in rows.items()}
    manifest["match_share"] = {split: round(sum(c) / max(1, len(c)), 3) for split, c in calls.items()}
    return manifest


__all__ = ["QUESTION", "compare_example", "generate_compare"]
