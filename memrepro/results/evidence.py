"""Why a reproduced row differs from the paper's, read off the runs' own data: at the task's chance
or memoryless baseline, a published value below the task's Bayes error (all logged by the tasks), a forcing term that never acted, a curve
still falling at the end or flat, seeds that lost what they had learnt, diverged runs — and a named setting that differs (the paper
yaml's ``note``). Every metric is lower-is-better."""
from __future__ import annotations

import math

import pandas as pd

CHANCE_MARGIN = 0.02  # an error within this of chance is "at chance"
BASELINE_MARGIN = 0.97  # a loss above 97 % of the memoryless baseline has not beaten it
TREND = 0.05  # a relative change over the last quarter of the evaluations beyond which a curve moves
LOST = 0.25  # a seed that gave back this share of what it had learnt (best vs worst evaluation) lost it ...
FELL_BACK = 0.6  # ... if its best is also below this share of its last (not noise on a curve that never moved)


def curve_metric(metric: str, curves: pd.DataFrame, stand_in: str | None = None) -> str | None:
    """The evaluated curve of a final metric: test metrics are final only, so their validation
    (or evaluation) curve stands in; a metric with neither (a count over training) may name its
    own (the paper row's ``curve``)."""
    base = metric.removeprefix("test_")
    return next((c for c in (metric, f"val_{base}", f"eval_{base}", stand_in) if c in curves), None)


def trend(curves: pd.DataFrame, column: str) -> tuple[float, int] | None:
    """Relative change of the seeds' mean curve over its last quarter (at least 3 evaluations)."""
    mean = curves.groupby("step")[column].mean().dropna()
    if len(mean) < 3:
        return None
    k = max(3, math.ceil(len(mean) / 4))
    start, end = mean.iloc[-k], mean.iloc[-1]
    return (end - start) / abs(start) if start else 0.0, k


def fell_back(curves: pd.DataFrame, column: str) -> str | None:
    """Seeds that learnt and then lost it: their last evaluation gave back at least a quarter of
    the way from their worst to their best (noise around a learnt value gives back next to none),
    and their best is well below their last (noise on a flat curve is not learning)."""
    per_run = curves.dropna(subset=[column]).sort_values("step").groupby("run_dir")[column]
    best, worst, last = per_run.min(), per_run.max(), per_run.last()
    lost = last.index[(best < FELL_BACK * last) & (last - best >= LOST * (worst - best))]
    if not len(lost):
        return None
    return (f"worse at the end than at its best in {len(lost)} of {len(last)} seeds "
            f"({column} best {best[lost].mean():.3g}, last {last[lost].mean():.3g}, mean of those seeds)")


def chance_error(runs: pd.DataFrame, metric: str) -> float | None:
    """1 − 1/C for a classification error (C classes = the model's output size)."""
    if not metric.endswith("error") or "output_kind" not in runs or not (runs["output_kind"] == "classification").all():
        return None
    sizes = runs["output_size"].dropna().unique()
    return 1 - 1 / sizes[0] if len(sizes) == 1 and sizes[0] > 1 else None


def logged(runs: pd.DataFrame, metric: str, *kinds: str) -> tuple[str, float] | None:
    """A reference value the task logs beside a metric (``test_baseline_mse`` beside
    ``test_mse``; a task with one baseline for its loss logs ``test_baseline``): name and mean."""
    split, _, name = metric.partition("_")
    names = [f"{split}_{kind}_{name}" for kind in kinds] + ([f"{split}_baseline"] if name == "loss" and "baseline" in kinds else [])
    col = next((c for c in names if c in runs and runs[c].notna().any()), None)
    return (col, float(runs[col].mean())) if col else None


def never_engaged(runs: pd.DataFrame) -> bool:
    """A forcing trainer's runs whose adversarial or classifier term never acted."""
    if "forcing_engaged" not in runs:
        return False
    shares = runs["forcing_engaged"].dropna()
    return len(shares) > 0 and (shares == 0).all()


def reason(row: dict, runs: pd.DataFrame, curves: pd.DataFrame, ours: float, paper: float | None, steps_fraction: float | None) -> str:
    """The evidence for a row that differs, as one line."""
    metric = row["metric"]
    found = []
    floor = logged(runs, metric, "bayes")
    if floor and ours < floor[1] - CHANCE_MARGIN:
        floor = None  # our runs beat it: a floor of other models (sorted classification's is memory-less), not of these
    if floor and paper is not None and paper < floor[1] - CHANCE_MARGIN:
        found.append(f"the paper's {paper:.3g} is below the task's Bayes error {floor[1]:.3g} (the least error possible as specified: docs/tasks.md)")
    elif floor and ours <= floor[1] + CHANCE_MARGIN:
        found.append(f"at the task's Bayes error {floor[1]:.3g}")
    diverged = int((runs["status"].eq("diverged") | runs["error"].astype(str).str.contains("non-finite|diverg")).sum())
    if diverged:
        found.append(f"{diverged} of {len(runs)} seeds diverged")
    chance = chance_error(runs, metric)
    if chance is not None and ours >= chance - CHANCE_MARGIN:
        found.append(f"at chance ({ours:.3g}; chance {chance:.3g})")
    base = logged(runs, metric, "baseline", "persistence")
    if base and ours >= BASELINE_MARGIN * base[1]:
        found.append(f"not below the task's baseline ({ours:.3g} vs {base[0]} {base[1]:.3g})")
    if "lessons" in runs and (runs["lessons"].fillna(1) > 1).any():
        reached = runs["lesson"].astype(int).tolist()
        found.append(f"curriculum lessons reached {reached} of 0–{int(runs['lessons'].max()) - 1} (evaluated at the last)")
    column = curve_metric(metric, curves, row.get("curve"))
    if column and (lost := fell_back(curves, column)):
        found.append(lost)
    moved = trend(curves, column) if column else None
    if moved:
        change, k = moved
        budget = f" at {steps_fraction:.2g}× the paper's updates" if steps_fraction is not None and steps_fraction < 1 else ""
        if change <= -TREND:
            found.append(f"still improving at the end ({column} {change:+.0%} over the last {k} evaluations{budget})")
        elif change >= TREND:
            found.append(f"getting worse at the end ({column} {change:+.0%} over the last {k} evaluations)")
        else:
            found.append(f"plateaued ({column} {change:+.1%} over the last {k} evaluations)")
    if paper is not None and not math.isnan(ours):
        found.insert(0, "ours " + ("higher" if ours > paper else "lower"))
    if row.get("note"):
        found.append(row["note"])
    return "; ".join(found) or "no curve was recorded for this row"
