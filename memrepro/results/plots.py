"""Figures: a run's training curves, and the sweep's convergence figure (mean ± std per model)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from memrepro.results import io  # noqa: E402
from memrepro.results.memory_plots import plot_model_figures  # noqa: E402
from memrepro.train.losses import PRIMARY_METRIC  # noqa: E402


def plot_run(run_dir: Path, model, task, trainer) -> list[str]:
    """curves.png for every run, and a memory model's own figures (`plot_model_figures`); returns
    the names of the figures written."""
    metrics = pd.read_csv(Path(run_dir) / io.METRICS)
    primary = PRIMARY_METRIC[task.output_kind]
    panels = [("loss", [c for c in metrics if c.endswith("_loss")])]
    panels.append((primary, [c for c in metrics if c.endswith(f"_{primary}")]))
    known = {c for _, cols in panels for c in cols} | {"step", "sequences", "epoch", "lesson", "skipped"}
    extra = [c for c in metrics if c not in known and not c.startswith("train_")]
    if extra:
        panels.append(("task metrics and diagnostics", extra))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (title, cols) in zip(axes[0], panels):
        for c in cols:
            ax.plot(metrics["sequences"], metrics[c], label=c, marker="." if len(metrics) < 30 else None)
        ax.set_title(title)
        ax.set_xlabel("sequences seen")
        if title == "loss" and (metrics[cols] > 0).all().all():
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{type(model).__name__} on {type(task).__name__}")
    fig.tight_layout()
    fig.savefig(Path(run_dir) / io.CURVES, dpi=110)
    plt.close(fig)
    batch = next(iter(trainer.eval_sets.values()))  # the first evaluation set: eval (online) or val
    final = metrics.iloc[-1].to_dict()
    return [io.CURVES, *plot_model_figures(run_dir, model, task, batch, final, title=f"{type(model).__name__} on {type(task).__name__}")]


def plot_convergence(curves: pd.DataFrame, metrics: list[str], path: Path, title: str = "", x: str = "sequences") -> Path | None:
    """One panel per task x metric; in each, one line per cell: the mean over seeds of the metric
    against ``x``, with a ±std band. ``curves`` has columns cell, task, seed, ``x`` and the
    metrics (one row per evaluation). None (no file) when no task has a curve."""
    # a panel needs a curve: tasks whose runs evaluated once (e.g. parameter counts) are left out
    panels = [(t, m) for t in sorted(curves["task"].unique()) for m in metrics
              if m in curves and curves.loc[curves["task"] == t].dropna(subset=[m])[x].nunique() > 1]
    if not panels:
        return None
    cols = min(len(panels), 3)
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False)
    for ax, (task, metric) in zip(axes.flat, panels):
        for cell, g in curves[curves["task"] == task].groupby("cell", sort=True):
            stats = g.groupby(x)[metric].agg(["mean", "std"]).reset_index()
            line, = ax.plot(stats[x], stats["mean"], label=f"{cell} (n={g['seed'].nunique()})")
            band = stats["std"].fillna(0)
            ax.fill_between(stats[x], stats["mean"] - band, stats["mean"] + band, color=line.get_color(), alpha=0.2)
        ax.set_title(f"{task}: {metric}", fontsize=10)
        ax.set_xlabel(x.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
