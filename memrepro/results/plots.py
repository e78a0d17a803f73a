"""Figures: a run's training curves, and the sweep's convergence figure (mean ± std per model)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.ticker  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from memrepro.results import io  # noqa: E402
from memrepro.results.memory_plots import plot_model_figures  # noqa: E402
from memrepro.train.losses import PRIMARY_METRIC  # noqa: E402


# y-axis labels of the metrics every task family logs
METRIC_LABELS = {"loss": "loss (training objective)", "bit_errors": "bit errors per sequence", "error": "error rate",
                 "mse": "mean squared error", "nll": "NLL (nats per image)"}
# reference columns a task logs beside a metric (`memrepro.tasks`): drawn as dashed lines
REFERENCES = {"loss": ("baseline", "memoryless baseline"), "mse": ("baseline_mse", "mean-predictor baseline"),
              "error": ("bayes_error", "Bayes error")}


def metric_label(metric: str) -> str:
    """The y-axis label of a logged metric: ``eval_bit_errors`` -> 'bit errors per sequence'."""
    for name, label in METRIC_LABELS.items():
        if metric == name or metric.endswith(f"_{name}"):
            return label
    return metric.replace("_", " ")


def _scale_y(ax, values: pd.DataFrame) -> None:
    """Log scale only where the values span more than a decade; plain tick labels either way."""
    positive = values[values > 0].stack()
    if len(positive) and (values > 0).all().all() and positive.max() / positive.min() > 10:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def plot_run(run_dir: Path, model, task, trainer) -> list[str]:
    """curves.png for every run — loss, the task's metric with its chance or baseline line, one
    panel per evaluation length, then the diagnostics — and a memory model's own figures
    (`plot_model_figures`); returns the names of the figures written."""
    metrics = pd.read_csv(Path(run_dir) / io.METRICS)
    primary = PRIMARY_METRIC[task.output_kind]
    references = {c for kind, _ in REFERENCES.values() for c in metrics if c.endswith(f"_{kind}") or c == kind}
    by_length = [c for c in metrics if c.startswith("len") and c.endswith(f"_{primary}")]
    panels = [("loss", "loss", [c for c in metrics if c.endswith("_loss") and not c.startswith("len")]),
              (metric_label(primary), primary, [c for c in metrics if c.endswith(f"_{primary}") and c not in by_length and c not in references])]
    panels += [(f"{metric_label(primary)} at length {c[3:].split('_')[0]}", primary, [c]) for c in by_length]
    known = {c for *_, cols in panels for c in cols} | references | {"step", "sequences", "epoch", "lesson", "skipped"}
    known |= {c for c in metrics if c.startswith("len") and c.endswith("_loss")}
    extra = [c for c in metrics if c not in known and not c.startswith("train_")]
    if extra:
        panels.append(("task metrics and diagnostics", "", extra))
    cols = min(len(panels), 3)
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, (title, metric, columns) in zip(axes.flat, panels):
        for c in columns:
            ax.plot(metrics["sequences"], metrics[c], label=c, marker="." if len(metrics) < 30 else None)
        kind, name = REFERENCES.get(metric, (None, None))
        for ref in [f"{c[: -len(metric) - 1]}_{kind}" for c in columns if kind]:  # eval_loss -> eval_baseline
            if ref in metrics and metrics[ref].notna().any():
                ax.axhline(metrics[ref].dropna().iloc[-1], color="grey", linestyle="--", linewidth=1, label=f"{name} ({ref})")
                break
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("sequences seen")
        ax.set_ylabel(metric_label(metric) if metric else "value")
        _scale_y(ax, metrics[columns])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
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
        ax.set_title(f"{task}, {metric.split('_')[0]} split" if "_" in metric else task, fontsize=10)
        ax.set_xlabel(x.replace("_", " "))
        ax.set_ylabel(f"{metric_label(metric)} ({metric})")
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
