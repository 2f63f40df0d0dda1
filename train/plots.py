"""Training curves from a ``Trainer`` log history, written as a PNG in the run folder."""

from __future__ import annotations

import os
from pathlib import Path

CURVES = (
    "loss",
    "learning_rate",
    "tokens_per_second",
    "loss_think",
    "loss_tool_call",
    "loss_answer",
    "mean_token_accuracy",
    "grad_norm",
    "reward",
    "eval_loss",
)


def plot_curves(log_history: list[dict], path: str | os.PathLike, title: str = "", keys: tuple[str, ...] = CURVES):
    """One panel per logged quantity (the ones of ``keys`` that were logged, plus any ``reward/...``)."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    names = [k for k in keys if any(k in row for row in log_history)]
    names += sorted({k for row in log_history for k in row if k.startswith("reward/")} - set(names))
    if not names:
        return None
    cols = min(3, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        pts = [(row["step"], row[name]) for row in log_history if name in row and "step" in row]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="." if len(pts) < 30 else None)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return str(path)
