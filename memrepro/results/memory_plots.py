"""Figures of memory models: one evaluation sequence with the memory and head weights over time
(as the NTM paper's copy figures, Graves et al. 2014 Figs. 6 and 9), and error against sequence
length with the training range shaded (NTM Figs. 4 and 12).

``traces`` is the list over time steps of ``model.trace(state)`` (dicts of batched tensors).
The key ``memory`` is drawn as its last snapshot (slots x width); every other key is drawn
over time, one panel per head / stack (e.g. read and write weights: slots x time).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from memrepro.train.losses import PRIMARY_METRIC, predictions  # noqa: E402

MAX_PANELS_PER_KEY = 3  # heads or stacks drawn per trace key; more would drown the figure
PANEL_HEIGHT = (1.2, 3.5)  # inches, for images of few and of many (≥ ROWS_FOR_TALLEST) rows
ROWS_FOR_TALLEST = 128


def _as_image(x: Tensor, sequence: int) -> Tensor:
    """[T], [T, C] or batched [B, T(, C)] -> channels x time for imshow."""
    if x.dim() == 3 or (x.dim() == 2 and not x.is_floating_point()):  # batched values or class ids
        x = x[sequence]
    x = x.detach().float().cpu()
    return x.unsqueeze(0) if x.dim() == 1 else x.T


def _trace_panels(traces: Sequence[Mapping[str, Tensor]], sequence: int) -> list[tuple[str, Tensor]]:
    """(title, image) per panel: the final memory, and every other key per head over time."""
    panels = []
    for key in traces[0]:
        steps = torch.stack([t[key][sequence].detach().float().cpu() for t in traces])  # [T, ...]
        if key == "memory":
            last = steps[-1]  # [slots, width], or one flat vector (e.g. the NMN's banks)
            image = last.T if last.dim() == 2 else last.reshape(1, -1)
            panels.append((f"memory after step {len(traces)}" + (" (width x slots)" if last.dim() == 2 else ""), image))
            continue
        steps = steps.reshape(len(traces), -1, steps.shape[-1])  # [T, heads, size]
        heads = steps.shape[1]
        for h in range(min(heads, MAX_PANELS_PER_KEY)):
            name = key.replace("_", " ") + (f" {h}" if heads > 1 else "")
            panels.append((f"{name} over time", steps[:, h].T))
    return panels


def plot_memory_trace(path, inputs: Tensor, targets: Tensor, outputs: Tensor, traces: Sequence[Mapping[str, Tensor]], sequence: int = 0, title: str = "") -> Path:
    """Input, target and output of one sequence over time, then the memory and head weights.

    inputs [T, I], targets [T, O] or class ids [T], outputs [T, O] (probabilities or values);
    batched tensors ([B, T, ...]) are accepted, and ``sequence`` picks the row drawn.
    """
    panels = [("input", _as_image(inputs, sequence)), ("target", _as_image(targets, sequence)), ("output", _as_image(outputs, sequence))]
    panels += _trace_panels(traces, sequence)
    lo, hi = PANEL_HEIGHT  # taller panels for many rows, so that one-slot-wide weights stay visible
    heights = [lo + (hi - lo) * min(image.shape[0], ROWS_FOR_TALLEST) / ROWS_FOR_TALLEST for _, image in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, sum(heights) + 0.4 * len(panels)), squeeze=False, gridspec_kw={"height_ratios": heights})
    for ax, (name, image) in zip(axes[:, 0], panels):
        shown = ax.imshow(image.numpy(), aspect="auto", interpolation="nearest", cmap="viridis")
        ax.set_title(name, fontsize=9, loc="left")
        rows = "width" if name.startswith("memory") else "channel" if name in ("input", "target", "output") else "slot" if "weight" in name else "unit"
        ax.set_ylabel(rows if image.shape[0] > 1 else "", fontsize=8)
        if name.startswith("memory"):
            ax.set_xlabel("slot", fontsize=8)
        if image.shape[0] == 1:
            ax.set_yticks([])
        fig.colorbar(shown, ax=ax, pad=0.01, fraction=0.03)
    if not panels[-1][0].startswith("memory"):
        axes[-1, 0].set_xlabel("time step")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_length_generalization(path, lengths: Sequence[float], errors, train_range: tuple[float, float] | None, ylabel: str = "bit errors per sequence", title: str = "") -> Path:
    """Error against sequence length; ``errors`` is one list or {label: list} (several models or
    runs; labels "<group> · <run>" share their group's colour). The training range [lo, hi], when
    given, is shaded."""
    series = errors if isinstance(errors, Mapping) else {"": errors}
    groups = list(dict.fromkeys(label.split(" · ")[0] for label in series))
    fig, ax = plt.subplots(figsize=(6, 4))
    if train_range:
        ax.axvspan(*train_range, color="grey", alpha=0.2, label=f"training lengths {train_range[0]}-{train_range[1]}")
    for label, values in series.items():
        ax.plot(lengths, values, marker="o", label=label or None, color=f"C{groups.index(label.split(' · ')[0]) % 10}", alpha=0.8)
    ax.set_xlabel("sequence length")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def by_length(values: Mapping[str, float], metric: str) -> dict[int, float]:
    """{length: value} of the ``len<n>_<metric>`` entries of one run's final metrics."""
    found = {int(m.group(1)): v for k, v in values.items() if (m := re.fullmatch(rf"len(\d+)_{metric}", k))}
    return {n: found[n] for n in sorted(found) if found[n] == found[n]}  # NaN: a length this run did not evaluate


def ylabel_of(metric: str) -> str:
    return metric.replace("_", " ") + (" per sequence" if metric == "bit_errors" else "")


def plot_runs_by_length(runs, path, title: str = "") -> Path | None:
    """The table folder's view of the run folders' `LENGTH_FIGURE`: one line per run (a colour per
    cell, one line per seed) for the runs that were evaluated at several lengths; None if none was."""
    series, lengths, metric = {}, set(), None
    for run in runs.sort_values(["cell", "seed"]).to_dict("records"):
        metric = metric or PRIMARY_METRIC.get(run.get("output_kind"))
        points = by_length(run, metric) if metric else {}
        if len(points) >= 2:
            series[f"{run['cell']} · seed {run['seed']}"] = points
            lengths |= set(points)
    if not series:
        return None
    lengths = sorted(lengths)
    return plot_length_generalization(path, lengths, {k: [v.get(n, float("nan")) for n in lengths] for k, v in series.items()},
                                      None, ylabel=ylabel_of(metric), title=title)


MEMORY_FIGURE = "memory_trace.png"
LENGTH_FIGURE = "length_generalization.png"


def plot_model_figures(run_dir, model, task, batch, final: Mapping[str, float], title: str = "") -> list[str]:
    """The figures of a memory model's run folder: `MEMORY_FIGURE`, one sequence of ``batch`` (an
    evaluation set) through the trained model, when its trace holds more than a hidden state;
    `LENGTH_FIGURE`, when the final metrics hold errors at several lengths (``len<n>_<metric>``)."""
    written = []
    row = len(batch) // 4  # formal languages: one row per n, this one n ≈ 16; elsewhere any row
    steps = int(batch.mask[row].nonzero().max()) + 1 if batch.mask[row].any() else batch.inputs.shape[1]
    one = batch[row : row + 1]
    model.eval()
    with torch.no_grad():
        outputs, states = model(one.inputs[:, :steps].to(model.device), return_states=True)
    traces = [{k: v.cpu() for k, v in model.trace(s).items()} for s in states]
    if traces and set(traces[0]) - {"hidden"}:
        plot_memory_trace(Path(run_dir) / MEMORY_FIGURE, one.inputs[:, :steps], one.targets[:, :steps],
                          predictions(task.output_kind, outputs.cpu(), task.num_classes), traces, title=title)
        written.append(MEMORY_FIGURE)
    metric = PRIMARY_METRIC[task.output_kind]
    points = by_length(final, metric)
    if len(points) >= 2 and hasattr(task, "lengths"):
        plot_length_generalization(Path(run_dir) / LENGTH_FIGURE, list(points), list(points.values()), tuple(task.lengths),
                                   ylabel=ylabel_of(metric), title=title)
        written.append(LENGTH_FIGURE)
    return written
