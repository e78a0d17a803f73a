"""`memrepro-report <sweep dir>`: table.md / table.csv (one row per model x task cell, mean ± std
over seeds of each final metric, n seeds, parameter count) and convergence.png (mean curve with a
±std band per cell), written into the sweep folder."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from memrepro.errors import MemreproError
from memrepro.results import aggregate
from memrepro.results.plots import plot_convergence

LOWER_IS_BETTER_HINT = "all metrics: lower is better"


def fmt(mean: float, std: float, n: int) -> str:
    if pd.isna(mean):
        return "—"
    return f"{mean:.4g}" if n < 2 or pd.isna(std) else f"{mean:.4g} ± {std:.2g}"


def table(runs: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """The human table: one row per cell, 'mean ± std' strings."""
    s = aggregate.summarise(runs, metrics)
    out = s[["task", "cell", "n", "parameters"]].copy()
    for m in metrics:
        out[m] = [fmt(a, b, n) for a, b, n in zip(s[f"{m}_mean"], s[f"{m}_std"], s["n"])]
    return out


def curve_metric(curves: pd.DataFrame, preferred: str | None) -> str | None:
    if preferred:
        return preferred
    for name in ("eval_bit_errors", "eval_error", "eval_mse", "eval_nll", "val_error", "val_mse", "val_nll", "val_bit_errors"):
        if name in curves:
            return name
    return None


def report(sweep_dir: Path, out_dir: Path | None = None, metric: str | None = None) -> dict[str, Path]:
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise MemreproError(f"{sweep_dir} is not a folder: give the sweep folder (outputs/sweeps/<time>)")
    out_dir = Path(out_dir or sweep_dir)
    runs = aggregate.load_runs(sweep_dir)
    if runs.empty:
        raise MemreproError(f"no run folders (summary.json) under {sweep_dir}")
    metrics = aggregate.final_metric_columns(runs)
    t = table(runs, metrics)
    written = {"csv": out_dir / "table.csv", "md": out_dir / "table.md"}
    aggregate.summarise(runs, metrics).to_csv(written["csv"], index=False, float_format="%.6g")
    failed = runs[~runs["status"].isin(["completed", "solved"])]
    lines = [f"# {sweep_dir.name}", "", f"{len(runs)} runs, {len(failed)} not finished; mean ± std over seeds ({LOWER_IS_BETTER_HINT}).", "", t.to_markdown(index=False)]
    if len(failed):
        lines += ["", "## Runs that did not finish", "", failed[["run_dir", "status", "error"]].to_markdown(index=False)]
    written["md"].write_text("\n".join(lines) + "\n")
    curves = aggregate.load_curves(sweep_dir, runs)
    m = curve_metric(curves, metric)
    if m is not None and m in curves:
        written["figure"] = plot_convergence(curves, m, out_dir / "convergence.png", title=sweep_dir.name)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="memrepro-report", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="a sweep folder (outputs/sweeps/<time>) or any folder of run folders")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: the sweep folder)")
    parser.add_argument("--metric", default=None, help="metric of the convergence figure (default: the eval set's primary metric)")
    args = parser.parse_args(argv)
    try:
        written = report(args.sweep_dir, args.out, args.metric)
    except MemreproError as e:
        print(f"memrepro-report: error: {e}", file=sys.stderr)
        sys.exit(2)
    print(Path(written["md"]).read_text())
    for kind, path in written.items():
        print(f"{kind}: {path}")


if __name__ == "__main__":
    main()
