"""Is a judgment right? One place that compares a trajectory's verdict with a record's label.

Distillation keeps a teacher's trajectory only when this says so, rejection sampling accepts the model's own
the same way, and the GRPO accuracy reward and eval agree with it. Verdicts are in *displayed* positions;
they are mapped to candidates through the trajectory's presented order first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from data_pipelines.records import PreferenceRecord
from mmreward.judge import candidate_verdict
from mmreward.trajectory import Trajectory

SCORE_TOLERANCE = 1.0  # a pointwise score within this of the label counts as right


@dataclass
class Check:
    correct: bool
    reason: str  # "ok", or why not: "parse failure: ...", "wrong overall", "wrong dimension 'quality'", ...


def check_verdict(record: PreferenceRecord, traj: Trajectory, score_tolerance: float = SCORE_TOLERANCE) -> Check:
    """Compare ``traj``'s verdict with ``record``'s label (every labelled dimension for multi tasks)."""
    if traj.verdict is None:
        return Check(False, f"parse failure: {traj.parse_failure or traj.stop_reason}")
    v = candidate_verdict(traj)
    if record.task == "pointwise":
        if v.score is None:
            return Check(False, "no score")
        if abs(v.score - record.score) > score_tolerance:
            return Check(False, f"score {v.score:g} vs label {record.score:g}")
        return Check(True, "ok")
    has_overall = record.tie or record.preferred is not None
    if has_overall:
        want = None if record.tie else record.preferred
        if v.winner != want:
            return Check(False, "wrong overall")
    if record.task == "multi":
        for dim, want in record.dimension_labels.items():
            if dim not in v.dimensions:
                return Check(False, f"dimension {dim!r} missing")
            if v.dimensions[dim] != want:
                return Check(False, f"wrong dimension {dim!r}")
    return Check(True, "ok")


SCORE_RANGE = (1, 10)  # the pointwise answer form the prompt offers ("Score: <1-10>")


def chance_accuracy(record: PreferenceRecord, score_tolerance: float = SCORE_TOLERANCE) -> float:
    """Expected :func:`check_verdict` accuracy of a judge that always answers in the valid form but picks the
    verdict uniformly at random: 1/2 for a pair (1/3 when a tie may be said), the share of integer scores within
    the tolerance of the label for pointwise, the product over every checked answer for multi-dimensional items.
    It is the level a judge must beat before it can be said to see anything."""
    if record.task == "pointwise":
        lo, hi = SCORE_RANGE
        hits = sum(1 for k in range(lo, hi + 1) if abs(k - record.score) <= score_tolerance)
        return hits / (hi - lo + 1)
    options = 3 if record.allow_tie else 2
    checked = 1 if (record.tie or record.preferred is not None) else 0
    if record.task == "multi":
        checked += len(record.dimension_labels)
    return (1 / options) ** checked


def first_choices(verdicts: Iterable[dict | None]) -> list[bool]:
    """For each decided pairwise verdict (a winner, not a tie, not a score, not a parse failure): whether it names
    the candidate shown first. Their share is the position bias: about 0.5 for a judge that reads the content of
    randomly ordered pairs, near 0 or 1 for one that answers by position."""
    return [v["winner"] == 0 for v in verdicts if v and v["kind"] != "pointwise" and v["winner"] is not None]


def label_text(record: PreferenceRecord) -> str:
    """The label in words, in candidate terms (1-based), as people read it in reports and the viewer."""
    if record.task == "pointwise":
        return f"score {record.score:g}" if record.score is not None else "no score"
    parts = []
    if record.tie:
        parts.append("tie")
    elif record.preferred is not None:
        parts.append(f"candidate {record.preferred + 1} better")
    for dim, want in sorted(record.dimension_labels.items()):
        parts.append(f"{dim}: " + ("tie" if want is None else f"candidate {int(want) + 1}"))
    return "; ".join(parts) or "unlabelled"
