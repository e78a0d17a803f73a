"""`memrepro-report <sweep dir>`: the tables and figures of a sweep.

* every sweep: ``cells.md/.csv`` — one row per model x task cell, mean ± std over seeds of each
  final metric, n seeds, parameter count — and ``convergence.png`` (mean curve, ±std band per cell),
  with ``length_generalization.png`` (one line per seed) when runs were evaluated at several lengths;
* a sweep of a paper experiment (its config names ``paper: <id>``): ``table.md/.csv/.tex`` with the
  paper's numbers beside ours, verdicts and the paper's claims checked (see `tables.py`).
  Without a paper, ``table.md/.csv`` are the cells table.

With ``--store results/<id>/<scale>`` the table's runs are also kept in the committed results
store (`store.py`); `memrepro-report --index results --doc docs/REPRODUCTION.md` regenerates every
stored table and the reproduction page from it alone.
"""
from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

import pandas as pd

from memrepro.errors import MemreproError
from memrepro.results import aggregate, store, tables
from memrepro.results.memory_plots import LENGTH_FIGURE, plot_runs_by_length
from memrepro.results.plots import plot_convergence

CURVE_METRICS = ("eval_bit_errors", "eval_error", "eval_mse", "eval_nll", "val_error", "val_mse", "val_nll", "val_bit_errors")


def fmt(mean: float, std: float, n: int) -> str:
    if pd.isna(mean):
        return "—"
    return f"{mean:.4g}" if n < 2 or pd.isna(std) else f"{mean:.4g} ± {std:.2g}"


def cells_table(runs: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """The human table: one row per cell, 'mean ± std' strings."""
    s = aggregate.summarise(runs, metrics)
    out = s[["task", "cell", "n", "parameters"]].copy()
    for m in metrics:
        out[m] = [fmt(a, b, n) for a, b, n in zip(s[f"{m}_mean"], s[f"{m}_std"], s["n"])]
    return out


def _paper_title(paper: dict) -> str:
    """A figure's title: the table's id and what it shows, wrapped to the figure's width."""
    return textwrap.fill(f"{paper['id']}: {paper['title']}", 110)


def report(sweep_dir: Path, out_dir: Path | None = None, metric: str | None = None, store_dir: Path | None = None) -> dict[str, Path]:
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise MemreproError(f"{sweep_dir} is not a folder: give the sweep folder (outputs/sweeps/<time>)")
    out_dir = Path(out_dir or sweep_dir)
    runs = aggregate.load_runs(sweep_dir)
    if runs.empty:
        raise MemreproError(f"no run folders (summary.json) under {sweep_dir}")
    if (runs["status"] == aggregate.UNREADABLE).all():
        raise MemreproError(f"every summary.json under {sweep_dir} is unreadable ({len(runs)} runs): rerun the sweep with resume=true")
    curves = aggregate.load_curves(sweep_dir, runs)
    if metric and metric not in curves.columns:
        logged = sorted(set(curves.columns) - {*aggregate.CURVE_TAGS, "step"})
        raise MemreproError(f"--metric {metric}: no run logged it; the runs log {', '.join(logged) or 'no curves'}")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MemreproError(f"--out {out_dir}: cannot create it ({e.strerror}); give a folder path") from None
    paper_id = aggregate.paper_of(sweep_dir)
    stem = "cells" if paper_id else "table"
    metrics = aggregate.final_metric_columns(runs)
    written = {"cells_csv": out_dir / f"{stem}.csv", "cells_md": out_dir / f"{stem}.md"}
    aggregate.summarise(runs, metrics).to_csv(written["cells_csv"], index=False, float_format="%.6g")
    failed = runs[~runs["status"].isin(["completed", "solved"])]
    lines = [f"# {sweep_dir.name}", "", f"{len(runs)} runs, {len(failed)} not finished; mean ± std over seeds (all metrics: lower is better).", "",
             cells_table(runs, metrics).to_markdown(index=False)]
    if len(failed):
        lines += ["", "## Runs that did not finish", "", failed[["run_dir", "status", "error"]].to_markdown(index=False)]
    written["cells_md"].write_text("\n".join(lines) + "\n")
    shown = [metric] if metric else curve_metrics(curves, tables.load_paper(paper_id) if paper_id else None)
    if paper_id:
        scale = runs["scale"].dropna().iloc[0] if runs["scale"].notna().any() else "?"
        experiment = runs["experiment"].dropna().iloc[0] if runs["experiment"].notna().any() else None
        meta = tables.meta(runs, paper_id, scale, experiment)
        written.update(tables.paper_report(runs, curves, tables.load_paper(paper_id), out_dir, meta))
        if store_dir:
            written["store"] = store.save(store_dir, runs, curves, [*shown, *evidence_curves(tables.load_paper(paper_id))], meta)
    title = _paper_title(tables.load_paper(paper_id)) if paper_id else f"{', '.join(sorted(runs['model'].dropna().unique()))} on {', '.join(sorted(runs['task'].dropna().unique()))}"
    written.update(figures(runs, curves, shown, out_dir, title))
    return written


def figures(runs: pd.DataFrame, curves: pd.DataFrame, shown: list[str], folder: Path, title: str) -> dict[str, Path]:
    """A table folder's figures: ``convergence.png`` of the ``shown`` curves, and
    ``length_generalization.png`` (every seed) when runs were evaluated at several lengths."""
    written = {}
    if shown and not curves.empty and (figure := plot_convergence(curves, shown, folder / "convergence.png", title=title)):
        written["figure"] = figure
    if lengths := plot_runs_by_length(runs, folder / LENGTH_FIGURE, title=title):
        written["lengths"] = lengths
    return written


def evidence_curves(paper: dict) -> list[str]:
    """Every curve a row's verdict may read (its metric, or the validation curve of a test metric)."""
    return [f"{split}_{(row.get('metric') or '').removeprefix('test_')}" for row in paper["rows"] for split in ("val", "eval")] + [row.get("metric") or "" for row in paper["rows"]]


def curve_metrics(curves: pd.DataFrame, paper: dict | None) -> list[str]:
    """What the convergence figure shows: for a paper table, the metrics of its rows (test
    metrics are final-only, so their validation and training-slice curves stand in, as in the
    papers' train/test figures); otherwise the primary metric of the evaluation set."""
    if paper:
        names = []
        for row in paper["rows"]:
            metric = row.get("metric") or ""
            base = metric.removeprefix("test_")
            candidates = [f"val_{base}", f"trainset_{base}"] if metric.startswith("test_") else [metric]
            names += [c for c in candidates if c in curves and c not in names]
        if names:
            return names
    return [next(c for c in CURVE_METRICS if c in curves)] if any(c in curves for c in CURVE_METRICS) else []


def regenerate(folder: Path) -> dict:
    """A stored table's files (table.md/.csv/.tex, status.json, convergence.png) from its results
    folder alone; returns its status."""
    runs, curves, meta = store.load(folder)
    paper = tables.load_paper(meta["paper"])
    written = tables.paper_report(runs, curves, paper, folder, meta)
    figures(runs, curves, curve_metrics(curves, paper) if not curves.empty else [], folder, _paper_title(paper))
    return json.loads(written["status"].read_text())


def not_run_line(paper_id: str, done: list[dict]) -> str:
    """What the index says of a scale not stored: the paper-scale cost, estimated from the quick
    runs' measured training time (their updates are the steps fraction of the paper's)."""
    quick = next((st for st in done if st["scale"] != "paper" and st.get("steps_fraction")), None)
    if quick and quick.get("other_data"):  # another dataset's time per update says nothing of the paper's
        return (f"paper scale not run; the {quick['scale']} runs trained on another dataset ({', '.join(quick['other_data'])}), "
                f"so they do not give its cost (docs/benchmarks.md estimates it from measured figures): `make table-{paper_id} SCALE=paper`")
    if quick:
        hours = quick["train_hours"] / quick["steps_fraction"]
        return f"paper scale not run: ≈ {hours:.0f} core-hours (≈ {hours / 2:.0f} h on 2 cores), from the {quick['scale']} runs' time per update: `make table-{paper_id} SCALE=paper`"
    why = tables.load_paper(paper_id).get("not_run") or f"not run yet (its estimated wall time is in conf/experiment/{paper_id.replace('-', '_')}.yaml)"
    return f"{why}: `make table-{paper_id}`"


def index(results_dir: Path, doc: Path | None = None) -> Path:
    """index.md over every stored table under ``results_dir`` (<id>/<scale>/), each regenerated
    from its results, with a line for each paper table or paper scale not stored."""
    results_dir = Path(results_dir)
    done = store.folders(results_dir)
    lines = ["# Reproduction status", "",
             "Generated by `make report` from the committed results store `results/` (written by `make table-<id>`); never edited by hand. "
             "Each section is one table or figure of the source papers, with our numbers beside the published ones; "
             "a row that differs gives the evidence why, read off its own runs.", ""]
    summary, sections = [], []
    for paper_id in tables.paper_ids():
        folders = [d for d in done if d.parent.name == paper_id]
        statuses = []
        for d in sorted(folders, key=lambda d: d.name != "paper"):
            st = regenerate(d)
            statuses.append(st)
            summary.append({"table": paper_id, "scale": d.name, "run-minutes (Σ runs)": st["run_minutes"],
                            "rows matching": f"{st['rows_matching']}/{st['rows_run']} run ({st['rows']} rows)",
                            "claims holding": f"{st['claims_holding']}/{st['claims_checked']}" if st["claims_checked"] else "—", "status": "run"})
            sections += ["---", "", (d / "table.md").read_text().replace("\n# ", "\n## ", 1).replace("# ", "## ", 1), ""]
        if not any(st["scale"] == "paper" for st in statuses):
            summary.append({"table": paper_id, "scale": "paper" if statuses else "—", "run-minutes (Σ runs)": "—", "rows matching": "—", "claims holding": "—", "status": not_run_line(paper_id, statuses)})
    lines += [pd.DataFrame(summary).to_markdown(index=False), "", *sections]
    text = "\n".join(lines)
    out = results_dir / "index.md"
    out.write_text(text)
    if doc:
        Path(doc).write_text(text)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="memrepro-report", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="a sweep folder (outputs/sweeps/<time>), or with --index the tables folder")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: the sweep folder)")
    parser.add_argument("--metric", default=None, help="metric of the convergence figure (default: the eval set's primary metric)")
    parser.add_argument("--store", type=Path, default=None, help="also keep a paper table's runs in this results folder (results/<id>/<scale>)")
    parser.add_argument("--index", action="store_true", help="regenerate every stored table under sweep_dir (the results store) and its index.md")
    parser.add_argument("--doc", type=Path, default=None, help="with --index: also write this page (docs/REPRODUCTION.md)")
    args = parser.parse_args(argv)
    try:
        if args.index:
            print(f"index: {index(args.sweep_dir, args.doc)}")
            return
        written = report(args.sweep_dir, args.out, args.metric, args.store)
    except MemreproError as e:
        print(f"memrepro-report: error: {e}", file=sys.stderr)
        sys.exit(2)
    main_table = written.get("md", written["cells_md"])
    print(Path(main_table).read_text())
    for kind, path in written.items():
        print(f"{kind}: {path}")


if __name__ == "__main__":
    main()
