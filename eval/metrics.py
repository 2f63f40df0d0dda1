"""Official scoring rules of the public multimodal reward-model benchmarks, and strict variants beside them.

Each function reproduces one benchmark's official script as described in ``../shared/benchmarks/SCORING.md``
(same parser, same denominator, same tie rule, same grouping); where the official rule is order-dependent or
quirky it is implemented faithfully and a clean variant is returned beside it, labelled. "Strict" always means:
a parse failure is wrong and every item is in the denominator.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from data_pipelines.sources.multimodal_rewardbench import official_category as mmrb_category

# ----------------------------------------------------------------------------------------------------------------------
# VL-RewardBench (cal.py)

_VLRB_RE = re.compile(
    r"(?:Overall Judgment|Therefore)\s*.*\s*-*\s*Answer\s*(\d+)\s*is\s*(?:the\s*)?(?:slightly\s*)?better", re.I
)
VLRB_GROUPS = ("general", "hallucination", "reasoning")


def vlrb_parse(text: str) -> int | None:
    """cal.py's parser: remove newlines and '*', then the greedy regex; the displayed answer number or None."""
    m = _VLRB_RE.search(text.replace("\n", "").replace("*", ""))
    return int(m.group(1)) if m else None


def vlrb_label(answer: int | None, rejected_position: int) -> str:
    """agree / reject / doesntMatch for one run (positions are 1-based, as displayed)."""
    if answer is None:
        return "doesntMatch"
    return "reject" if answer == rejected_position else "agree"


def _majority(counts: Counter, total: int) -> str:
    """cal.py's item label: agree / reject / doesntMatch when more than half of its runs say so, else 'other'."""
    for label in ("agree", "reject", "doesntMatch"):
        if counts[label] > total / 2:
            return label
    return "other"


def _accuracy(c: Counter) -> float | None:
    den = c["agree"] + c["reject"]
    return c["agree"] / den if den else None


def vlrb_score(items: Sequence[dict[str, Any]], k: int | None = None) -> dict[str, Any]:
    """``items``: ``{"key", "group", "labels": [agree|reject|doesntMatch per run]}`` and optionally ``"source"``
    (vlfeedback, povid, rlaif-v, ...). Official: per item the majority label (count > half of its runs, else
    'other'); accuracy = agree / (agree + reject), doesntMatch and other dropped, per group and per source; overall =
    pooled; macro = mean of the three groups; ``rates``: each label's share of all items. Strict: agree / all items,
    overall and as a macro over the groups."""
    counts: dict[str, Counter] = defaultdict(Counter)
    sources: dict[str, Counter] = defaultdict(Counter)
    strict: dict[str, list[bool]] = defaultdict(list)
    for it in items:
        labels = list(it["labels"])[: k or None]
        final = _majority(Counter(labels), len(labels)) if labels else "other"
        counts[it["group"]][final] += 1
        if it.get("source"):
            sources[it["source"]][final] += 1
        strict[it["group"]].append(final == "agree")
    groups = {}
    for g in VLRB_GROUPS:
        c = counts.get(g, Counter())
        groups[g] = {
            "official": _accuracy(c),
            "strict": sum(strict[g]) / len(strict[g]) if strict[g] else None,
            "n": sum(c.values()),
            "dropped": c["doesntMatch"] + c["other"],
        }
    pooled = sum((counts[g] for g in VLRB_GROUPS), Counter())
    present = [groups[g]["official"] for g in VLRB_GROUPS if groups[g]["official"] is not None]
    strict_present = [groups[g]["strict"] for g in VLRB_GROUPS if groups[g]["strict"] is not None]
    all_strict = [x for g in VLRB_GROUPS for x in strict[g]]
    n = sum(pooled.values())
    return {
        "official": {
            "overall": _accuracy(pooled),
            "macro": sum(present) / len(present) if present else None,
        },
        "strict": {
            "overall": sum(all_strict) / len(all_strict) if all_strict else None,
            "macro": sum(strict_present) / len(strict_present) if strict_present else None,
        },
        "rates": {label: pooled[label] / n if n else None for label in ("agree", "reject", "doesntMatch", "other")},
        "sources": {src: {"official": _accuracy(c), "n": sum(c.values())} for src, c in sorted(sources.items())},
        "groups": groups,
    }


def _cal_shuffle(data: list, rng: random.Random) -> None:
    """cal.py's shuffle, kept as it is (each position swapped with a uniformly drawn one, so not uniform)."""
    for i in range(len(data)):
        j = rng.randint(0, len(data) - 1)
        data[i], data[j] = data[j], data[i]


def vlrb_k_table(runs: Sequence[dict[str, Any]], ks: Sequence[int] = (1, 3, 5, 7, 9), seed: int = 1234):
    """cal.py's table over the number of runs per item. ``runs``: one per judgment, ``{"key", "source", "group",
    "label"}``, in the results file's order. As its ``main``: the generator is seeded once; for each k in turn the
    runs are shuffled (the stream goes on from the last k) and each item keeps its first k runs in that order; items
    are labelled by majority and scored as :func:`vlrb_score`."""
    rng = random.Random(seed)
    table = {}
    for k in ks:
        data = list(runs)
        _cal_shuffle(data, rng)
        kept: dict[str, dict[str, Any]] = {}
        for run in data:
            item = kept.setdefault(run["key"], {"key": run["key"], "group": run["group"], "source": run["source"],
                                                "labels": []})  # fmt: skip
            if len(item["labels"]) < k:
                item["labels"].append(run["label"])
        table[f"k={k}"] = vlrb_score(list(kept.values()))
    return table


# ----------------------------------------------------------------------------------------------------------------------
# Multimodal RewardBench (2_get_accuracy.py)


def mmrb_extract(text: str, rng: random.Random) -> tuple[str, bool]:
    """'[[A]]' then '[[B]]' as substrings; otherwise a coin from the shared seeded generator (a failure)."""
    if "[[A]]" in text:
        return "A", True
    if "[[B]]" in text:
        return "B", True
    return ("A" if rng.random() < 0.5 else "B"), False


def mmrb_score(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``rows`` in file order: ``{"id", "label": A|B, "output", "category"}``. The official coin for unparseable
    outputs is ``random.seed(123)``, drawn only by failures, in file order."""
    rng = random.Random(123)
    per: dict[str, list[bool]] = defaultdict(list)
    strict: list[bool] = []
    for r in rows:
        pred, parsed = mmrb_extract(r["output"], rng)
        ok = pred == r["label"]
        per["all"].append(ok)
        per[mmrb_category(r.get("category", ""), r["id"])].append(ok)
        strict.append(ok and parsed)
    return {
        "official": {k: sum(v) / len(v) for k, v in per.items()},
        "strict": {"all": sum(strict) / len(strict) if strict else None},
        "n": {k: len(v) for k, v in per.items()},
    }


# ----------------------------------------------------------------------------------------------------------------------
# GenAI-Bench (inference.py parse_response, show_results.py)

_GENAI_RE = re.compile(r"\[\[.*\]\]")
GENAI_CORRECT = {
    "leftvote": ("[[A>B]]", "[[A>>B]]"),
    "rightvote": ("[[B>A]]", "[[B>>A]]"),
    "tievote": ("[[A=B]]", "[[A=B=Good]]"),
    "bothbad_vote": ("[[A=B]]", "[[A=B=Bad]]"),
}


def genai_parse(response: str) -> str | None:
    m = _GENAI_RE.search(response)  # greedy, and '.' does not cross a newline
    return m.group(0) if m else None


def genai_correct(response: str, vote: str) -> bool:
    return genai_parse(response) in GENAI_CORRECT[vote]


def genai_score(rows_by_task: dict[str, Sequence[dict[str, Any]]]) -> dict[str, Any]:
    """``{task: [{"response", "human_vote"}]}`` -> 4-way accuracy per task and their mean. The files'
    precomputed ``correct`` fields are ignored. Also the 2-way "w/o tie" accuracy (left/right votes only)."""
    tasks = {}
    for task, rows in rows_by_task.items():
        oks = [genai_correct(r["response"], r["human_vote"]) for r in rows]
        two = [
            genai_correct(r["response"], r["human_vote"]) for r in rows if r["human_vote"] in ("leftvote", "rightvote")
        ]
        tasks[task] = {
            "official_4way": sum(oks) / len(oks),
            "wo_tie_2way": sum(two) / len(two) if two else None,
            "n": len(oks),
            "parse_failures": sum(genai_parse(r["response"]) is None for r in rows),
        }
    avg = sum(t["official_4way"] for t in tasks.values()) / len(tasks) if tasks else None
    return {"official": {"average": avg, **{k: v["official_4way"] for k, v in tasks.items()}}, "tasks": tasks}


# ----------------------------------------------------------------------------------------------------------------------
# VideoGen-RewardBench (calc_accuracy.py): w/o ties and the tie-calibrated w/ ties


def _stats(h: Sequence[int], m: Sequence[float], eps: Sequence[float]) -> Counter:
    c = Counter()
    for hi, mi, e in zip(h, m, eps):
        c[_cls(hi, mi, e)] += 1
    return c


def _cls(h: int, m: float, eps: float) -> str:
    if h == 0 and abs(m) <= eps:
        return "Thm"
    if h == 0:
        return "Th"
    if abs(m) <= eps:
        return "Tm"
    return "C" if h * m > 0 else "D"


def videogen_wo_ties(h: Sequence[int], m: Sequence[float]) -> float:
    """C / (C + D) over pairs where the human did not tie (eps = -1, so m == 0 counts as discordant)."""
    c = _stats(h, m, [-1.0] * len(h))
    return c["C"] / (c["C"] + c["D"] + c["Tm"]) if c["C"] + c["D"] + c["Tm"] else float("nan")


def videogen_w_ties_official(h: Sequence[int], m: Sequence[float]) -> float:
    """The official tie-calibrated loop: from eps = -1, walk pairs in stable order of |m|; move each pair from its old
    class (under eps = -1) to its class under eps = |m_i|; acc = (C + Thm) / N after each move; the max. The eps = -1
    state is never a candidate. With repeated |m| this scores partial states (order-dependent)."""
    n = len(h)
    cur = _stats(h, m, [-1.0] * n)
    best = float("-inf")
    for i in sorted(range(n), key=lambda i: abs(m[i])):
        cur[_cls(h[i], m[i], -1.0)] -= 1
        cur[_cls(h[i], m[i], abs(m[i]))] += 1
        best = max(best, (cur["C"] + cur["Thm"]) / n)
    return best


def videogen_w_ties_threshold(h: Sequence[int], m: Sequence[float]) -> float:
    """The clean variant: max over eps in {|m_i|} of 3-class accuracy with "tie" predicted when |m| <= eps."""
    n = len(h)
    best = float("-inf")
    for eps in sorted({abs(x) for x in m}):
        c = _stats(h, m, [eps] * n)
        best = max(best, (c["C"] + c["Thm"]) / n)
    return best


def videogen_generative(labels: Sequence[str], outputs: Sequence[str]) -> dict[str, float]:
    """UnifiedReward-Think's convention: pred A if "Video 1 is better" appears, B if "Video 2 is better", else
    'same' (a parse failure counts as a tie). w/ tie = correct / N; w/o tie = (correct - correct ties) / (N - ties)."""
    correct = correct_tie = ties = 0
    for label, out in zip(labels, outputs):
        pred = "A" if "Video 1 is better" in out else "B" if "Video 2 is better" in out else "same"
        ok = label in pred
        correct += ok
        if label == "same":
            ties += 1
            correct_tie += ok
    n = len(labels)
    return {"w_tie": correct / n, "wo_tie": (correct - correct_tie) / (n - ties) if n > ties else float("nan")}


# ----------------------------------------------------------------------------------------------------------------------
# MJ-Bench (rm_utils.get_pred, personal/test.py, calc_score)


def mjbench_pred(s0: float, s1: float, threshold: float = 0.0) -> str:
    return "tie" if abs(s1 - s0) <= threshold else ("0" if s0 > s1 else "1")


def mjbench_score(preds: Sequence[str], labels: Sequence[int]) -> dict[str, float]:
    """w/ tie (strict: model ties are wrong, all pairs), w/o tie (model ties removed), tie-aware (0.5 for a tie)."""
    oks = [p == str(lab) for p, lab in zip(preds, labels)]
    kept = [ok for p, ok in zip(preds, oks) if p != "tie"]
    aware = [1.0 if p == str(lab) else 0.5 if p == "tie" else 0.0 for p, lab in zip(preds, labels)]
    return {
        "w_tie": sum(oks) / len(oks),
        "wo_tie": sum(kept) / len(kept) if kept else float("nan"),
        "tie_aware": sum(aware) / len(aware),
    }


def mjbench_agreement(preds: Sequence[str], labels: Sequence[int | None]) -> dict[str, Any]:
    """MJ-Bench's agreement statistics (``personal/test.py``): preferences as 0 / 1, anything else (a tie, a failure)
    0.5; over the pairs where the human preferred one image, the Pearson correlation of the two, then with the
    judge's 0.5 counted as 0, Cohen's kappa and the mean squared error. ``None`` where a statistic is undefined
    (a constant side)."""
    import numpy as np  # noqa: PLC0415

    judge = [1.0 if p == "1" else 0.0 if p == "0" else 0.5 for p, lab in zip(preds, labels) if lab in (0, 1)]
    human = [float(lab) for lab in labels if lab in (0, 1)]
    out: dict[str, Any] = {"n": len(human), "pearson": None, "cohen_kappa": None, "mse": None}
    if not human:
        return out
    j, h = np.array(judge), np.array(human)
    if j.std() > 0 and h.std() > 0:
        out["pearson"] = float(np.corrcoef(j, h)[0, 1])
    j = np.where(j == 0.5, 0.0, j)
    agree = float((j == h).mean())
    chance = float(j.mean() * h.mean() + (1 - j.mean()) * (1 - h.mean()))
    out["cohen_kappa"] = (agree - chance) / (1 - chance) if chance < 1 else None
    out["mse"] = float(((j - h) ** 2).mean())
    return out


# ----------------------------------------------------------------------------------------------------------------------
# MJ-Bench-Video (overall preference)


def mjvideo_score(preds: Sequence[int | None], labels: Sequence[int]) -> dict[str, float]:
    """On decisive pairs (labels 0/1): strict (an undecided prediction is wrong) and tie-aware (0.5 for it)."""
    strict = [p == lab for p, lab in zip(preds, labels)]
    aware = [1.0 if p == lab else 0.5 if p is None else 0.0 for p, lab in zip(preds, labels)]
    return {"strict": sum(strict) / len(strict), "tie_aware": sum(aware) / len(aware)}


# ----------------------------------------------------------------------------------------------------------------------
# MM-RLHF-RewardBench (cal_performance_mmreweard_bench.py)


def mmrlhf_score(pairs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``pairs``: ``{"group", "category", "rewards": [chosen, rejected]}``. Correct iff chosen > rejected (equal is
    wrong). Acc = correct / pairs; Acc+ = groups whose every pair is correct / groups (per category by its groups)."""
    acc: dict[str, list[bool]] = defaultdict(list)
    groups: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for p in pairs:
        ok = p["rewards"][0] > p["rewards"][1]
        for key in ("all", p["category"]):
            acc[key].append(ok)
            groups[key][p["group"]].append(ok)
    return {
        "acc": {k: sum(v) / len(v) for k, v in acc.items()},
        "acc_plus": {k: sum(all(x) for x in g.values()) / len(g) for k, g in groups.items()},
    }


# ----------------------------------------------------------------------------------------------------------------------
# Generic statistics


def bootstrap_ci(values: Sequence[float], n: int = 1000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean."""
    if not values:
        return (float("nan"), float("nan"))
    rng = random.Random(seed)
    k = len(values)
    means = sorted(sum(values[rng.randrange(k)] for _ in range(k)) / k for _ in range(n))
    return (means[int(alpha / 2 * n)], means[min(n - 1, int((1 - alpha / 2) * n))])


def position_stats(first_is_better: Sequence[bool], agree_pairs: Sequence[bool]) -> dict[str, Any]:
    """Position bias (share of verdicts for the first shown candidate) and consistency (both orders agree), each
    with its 95% bootstrap interval."""
    first = [float(x) for x in first_is_better]
    agree = [float(x) for x in agree_pairs]
    return {
        "first_is_better": sum(first) / len(first) if first else None,
        "first_is_better_ci95": bootstrap_ci(first) if first else None,
        "consistency": sum(agree) / len(agree) if agree else None,
        "consistency_ci95": bootstrap_ci(agree) if agree else None,
        "n_decided": len(first),
        "n_order_pairs": len(agree),
    }


def calibration(p_first: Sequence[float], first_wins: Sequence[bool], bins: int = 5) -> dict[str, Any]:
    """How far a continuous pairwise reward can be trusted as a probability.

    ``p_first[i]`` is the judge's P(candidate 0 is better) and ``first_wins[i]`` the label. The judge's pick is the
    likelier candidate and its confidence max(p, 1 - p), in [0.5, 1]. Returns the reliability table (equal-width
    confidence bins: mean confidence against accuracy), the expected calibration error (bin-weighted mean gap), the
    Brier score, and accuracy against coverage when the judge abstains below each confidence threshold."""
    conf = [max(p, 1 - p) for p in p_first]
    right = [float((p >= 0.5) == bool(w)) for p, w in zip(p_first, first_wins)]
    n = len(conf)
    table = []
    for b in range(bins):
        lo, hi = 0.5 + 0.5 * b / bins, 0.5 + 0.5 * (b + 1) / bins
        idx = [i for i, c in enumerate(conf) if lo <= c < hi or (b == bins - 1 and c == hi)]
        if idx:
            table.append(
                {
                    "bin": [lo, hi],
                    "n": len(idx),
                    "confidence": sum(conf[i] for i in idx) / len(idx),
                    "accuracy": sum(right[i] for i in idx) / len(idx),
                }
            )
    ece = sum(t["n"] / n * abs(t["accuracy"] - t["confidence"]) for t in table) if n else None
    curve = []
    for t in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95):
        kept = [r for c, r in zip(conf, right) if c >= t]
        curve.append(
            {
                "threshold": t,
                "coverage": len(kept) / n if n else 0.0,
                "accuracy": sum(kept) / len(kept) if kept else None,
            }
        )
    return {
        "n": n,
        "accuracy": sum(right) / n if n else None,
        "ece": ece,
        "brier": sum((p - float(w)) ** 2 for p, w in zip(p_first, first_wins)) / n if n else None,
        "reliability": table,
        "abstention": curve,
    }


def rank_correlations(pred: Sequence[float], human: Sequence[float]) -> dict[str, Any]:
    """Spearman and Kendall (tau-b) correlations of a judge's continuous reward with human scores."""
    from scipy import stats  # noqa: PLC0415

    if len(pred) < 3 or len(set(pred)) < 2 or len(set(human)) < 2:
        return {"n": len(pred), "spearman": None, "kendall": None}
    return {
        "n": len(pred),
        "spearman": float(stats.spearmanr(pred, human).statistic),
        "kendall": float(stats.kendalltau(pred, human).statistic),
    }
