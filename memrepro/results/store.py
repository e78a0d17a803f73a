"""The committed results store: what a paper table's runs produced, small enough for git, from which
`memrepro-report --index results --doc docs/REPRODUCTION.md` regenerates the reproduction page
without the run folders (which stay in the git-ignored ``outputs/``).

    results/<table>/<scale>/
      runs.csv     one row per run: identity, status, final metrics, commit, timings, overrides
      curves.csv   per run, the evaluations of the metrics the verdicts and figures read
      meta.json    paper id, scale, experiment, budget fractions, the settings that differ from
                   the paper's, when and at which commit the runs were trained
      table.md …   the table as `memrepro-report` writes it (regenerated from the three above)
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from memrepro.errors import MemreproError

RUNS, CURVES, META = "runs.csv", "curves.csv", "meta.json"
MAX_EVALUATIONS = 60  # per run in curves.csv: enough for a trend and a figure, a few kB per run
CURVE_KEYS = ("step", "sequences", "epoch", "lesson")


def keep_columns(curves: pd.DataFrame, metrics: list[str]) -> list[str]:
    """The curve columns worth keeping: the shown metrics, the tasks' baselines for them, and the
    forcing trainers' engagement."""
    extra = [c for c in curves.columns if "baseline" in c or "persistence" in c or c.startswith(("train_forcing", "train_disc"))]
    return [c for c in dict.fromkeys([*CURVE_KEYS, *metrics, *extra]) if c in curves]


def thin(curve: pd.DataFrame) -> pd.DataFrame:
    """At most MAX_EVALUATIONS evaluations of one run, evenly spaced, the first and last kept."""
    if len(curve) <= MAX_EVALUATIONS:
        return curve
    picks = sorted({round(i * (len(curve) - 1) / (MAX_EVALUATIONS - 1)) for i in range(MAX_EVALUATIONS)})
    return curve.iloc[picks]


def save(folder: Path, runs: pd.DataFrame, curves: pd.DataFrame, metrics: list[str], meta: dict) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    runs.assign(overrides=runs["overrides"].map(json.dumps)).to_csv(folder / RUNS, index=False, float_format="%.9g")
    if not curves.empty:
        cols = keep_columns(curves, metrics)
        compact = pd.concat([thin(g) for _, g in curves.groupby(["run_dir"], sort=True)])
        compact[["run_dir", "cell", "task", "seed", *cols]].to_csv(folder / CURVES, index=False, float_format="%.5g")
    (folder / META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return folder


def load(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    folder = Path(folder)
    try:
        runs = pd.read_csv(folder / RUNS, dtype={"variant": str, "error": str, "commit": str})
        meta = json.loads((folder / META).read_text())
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise MemreproError(f"{folder} is not a readable results folder ({e}); rerun its `make table-…` target") from None
    runs["overrides"] = runs["overrides"].map(json.loads)
    for col in ("variant", "error"):
        runs[col] = runs[col].fillna("")
    curves = pd.read_csv(folder / CURVES) if (folder / CURVES).exists() else pd.DataFrame()
    return runs, curves, meta


def folders(root: Path) -> list[Path]:
    """Every results folder (<table>/<scale>/) under ``root``."""
    return sorted(p.parent for p in Path(root).glob(f"*/*/{META}"))
