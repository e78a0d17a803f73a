"""Read a sweep (any folder tree of run folders) into pandas: one row per run, and the curves."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from memrepro.results import io

# overrides that identify the seed or the cell's axes rather than a variant of the cell
AXIS_KEYS = ("seed", "model", "task", "scale", "experiment", "resume", "run_dir", "device", "threads", "compile", "plots", "trainer.progress", "trainer.parallel_seeds")


# summary keys the verdicts read as evidence (chance from the output kind and size; a forcing
# trainer's engaged share; the curriculum lesson reached)
EVIDENCE_KEYS = ("output_kind", "output_size", "steps", "lesson", "lessons", "forcing_engaged", "correct_predictions")


def find_runs(root: Path) -> list[Path]:
    return sorted(p.parent for p in Path(root).rglob(io.SUMMARY))


def paper_of(root: Path) -> str | None:
    """The paper table a sweep reproduces: the ``paper`` key of its experiment config."""
    for run_dir in find_runs(root):
        config = run_dir / "config.yaml"
        if config.exists():
            return yaml.safe_load(config.read_text()).get("paper")
    return None


def _settings(overrides: list[str]) -> dict[str, str]:
    pairs = (o.split("=", 1) for o in overrides if "=" in o)
    return {k.lstrip("+~"): v for k, v in pairs if k.lstrip("+~") not in AXIS_KEYS}


def variants(all_overrides: list[list[str]]) -> list[str]:
    """Per run, the overrides that tell its cell apart from the sweep's other cells, e.g.
    ``model.write=input``; settings shared by every run of the sweep are left out."""
    settings = [_settings(o) for o in all_overrides]
    keys = sorted({k for s in settings for k in s})
    varying = [k for k in keys if len({s.get(k) for s in settings}) > 1]
    # an experiment's named cell (+experiment/<paper>/model=nmn_input) reads best as its name alone
    return [",".join(s[k] if k.startswith("experiment/") else f"{k}={s[k]}" for k in varying if k in s) for s in settings]


UNREADABLE = "unreadable summary.json"  # the status of a run whose summary.json cannot be parsed


def load_runs(root: Path) -> pd.DataFrame:
    """One row per run folder: identity (model, task, variant, seed), status and final metrics."""
    rows = []
    dirs = find_runs(root)
    summaries = [io.read_summary(d) or {"status": UNREADABLE} for d in dirs]
    for run_dir, s, v in zip(dirs, summaries, variants([s.get("overrides", []) for s in summaries])):
        rows.append({
            "run_dir": str(run_dir.relative_to(root)) if run_dir != Path(root) else ".",
            "model": s.get("model"),
            "task": s.get("task"),
            "variant": v,
            "cell": s.get("model", "?") + (f" [{v}]" if v and v != s.get("model") else ""),
            "seed": s.get("seed"),
            "status": s.get("status"),
            "error": s.get("error", ""),
            "parameters": s.get("parameters"),
            "sequences": s.get("sequences"),
            "train_seconds": s.get("train_seconds"),
            "wall_seconds": s.get("wall_seconds"),
            "started_at": s.get("started_at"),
            "commit": s.get("commit"),
            "scale": s.get("scale"),
            "experiment": s.get("experiment"),
            "overrides": s.get("overrides", []),
            **{k: s.get(k) for k in EVIDENCE_KEYS},
            **{k: v for k, v in (s.get("final") or {}).items()},
        })
    return pd.DataFrame(rows)


CURVE_TAGS = ("run_dir", "cell", "task", "seed")  # the run each curve row belongs to


def load_curves(root: Path, runs: pd.DataFrame) -> pd.DataFrame:
    """Every evaluation row of every finished run, tagged with its cell, task and seed."""
    frames = []
    for _, r in runs[runs["status"].isin(["completed", "solved"])].iterrows():
        path = Path(root) / r["run_dir"] / io.METRICS
        if path.exists():
            frames.append(pd.read_csv(path).assign(**{tag: r[tag] for tag in CURVE_TAGS}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def summarise(runs: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Mean, std and n over seeds of each metric, per (task, cell); finished runs only."""
    done = runs[runs["status"].isin(["completed", "solved"])]
    grouped = done.groupby(["task", "cell"], sort=True)
    out = grouped.agg(n=("seed", "nunique"), parameters=("parameters", "first"))
    for m in metrics:
        out[f"{m}_mean"] = grouped[m].mean()
        out[f"{m}_std"] = grouped[m].std(ddof=1)
    return out.reset_index()


def final_metric_columns(runs: pd.DataFrame) -> list[str]:
    """The evaluation metrics present in the runs' summaries (training averages left out)."""
    identity = {"run_dir", "model", "task", "variant", "cell", "seed", "status", "error", "parameters", "sequences", "train_seconds", "wall_seconds", "started_at", "commit", "scale", "experiment", "overrides", *EVIDENCE_KEYS}
    return [c for c in runs.columns if c not in identity and not c.startswith("train_") and pd.api.types.is_numeric_dtype(runs[c])]
