"""``mmreward eval score``: metrics for a predictions file, official and strict, with a Markdown report and plots.

Our predictions (``eval run``) are scored two ways, labelled: *ours* (the shared verdict parser; strict: a parse
failure is wrong and every item counts) and *official* (each benchmark's rule from :mod:`eval.metrics`, applied
to the raw output text where the official rule parses text, or to our verdict mapped into the benchmark's terms).
The benchmarks' own prediction files are also accepted: GenAI-Bench ``*_predictions.jsonl`` (``response`` and
``human_vote``; their precomputed ``correct`` is ignored) and Multimodal RewardBench's (``Label`` and ``output``).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from data_pipelines.records import PreferenceRecord
from eval import metrics as M
from eval.suites import SUITES, Suite
from mmreward.errors import InputError
from mmreward.runs import atomic_write_text


def _mean(xs: list) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _winner_candidate(row: dict[str, Any], dim: str | None = None) -> int | None | str:
    """The candidate index the verdict prefers, None for a tie, "fail" when there is no verdict."""
    v = row.get("verdict")
    if not v:
        return "fail"
    w = v["winner"] if dim is None else (v.get("dimensions") or {}).get(dim, "fail")
    if w == "fail":
        return "fail"
    return None if w is None else row["order"][w]


def generic_metrics(rows: list[dict[str, Any]], records: dict[str, PreferenceRecord]) -> dict[str, Any]:
    """Accuracy (ours, strict), per category, macro, parse failures, tool use, position bias and consistency."""
    by_cat: dict[str, list[float]] = defaultdict(list)
    correct = [float(r["correct"]) for r in rows]
    for r in rows:
        by_cat[records[r["record_id"]].category or "-"].append(float(r["correct"]))
    with_tools = [float(r["correct"]) for r in rows if r["tool_calls"]]
    without = [float(r["correct"]) for r in rows if not r["tool_calls"]]
    first = [
        r["verdict"]["winner"] == 0
        for r in rows
        if r.get("verdict") and r["verdict"].get("winner") is not None and records[r["record_id"]].task != "pointwise"
    ]
    pairs: dict[tuple, dict] = defaultdict(dict)
    for r in rows:
        if records[r["record_id"]].task != "pointwise":
            pairs[(r["record_id"], r["vote"])][tuple(r["order"])] = _winner_candidate(r)
    agree = [len(set(p.values())) == 1 for p in pairs.values() if len(p) == 2 and "fail" not in p.values()]
    cats = {k: {"accuracy": _mean(v), "n": len(v), "ci95": M.bootstrap_ci(v)} for k, v in sorted(by_cat.items())}
    return {
        "n": len(rows),
        "accuracy": _mean(correct),
        "ci95": M.bootstrap_ci(correct),
        "macro": _mean([c["accuracy"] for c in cats.values()]),
        "by_category": cats,
        "parse_failure_rate": _mean([float(r["verdict"] is None) for r in rows]),
        "strict_format_rate": _mean([float(r.get("format_ok", False)) for r in rows]),
        "tool_call_rate": _mean([float(r["tool_calls"] > 0) for r in rows]),
        "accuracy_with_tools": _mean(with_tools),
        "accuracy_without_tools": _mean(without),
        "n_with_tools": len(with_tools),
        **M.position_stats(first, agree),
        "mean_latency_s": _mean([r["latency_s"] for r in rows]),
        "mean_completion_tokens": _mean([r["completion_tokens"] for r in rows]),
    }


def official_metrics(suite: Suite, rows: list[dict[str, Any]], records: dict[str, PreferenceRecord]) -> dict[str, Any]:
    s = suite.scorer
    if s == "vlrb":
        items: dict[str, dict] = {}
        ours: dict[str, dict] = {}
        runs = []
        place = {rid: i for i, rid in enumerate(records)}
        # In the benchmark file's order, as cal.py reads its results file, so its seeded shuffle sees the same list.
        for r in sorted(rows, key=lambda r: (place[r["record_id"]], r.get("vote", 0), r.get("key", ""))):
            rec = records[r["record_id"]]
            rejected_pos = r["order"].index(1 - rec.preferred) + 1
            item = {"key": rec.id, "group": rec.category, "source": rec.subset}
            label = M.vlrb_label(M.vlrb_parse(r["raw"]), rejected_pos)
            items.setdefault(rec.id, {**item, "labels": []})["labels"].append(label)
            runs.append({**item, "label": label})
            w = r["verdict"]["winner"] + 1 if r.get("verdict") and r["verdict"]["winner"] is not None else None
            ours.setdefault(rec.id, {**item, "labels": []})["labels"].append(M.vlrb_label(w, rejected_pos))
        votes = max(len(it["labels"]) for it in items.values())
        return {
            "official_parser": M.vlrb_score(list(items.values())),
            "official_rule_our_parser": M.vlrb_score(list(ours.values())),
            # cal.py's table over k runs per item, where the run has that many (eval run --votes K).
            "official_k_runs": M.vlrb_k_table(runs, ks=[k for k in (1, 3, 5, 7, 9) if k <= votes]),
        }
    if s == "mmrb":
        raw, mapped = [], []
        # The official coin for an unparseable output is drawn in the benchmark file's order, so rows are taken in
        # that order (``records`` is), whatever order shards or resumes wrote them in.
        place = {rid: i for i, rid in enumerate(records)}
        for r in sorted(rows, key=lambda r: (place[r["record_id"]], r.get("vote", 0), r.get("key", ""))):
            rec = records[r["record_id"]]
            label = "A" if r["order"][0] == rec.preferred else "B"
            raw.append({"id": rec.id, "label": label, "output": r["raw"], "category": rec.subset})
            w = r["verdict"]["winner"] if r.get("verdict") else None
            mapped.append(
                {"id": rec.id, "label": label, "output": {0: "[[A]]", 1: "[[B]]"}.get(w, ""), "category": rec.subset}
            )
        return {"official_parser": M.mmrb_score(raw), "official_rule_our_parser": M.mmrb_score(mapped)}
    if s == "genai":
        # The official number is the official parser on the judge's raw text (a judge prompted the benchmark's way
        # writes "[[A>B]]" itself, with A the left candidate); our parse mapped onto that form stands beside it.
        by_task: dict[str, list] = defaultdict(list)
        raw_by_task: dict[str, list] = defaultdict(list)
        for r in rows:
            rec = records[r["record_id"]]
            vote = rec.metadata["vote_type"]
            w = _winner_candidate(r)
            # Our verdict in the benchmark's terms: A is the left candidate (0), whatever order it was shown in.
            response = {0: "[[A>B]]", 1: "[[B>A]]", None: "[[A=B]]"}.get(w, "")
            by_task[rec.category].append({"response": response, "human_vote": vote})
            raw_by_task[rec.category].append({"response": r.get("raw") or "", "human_vote": vote})
        return {"official_parser": M.genai_score(raw_by_task), "official_rule_our_parser": M.genai_score(by_task)}
    if s == "mjbench":
        preds, labels, subsets = [], [], []
        for r in rows:
            rec = records[r["record_id"]]
            if rec.tie:
                continue
            w = _winner_candidate(r)
            preds.append("tie" if w in (None, "fail") else str(w))
            labels.append(rec.preferred)
            subsets.append(rec.category)
        return {"official_rule_our_parser": _mjbench_numbers(preds, labels, subsets) if preds else None}
    if s == "mjvideo":
        preds, labels = [], []
        for r in rows:
            rec = records[r["record_id"]]
            if rec.preferred is None:
                continue  # "Same" and "Hard to judge" are skipped by the official overall eval
            w = _winner_candidate(r)
            preds.append(None if w == "fail" else w)
            labels.append(rec.preferred)
        return {"official_rule_our_parser": M.mjvideo_score(preds, labels) if preds else None}
    if s == "videogen":
        out = {}
        for dim in ("VQ", "MQ", "TA", "Overall"):
            h, m = [], []
            for r in rows:
                rec = records[r["record_id"]]
                lab = (
                    rec.dimension_labels.get(dim)
                    if dim != "Overall"
                    else (rec.preferred if (rec.preferred is not None or rec.tie) else "absent")
                )
                if lab == "absent" or (dim != "Overall" and dim not in rec.dimension_labels):
                    continue
                w = _winner_candidate(r, None if dim == "Overall" else dim)
                h.append(0 if lab is None else (1 if lab == 0 else -1))
                m.append(0.0 if w in (None, "fail") else (1.0 if w == 0 else -1.0))
            if h:
                out[dim] = {
                    "wo_ties": M.videogen_wo_ties(h, m),
                    "w_ties_official_loop": M.videogen_w_ties_official(h, m),
                    "w_ties_threshold": M.videogen_w_ties_threshold(h, m),
                    "n": len(h),
                }
        # UnifiedReward-Think's generative convention on the judge's raw text: "Video 1/2 is better" names a
        # displayed position, so the label is the displayed one; anything else is a tie.
        labels, outputs = [], []
        for r in rows:
            rec = records[r["record_id"]]
            if rec.preferred is None and not rec.tie:
                continue
            labels.append("same" if rec.tie else "A" if r["order"][0] == rec.preferred else "B")
            outputs.append(r.get("raw") or "")
        generative = M.videogen_generative(labels, outputs) if labels else None
        return {"official_rule_our_parser": out, "unifiedreward_generative": generative}
    if s == "mmrlhf":
        pairs = []
        for r in rows:
            rec = records[r["record_id"]]
            w = _winner_candidate(r)
            rewards = [1.0, 0.0] if w == 0 else [0.0, 1.0] if w == 1 else [0.0, 0.0]
            pairs.append({"group": rec.metadata["group"], "category": rec.category, "rewards": rewards})
        return {"official_rule_our_parser": M.mmrlhf_score(pairs)}
    return {}


def pair_rows(rows: list[dict[str, Any]], records: dict[str, PreferenceRecord]) -> list[dict[str, Any]]:
    """Scalar-judge rows (one score per candidate) turned into pairwise rows: the higher score wins, equal
    scores are a tie, a missing score is a failure. ``scores`` keeps both values for threshold rules."""
    by: dict[tuple, dict[int, dict]] = defaultdict(dict)
    for r in rows:
        if "candidate" in r:
            by[(r["record_id"], r["vote"])][r["candidate"]] = r
    out = []
    for (rid, vote), cands in by.items():
        if len(cands) != 2:
            continue
        s0, s1 = cands[0].get("score"), cands[1].get("score")
        missing = s0 is None or s1 is None
        winner = None if missing or s0 == s1 else (0 if s0 > s1 else 1)
        rec = records[rid]
        ok = not missing and ((winner is None and rec.tie) or (winner is not None and winner == rec.preferred))
        out.append(
            {
                "key": f"{rid}|v{vote}|pair",
                "record_id": rid,
                "vote": vote,
                "order": [0, 1],
                "raw": "",
                "verdict": None if missing else {"winner": winner, "dimensions": {}},
                "scores": [s0, s1],
                "format_ok": cands[0]["format_ok"] and cands[1]["format_ok"],
                "tool_calls": cands[0]["tool_calls"] + cands[1]["tool_calls"],
                "latency_s": cands[0]["latency_s"] + cands[1]["latency_s"],
                "completion_tokens": cands[0]["completion_tokens"] + cands[1]["completion_tokens"],
                "correct": ok,
            }
        )
    return out


def _mjbench_numbers(preds: list[str], labels: list[int], subsets: list[str]) -> dict[str, Any]:
    """MJ-Bench's accuracies overall and per subset, and its agreement statistics (Pearson, kappa, MSE)."""
    by: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
    for p, lab, sub in zip(preds, labels, subsets):
        by[sub][0].append(p)
        by[sub][1].append(lab)
    return {
        **M.mjbench_score(preds, labels),
        "agreement": M.mjbench_agreement(preds, labels),
        "subsets": {k: M.mjbench_score(p, lab) for k, (p, lab) in sorted(by.items())} if len(by) > 1 else {},
    }


def scalar_official(
    suite: Suite, pairs: list[dict[str, Any]], records: dict[str, PreferenceRecord], threshold: float = 0.0
) -> dict:
    """Pair accuracy from score differences under each benchmark's own threshold rules. A pair missing a score (the
    judge gave none for a candidate) counts as a failure, never drops out: as no preference under MJ-Bench's rule
    (wrong with and without ties, 0 tie-aware), undecided under MJ-Video's (wrong strictly, 0.5 tie-aware), as a
    tie under VideoGen's (its convention for a failed judgment),
    as equal rewards under MM-RLHF's (wrong). ``missing_scores`` says how many there were."""
    if suite.scorer not in ("mjbench", "mjvideo", "videogen", "mmrlhf"):
        return {}
    missing = sum(None in p["scores"] for p in pairs)
    out = {"missing_scores": missing, "pairs": len(pairs)}
    if suite.scorer == "mjbench":
        kept = [p for p in pairs if not records[p["record_id"]].tie]
        preds = [M.mjbench_pred(*p["scores"], threshold) if None not in p["scores"] else "failed" for p in kept]
        labels = [records[p["record_id"]].preferred for p in kept]
        subsets = [records[p["record_id"]].category for p in kept]
        numbers = _mjbench_numbers(preds, labels, subsets) if kept else None
        # The key names the threshold, as the benchmark's result files do (nsfw0.0.json).
        return {**out, f"mjbench_threshold_{threshold:g}": numbers}
    if suite.scorer == "mjvideo":
        # MJ-Video's overall preference on its decisive pairs: the higher score wins; equal or missing is undecided.
        preds, labels = [], []
        for p in pairs:
            rec = records[p["record_id"]]
            if rec.preferred is None:
                continue
            s0, s1 = p["scores"]
            preds.append(None if None in (s0, s1) or s0 == s1 else (0 if s0 > s1 else 1))
            labels.append(rec.preferred)
        return {**out, "mjvideo": M.mjvideo_score(preds, labels)} if preds else {}
    if suite.scorer == "videogen":
        h, m = [], []
        for p in pairs:
            rec = records[p["record_id"]]
            if rec.preferred is None and not rec.tie:
                continue
            h.append(0 if rec.tie else (1 if rec.preferred == 0 else -1))
            m.append(p["scores"][0] - p["scores"][1] if None not in p["scores"] else 0.0)
        if not h:
            return {}
        return {
            **out,
            "Overall": {
                "wo_ties": M.videogen_wo_ties(h, m),
                "w_ties_official_loop": M.videogen_w_ties_official(h, m),
                "w_ties_threshold": M.videogen_w_ties_threshold(h, m),
                "n": len(h),
            },
        }
    if suite.scorer == "mmrlhf":

        def rewards(p: dict[str, Any]) -> list[float]:
            if None in p["scores"]:
                return [0.0, 0.0]  # equal rewards: wrong under the official rule
            return p["scores"] if records[p["record_id"]].preferred == 0 else p["scores"][::-1]

        return {
            **out,
            "mmrlhf": M.mmrlhf_score(
                [
                    {
                        "group": records[p["record_id"]].metadata["group"],
                        "category": records[p["record_id"]].category,
                        "rewards": rewards(p),
                    }
                    for p in pairs
                ]
            ),
        }
    return {}


def human_scores(record: PreferenceRecord) -> list[float] | None:
    """Per-candidate human scores where a suite has them: ``metadata["human_scores"]``, or MJ-Bench-Video's
    per-aspect overall scores (summed)."""
    m = record.metadata if isinstance(record.metadata, dict) else {}
    if isinstance(m.get("human_scores"), list):
        return [float(x) for x in m["human_scores"]]
    per = [m.get(f"video_{i}_overall_score") for i in range(len(record.candidates))]
    if per and all(isinstance(d, dict) and d for d in per):
        try:
            return [float(sum(float(v) for v in d.values())) for d in per]
        except (TypeError, ValueError):
            return None
    return None


def calibration_metrics(rows: list[dict[str, Any]], records: dict[str, PreferenceRecord]) -> dict[str, Any] | None:
    """For rows with a continuous reward (``eval run --reward``): the pairwise reward's calibration, and its rank
    correlation with human scores where the suite has them (pairs: P(better) against the score difference; scalar
    judges: the expected score against each candidate's human score)."""
    probs, wins, pred, human = [], [], [], []
    for r in rows:
        if r.get("reward") is None:
            continue
        rec = records[r["record_id"]]
        h = human_scores(rec)
        if "candidate" in r:
            if h is not None:
                pred.append(float(r["reward"]))
                human.append(h[r["candidate"]])
            continue
        if rec.task == "pointwise":
            continue
        if rec.preferred is not None and not rec.tie:
            probs.append(float(r["reward"]))
            wins.append(rec.preferred == 0)
        if h is not None and len(h) == 2:
            pred.append(float(r["reward"]) - 0.5)
            human.append(h[0] - h[1])
    out: dict[str, Any] = {}
    if probs:
        out["pairwise"] = M.calibration(probs, wins)
    if pred:
        out["human_correlation"] = M.rank_correlations(pred, human)
    return out or None


def score_predictions(
    suite: Suite, rows: list[dict[str, Any]], records: list[PreferenceRecord], threshold: float = 0.0
) -> dict[str, Any]:
    """Ours and the official numbers of a suite's predictions. ``threshold``: for a scalar judge under MJ-Bench's
    rule, a score difference at or below it is a tie."""
    table = {r.id: r for r in records}
    rows = [r for r in rows if r["record_id"] in table]
    if not rows:
        raise ValueError("no prediction matches a record of this suite; wrong --suite or --predictions?")
    if any("candidate" in r for r in rows):
        pairs = pair_rows([r for r in rows if "candidate" in r], table)
        out = {
            "suite": suite.name,
            "mode": "scalar (pointwise scores per candidate)",
            "ours": generic_metrics(pairs, table),
            "official": scalar_official(suite, pairs, table, threshold),
        }
    else:
        out = {
            "suite": suite.name,
            "ours": generic_metrics(rows, table),
            "official": official_metrics(suite, rows, table),
        }
    cal = calibration_metrics(rows, table)
    if cal:
        out["calibration"] = cal
    return out


def score_native(path: str | os.PathLike) -> dict[str, Any] | None:
    """A benchmark's own prediction file (GenAI-Bench, Multimodal RewardBench), or None if it is not one."""
    lines = []
    with Path(path).open(encoding="utf-8") as f:
        for lineno, text in enumerate(f, 1):
            if not text.strip():
                continue
            try:
                lines.append(json.loads(text))
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if lines and not all(isinstance(x, dict) for x in lines):
        raise InputError(f"{path}: every line must be a JSON object")
    if lines and "human_vote" in lines[0] and "response" in lines[0]:
        name = Path(path).name
        task = next((t for t in ("image_generation", "image_edition", "video_generation") if t in name), None)
        return {"format": "genai_bench predictions", "task": task, "official": M.genai_score({task or "task": lines})}
    if lines and "Label" in lines[0] and "output" in lines[0]:
        rows = [
            {
                "id": x["ID"],
                "label": x["Label"],
                "output": x["output"],
                "category": (x.get("Meta") or {}).get("Category", ""),
            }
            for x in lines
        ]
        return {"format": "multimodal_rewardbench predictions", "official": M.mmrb_score(rows)}
    return None


def check_native_suite(metrics: dict[str, Any], suite: Suite, path: str | os.PathLike) -> None:
    """A benchmark's own prediction file is scored only under its own suite (a report titled with another
    benchmark's name over these numbers would be wrong)."""
    fmt = metrics["format"]
    if fmt.startswith("genai_bench"):
        task = metrics.get("task")
        wanted = [f"genai_bench_{task}"] if task else [n for n in SUITES if n.startswith("genai_bench_")]
    else:
        wanted = ["multimodal_rewardbench"]
    if suite.name not in wanted:
        raise InputError(
            f"--predictions {path} is a {fmt} file, not one of {suite.name}; use --suite {' or '.join(wanted)}"
        )


# ----------------------------------------------------------------------------------------------------------------------
# Reports


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.3f}"
    if isinstance(x, (list, tuple)) and len(x) == 2 and all(isinstance(v, float) for v in x):
        return f"[{x[0]:.3f}, {x[1]:.3f}]"
    return str(x)


def write_report(metrics: dict[str, Any], out: str | os.PathLike) -> dict[str, str]:
    """``metrics.json``, ``report.md`` and ``accuracy.png`` (by category with 95% intervals, position bias, tool use)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2, default=str))
    lines = [f"# Eval: {metrics.get('suite', '?')}", ""]
    ours = metrics.get("ours")
    if ours:
        lines += [
            "## Ours (shared parser; strict: parse failure = wrong, all items)",
            "",
            "| metric | value |",
            "|---|---|",
        ]
        for k in (
            "n",
            "accuracy",
            "ci95",
            "macro",
            "parse_failure_rate",
            "strict_format_rate",
            "tool_call_rate",
            "accuracy_with_tools",
            "accuracy_without_tools",
            "first_is_better",
            "consistency",
            "mean_latency_s",
            "mean_completion_tokens",
        ):
            lines.append(f"| {k} | {_fmt(ours.get(k))} |")
        lines += ["", "| category | n | accuracy | 95% CI |", "|---|---|---|---|"]
        for c, v in ours["by_category"].items():
            lines.append(f"| {c} | {v['n']} | {_fmt(v['accuracy'])} | {_fmt(v['ci95'])} |")
    cal = metrics.get("calibration") or {}
    if cal.get("pairwise"):
        c = cal["pairwise"]
        lines += [
            "",
            "## Calibration of the continuous reward (P(better))",
            "",
            f"Over {c['n']} judgments: accuracy of the likelier candidate {_fmt(c['accuracy'])}, expected calibration "
            f"error {_fmt(c['ece'])}, Brier score {_fmt(c['brier'])}.",
            "",
            "| confidence bin | n | mean confidence | accuracy |",
            "|---|---|---|---|",
            *[
                f"| {b['bin'][0]:.2f}-{b['bin'][1]:.2f} | {b['n']} | {b['confidence']:.3f} | {b['accuracy']:.3f} |"
                for b in c["reliability"]
            ],
            "",
            "Abstaining below a confidence threshold:",
            "",
            "| threshold | coverage | accuracy |",
            "|---|---|---|",
            *[f"| {a['threshold']:.2f} | {a['coverage']:.3f} | {_fmt(a['accuracy'])} |" for a in c["abstention"]],
            "",
            "![reliability and abstention](calibration.png)",
        ]
    if cal.get("human_correlation"):
        h = cal["human_correlation"]
        lines += [
            "",
            f"Rank correlation with human scores over {h['n']}: Spearman {_fmt(h['spearman'])}, "
            f"Kendall {_fmt(h['kendall'])}.",
        ]
    if ours and ours.get("first_is_better") is not None:
        lines += [
            "",
            "## Position",
            "",
            f"First-shown candidate preferred in {_fmt(ours['first_is_better'])} of {ours.get('n_decided', '?')} decided "
            f"verdicts (95% CI {_fmt(ours.get('first_is_better_ci95'))}); both orders agree on "
            f"{_fmt(ours.get('consistency'))} of {ours.get('n_order_pairs', '?')} items judged twice "
            f"(95% CI {_fmt(ours.get('consistency_ci95'))}).",
            "",
            "![position bias and order consistency](position.png)",
        ]
    if metrics.get("official"):
        lines += [
            "",
            "## Official rules",
            "",
            "```json",
            json.dumps(metrics["official"], indent=2, default=str),
            "```",
        ]
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
    paths = {"metrics": str(out / "metrics.json"), "report": str(out / "report.md")}
    if ours:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415

        cats = list(ours["by_category"].items())
        fig, axes = plt.subplots(1, 3, figsize=(14, 4), gridspec_kw={"width_ratios": [3, 1, 1]})
        acc = [v["accuracy"] or 0 for _, v in cats]
        err = [
            [a - (v["ci95"][0] if v["ci95"][0] == v["ci95"][0] else a) for a, (_, v) in zip(acc, cats)],
            [(v["ci95"][1] if v["ci95"][1] == v["ci95"][1] else a) - a for a, (_, v) in zip(acc, cats)],
        ]
        axes[0].bar(range(len(cats)), acc, yerr=err, capsize=3)
        axes[0].set_xticks(range(len(cats)), [c for c, _ in cats], rotation=60, ha="right", fontsize=7)
        axes[0].set_ylim(0, 1)
        axes[0].set_title("accuracy by category (95% CI)")
        axes[1].bar(["first", "second"], [ours["first_is_better"] or 0, 1 - (ours["first_is_better"] or 0)])
        axes[1].set_ylim(0, 1)
        axes[1].set_title("verdict position")
        axes[2].bar(["with tools", "without"], [ours["accuracy_with_tools"] or 0, ours["accuracy_without_tools"] or 0])
        axes[2].set_ylim(0, 1)
        axes[2].set_title("accuracy vs tool use")
        fig.tight_layout()
        fig.savefig(out / ".accuracy.png.tmp", dpi=90, format="png")
        os.replace(out / ".accuracy.png.tmp", out / "accuracy.png")
        plt.close(fig)
        paths["plot"] = str(out / "accuracy.png")
        if ours.get("first_is_better") is not None:
            paths["position"] = _position_plot(ours, out / "position.png", plt)
    if cal.get("pairwise"):
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415

        paths["calibration"] = _calibration_plot(cal["pairwise"], out / "calibration.png", plt)
    return paths


def _save(fig, path: Path, plt) -> str:
    tmp = path.with_name(f".{path.name}.tmp")
    fig.tight_layout()
    fig.savefig(tmp, dpi=90, format="png")
    os.replace(tmp, path)
    plt.close(fig)
    return str(path)


def _calibration_plot(c: dict[str, Any], path: Path, plt) -> str:
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot([0.5, 1], [0.5, 1], "k--", lw=1, label="perfectly calibrated")
    conf = [t["confidence"] for t in c["reliability"]]
    acc = [t["accuracy"] for t in c["reliability"]]
    a.plot(conf, acc, "o-", label=f"judge (ECE {c['ece']:.3f})")
    for x, y, t in zip(conf, acc, c["reliability"]):
        a.annotate(str(t["n"]), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    a.set_xlim(0.5, 1)
    a.set_ylim(0, 1)
    a.set_xlabel("confidence (max of P, 1-P)")
    a.set_ylabel("accuracy")
    a.set_title("reliability")
    a.legend(fontsize=8)
    pts = [t for t in c["abstention"] if t["accuracy"] is not None]
    b.plot([t["coverage"] for t in pts], [t["accuracy"] for t in pts], "o-")
    for t in pts:
        b.annotate(f"{t['threshold']:.2f}", (t["coverage"], t["accuracy"]), textcoords="offset points",
                   xytext=(4, -10), fontsize=7)  # fmt: skip
    b.set_xlim(0, 1.05)
    b.set_ylim(0, 1)
    b.set_xlabel("coverage (share judged)")
    b.set_ylabel("accuracy")
    b.set_title("abstaining below a confidence threshold")
    return _save(fig, path, plt)


def _position_plot(o: dict[str, Any], path: Path, plt) -> str:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    names, vals, lo, hi = [], [], [], []
    for key, label in (("first_is_better", "first shown preferred"), ("consistency", "orders agree")):
        if o.get(key) is None:
            continue
        ci = o.get(f"{key}_ci95") or (o[key], o[key])
        names.append(label)
        vals.append(o[key])
        lo.append(o[key] - ci[0])
        hi.append(ci[1] - o[key])
    ax.bar(names, vals, yerr=[lo, hi], capsize=4, color=["#7a9cd6", "#7ac68b"][: len(names)])
    ax.axhline(0.5, color="k", lw=0.8, ls="--")
    ax.set_ylim(0, 1)
    ax.set_title("position bias and order consistency (95% CI)")
    return _save(fig, path, plt)


def compare(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Two metrics.json side by side (Markdown)."""
    rows = ["| metric | A | B |", "|---|---|---|"]
    oa, ob = a.get("ours", {}), b.get("ours", {})
    for k in ("n", "accuracy", "macro", "parse_failure_rate", "tool_call_rate", "first_is_better", "consistency"):
        rows.append(f"| {k} | {_fmt(oa.get(k))} | {_fmt(ob.get(k))} |")
    for c in sorted(set(oa.get("by_category", {})) | set(ob.get("by_category", {}))):
        ca, cb = oa.get("by_category", {}).get(c, {}), ob.get("by_category", {}).get(c, {})
        rows.append(f"| {c} | {_fmt(ca.get('accuracy'))} | {_fmt(cb.get('accuracy'))} |")
    return "\n".join(rows)
