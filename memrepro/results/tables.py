"""A paper's table beside ours: per row of `memrepro/papers/<id>.yaml`, our mean ± std over seeds,
the paper's value, the difference, a verdict (tolerance from the yaml) and, for a row that differs,
the evidence why (`evidence.py`); the paper's qualitative claims checked on our numbers; a header
with the scale, the settings that differ from the paper's, the runs' summed time, and the commit and date the
runs were trained at. Everything is computed from a results folder (`store.py`) and the yaml."""
from __future__ import annotations

import json
import math
import operator
import time
from pathlib import Path

import pandas as pd
import yaml
from omegaconf import OmegaConf

from memrepro.config import RUNTIME_KEYS, compose, fraction
from memrepro.errors import MemreproError
from memrepro.results import evidence

PAPERS_DIR = Path(__file__).resolve().parent.parent / "papers"
OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
APPROX_REL = 0.1  # "≈" in a claim: within 10% of the right-hand side (or 0.01 absolute)


def paper_ids() -> list[str]:
    return sorted(yaml.safe_load(p.read_text())["id"] for p in PAPERS_DIR.glob("*.yaml"))


def load_paper(paper_id: str) -> dict:
    path = PAPERS_DIR / f"{paper_id.replace('-', '_')}.yaml"
    if not path.exists():
        raise MemreproError(f"no published numbers for {paper_id!r}; known tables: {', '.join(paper_ids())}")
    return yaml.safe_load(path.read_text())


def _matches(run_overrides: list[str], wanted: dict) -> bool:
    given = dict(o.lstrip("+").split("=", 1) for o in run_overrides if "=" in o)
    return all(str(given.get(k)) == _override_str(v) for k, v in wanted.items())


def _override_str(value) -> str:
    """How Hydra writes a value in an override (lists without spaces, booleans lower-case)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_override_str(v) for v in value) + "]"
    return str(value)


def row_runs(runs: pd.DataFrame, row: dict) -> pd.DataFrame:
    """The runs of a paper row's cell, whatever their status."""
    if row.get("model") is None or runs.empty:
        return runs.iloc[:0]
    wanted = {**(row.get("variant") or {}), **(row.get("task_variant") or {})}
    sel = runs[(runs["model"] == row["model"]) & (runs["task"] == row["task"])]
    return sel[sel["overrides"].map(lambda o: _matches(o, wanted)).astype(bool)]  # a Series: an empty list would pick columns


def finished(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["status"].isin(["completed", "solved"])]


def row_values(runs: pd.DataFrame, row: dict) -> pd.Series:
    """Our values of a paper row's metric, one per finished seed."""
    sel = finished(row_runs(runs, row))
    if row.get("metric") not in sel:
        return pd.Series(dtype=float)
    return sel[row["metric"]].dropna()


def verdict(ours: float, paper: float, tolerance: dict) -> str:
    if math.isnan(ours):
        return "not run"
    if paper is None:
        return "ours only"
    allowed = max(tolerance.get("abs", 0.0), tolerance.get("rel", 0.0) * abs(paper))
    return "✓ matches" if abs(ours - paper) <= allowed else "✗ differs"


def likely_reason(row: dict, runs: pd.DataFrame, curves: pd.DataFrame, ours: float, steps_fraction: float | None, other_data: list[str] = ()) -> str:
    """Why a row differs, from the runs' own evidence (a parameter count: the architecture);
    ``other_data``: the dataset settings that differ from the paper's, named first."""
    if row.get("metric") == "parameters":  # a count does not depend on the training budget
        return row.get("note") or "architectural details the source does not give (the model's docs page compares the counts)"
    done = finished(runs)
    mine = curves[curves["run_dir"].isin(done["run_dir"])] if not curves.empty else curves
    found = evidence.reason(row, runs, mine, ours, row.get("value"), steps_fraction)
    return "; ".join([*(f"another dataset: {d}, numbers not comparable" for d in other_data), found])


def other_datasets(differing: list[str]) -> list[str]:
    """The differing settings that swap a task's data (e.g. `task.dataset` = the offline digits
    for MNIST; not the experiment-level value it is read from)."""
    return [d.replace("`", "") for d in differing if d.startswith("`task.") and "dataset` =" in d]


def compare(runs: pd.DataFrame, paper: dict, curves: pd.DataFrame | None = None, steps_fraction: float | None = None,
            other_data: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """One row per paper row: ours (mean, std, n), the paper's value, difference, verdict, and
    for a row that differs the evidence why. A forcing row whose term never acted is not a
    reproduction, whatever its number. ``other_data``: per task, the dataset settings that
    differ from the paper's (key "*": every task)."""
    other_data = other_data or {}
    out = []
    tol = paper.get("tolerance", {})
    curves = pd.DataFrame() if curves is None else curves
    for row in paper["rows"]:
        mine = row_runs(runs, row)
        values = row_values(runs, row)
        mean = values.mean() if len(values) else math.nan
        std = values.std(ddof=1) if len(values) > 1 else math.nan
        literature = row.get("model") is None
        v = "literature value" if literature else verdict(mean, row.get("value"), tol)
        idle = v != "not run" and evidence.never_engaged(finished(mine))
        shares = finished(mine)["forcing_engaged"].dropna() if "forcing_engaged" in mine else pd.Series(dtype=float)
        out.append({
            "row": row["label"],
            "task": row.get("task") or "—",
            "metric": row.get("metric"),
            "ours_mean": mean, "ours_std": std, "n": len(values),
            "paper": row.get("value"), "paper_std": row.get("std"),
            "diff": mean - row["value"] if row.get("value") is not None and not math.isnan(mean) else math.nan,
            "engaged": shares.mean() if len(shares) else math.nan,
            "verdict": "✗ not reproduced" if idle else v,
            "likely reason": "forcing never engaged (its term acted in no update)" if idle else likely_reason(row, mine, curves, mean, steps_fraction, other_data.get(row.get("task"), other_data.get("*", []))) if v == "✗ differs" else "",
            "unit": row.get("unit", ""),
            "source": row.get("source", "") + (" (read off a figure)" if row.get("approx") else ""),
        })
    return pd.DataFrame(out)


def check_claims(table: pd.DataFrame, paper: dict) -> list[dict]:
    """Each claim on our means. An ordering whose margin is within the seeds' spread (the larger
    std of the two rows) is inconclusive rather than a ✓ or ✗: noise decides it."""
    mean = dict(zip(table["row"], table["ours_mean"]))
    std = dict(zip(table["row"], table["ours_std"]))
    checked = []
    for claim in paper.get("claims", []):
        a, b = claim["left"]["label"], claim["right"]["label"]
        left, right = mean.get(a, math.nan), mean.get(b, math.nan)
        noise = max(std.get(a, 0.0), std.get(b, 0.0))
        noise = 0.0 if math.isnan(noise) else noise
        if math.isnan(left) or math.isnan(right):
            mark = "— (not run)"
        elif claim["op"] == "≈":
            mark = "✓" if abs(left - right) <= max(0.01, APPROX_REL * abs(right), noise) else "✗"
        elif abs(left - right) <= noise:
            mark = "~ within noise"
        else:
            mark = "✓" if OPS[claim["op"]](left, right) else "✗"
        checked.append({"claim": claim["text"], "ours": f"{left:.4g} {claim['op']} {right:.4g}", "seed std": f"{noise:.2g}", "holds": mark})
    return checked


def _num(x: float, sign: str = "") -> str:
    """Counts in full with thousands separators (parameters: 62,260), other values to 4 digits."""
    return f"{x:{sign},.0f}" if abs(x) >= 1000 and float(x).is_integer() else f"{x:{sign}.4g}"


def _fmt(mean, std, n) -> str:
    if n == 0 or pd.isna(mean):
        return "—"
    return _num(mean) if pd.isna(std) else f"{_num(mean)} ± {std:.2g}"


def display(table: pd.DataFrame) -> pd.DataFrame:
    """The human table: formatted numbers."""
    paper_col = [("—" if pd.isna(p) else _num(p) + ("" if pd.isna(s) else f" ± {s:.2g}")) for p, s in zip(table["paper"], table["paper_std"])]
    shown = pd.DataFrame({
        "row": table["row"], "task": table["task"], "metric": table["metric"],
        "ours (mean ± std)": [_fmt(m, s, n) for m, s, n in zip(table["ours_mean"], table["ours_std"], table["n"])],
        "n": table["n"], "paper": paper_col,
        "diff": ["—" if pd.isna(d) else _num(d, "+") for d in table["diff"]],
        "verdict": table["verdict"], "likely reason": table["likely reason"], "source": table["source"],
    })
    if "engaged" in table and table["engaged"].notna().any():  # forcing rows: the share of updates its term acted in
        shown.insert(5, "forcing engaged", ["—" if pd.isna(e) else f"{100 * e:.3g} %" for e in table["engaged"]])
    return shown


# overrides that do not change what is computed (identity, bookkeeping, speed), left out of the comparison
NOT_SETTINGS = ("seed", "scale", "experiment", "trainer.progress", "trainer.parallel_seeds", *RUNTIME_KEYS)


def settings_that_differ(experiment: str, scale: str, ours: list[str], paper_cell: list[str]) -> list[str]:
    """The settings of one of our runs (its overrides ``ours`` at ``scale``) that differ from the
    paper-scale composition of the experiment with the same cell (``paper_cell``: the sweep's own
    choices, without the extra settings given on the command line)."""
    def flat(overrides, s):
        cfg = compose([f"experiment={experiment}", *overrides, f"scale={s}"])
        return pd.json_normalize(OmegaConf.to_container(cfg, resolve=True), sep=".").iloc[0].to_dict()

    ours, paper = flat(ours, scale), flat(paper_cell, "paper")
    return [f"`{k}` = {ours.get(k)!r} (paper scale: {paper.get(k)!r})" for k in sorted(set(ours) | set(paper)) if k not in ("scale.name", "scale.data", "scale.steps", "scale.eval") and ours.get(k) != paper.get(k)]


def provenance(meta: dict) -> str:
    """The commit(s) and dates the runs were trained at (recorded in their summaries)."""
    commits = ", ".join(f"`{c}`" for c in meta["commits"])
    return f"trained at commit {commits}, {meta['trained']}" if commits else f"trained {meta['trained']} (the runs predate commit records)"


def run_minutes(runs: pd.DataFrame) -> float:
    """The runs' own wall time, summed: the table's cost on one core, whether its jobs ran side by
    side or over several sittings."""
    return round(float(runs["wall_seconds"].fillna(0).sum()) / 60, 1) if "wall_seconds" in runs else math.nan


def _day(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(timestamp))


def meta(runs: pd.DataFrame, paper_id: str, scale: str, experiment: str | None) -> dict:
    """What a table's header says about its runs, computed once when the results are stored (the
    settings that differ come from composing the configs of the code that trained them)."""
    diffs, steps, other_data = [], None, {}
    if experiment:
        # an override shared by every run and not a cell choice was given on the command line
        given = set.intersection(*(set(o) for o in runs["overrides"])) if len(runs) > 1 else set()

        def settings(cell: pd.DataFrame) -> list[str]:  # a cell's first run's overrides that change what it computes
            return [o for o in cell["overrides"].iloc[0] if o.split("=", 1)[0].lstrip("+") not in NOT_SETTINGS]

        def differing(ours: list[str]) -> list[str]:
            return settings_that_differ(experiment, scale, ours, [o for o in ours if o not in given or o.lstrip("+").startswith("experiment/")])

        by_task = {task: differing(settings(cell)) for task, cell in runs.groupby("task")}
        diffs = list(dict.fromkeys(d for task_diffs in by_task.values() for d in task_diffs))
        # a swapped dataset concerns only the tasks that read it (the digits for MNIST, not adding)
        other_data = {task: other_datasets(task_diffs) for task, task_diffs in by_task.items()}
        ours = settings(runs)
        steps = fraction("steps", compose([f"experiment={experiment}", *ours, f"scale={scale}"]))
    starts = runs["started_at"].dropna() if "started_at" in runs else pd.Series(dtype=float)
    ends = (runs["started_at"] + runs["wall_seconds"].fillna(0)).dropna() if len(starts) else starts
    return {
        "paper": paper_id, "scale": scale, "experiment": experiment, "steps_fraction": steps,
        "settings_that_differ": diffs, "other_data_by_task": other_data,
        "commits": sorted(set(runs["commit"].dropna())) if "commit" in runs else [],
        "trained": f"{_day(starts.min())} to {_day(ends.max())}" if len(starts) and _day(starts.min()) != _day(ends.max()) else _day(starts.min()) if len(starts) else "date unknown",
    }


def header(paper: dict, runs: pd.DataFrame, meta: dict) -> list[str]:
    scale = meta["scale"]
    lines = [
        f"# {paper['id']}: {paper['title']}", "",
        f"*{paper['paper']}*, {paper['source']}. Scale **{scale}**; {run_minutes(runs):.1f} run-minutes (Σ over runs); {provenance(meta)}.", "",
    ]
    if paper.get("paper_settings"):
        lines += ["The paper's settings: " + "; ".join(f"{k}: {v}" for k, v in paper["paper_settings"].items()) + ".", ""]
    if paper.get("readings"):
        lines += ["Our readings where the paper cannot be run as printed:", "", *[f"- {r}" for r in paper["readings"]], ""]
    if meta["settings_that_differ"]:
        lines += [f"Settings that differ from the paper's at scale `{scale}`:", "", *[f"- {d}" for d in meta["settings_that_differ"]], ""]
    return lines


def paper_report(runs: pd.DataFrame, curves: pd.DataFrame, paper: dict, out_dir: Path, meta: dict) -> dict[str, Path]:
    # a table stored before the per-task record: its header's data swap stands for every row
    other_data = meta.get("other_data_by_task") or {"*": other_datasets(meta.get("settings_that_differ", []))}
    table = compare(runs, paper, curves, meta.get("steps_fraction"), other_data)
    claims = check_claims(table, paper)
    shown = display(table)
    tol = paper.get("tolerance", {})
    lines = header(paper, runs, meta)
    lines += [shown.to_markdown(index=False), "",
              f"Verdict: ✓ when |ours − paper| ≤ max({tol.get('abs', 0)}, {tol.get('rel', 0)} × paper) (this table's tolerance); "
              "a row that differs is reported as differing, never tuned on the test set.", ""]
    if claims:
        lines += ["## The paper's claims, on our numbers", "", pd.DataFrame(claims).to_markdown(index=False), ""]
    if paper.get("out_of_scope"):
        lines += ["## Not reproduced here", "", *[f"- **{o['label']}**: {o['reason']}" for o in paper["out_of_scope"]], ""]
    written = {"md": out_dir / "table.md", "csv": out_dir / "table.csv", "tex": out_dir / "table.tex", "status": out_dir / "status.json"}
    written["md"].write_text("\n".join(lines))
    table.to_csv(written["csv"], index=False, float_format="%.6g")
    written["tex"].write_text(shown.drop(columns=["source"]).to_latex(index=False, caption=f"{paper['title']} ({paper['source']})", label=f"tab:{paper['id']}"))
    ran = table[~table["verdict"].isin(["literature value", "not run", "ours only"])]
    written["status"].write_text(json.dumps({
        "scale": meta["scale"], "run_minutes": run_minutes(runs), "train_hours": round(float(runs["train_seconds"].fillna(0).sum()) / 3600, 2), "steps_fraction": meta["steps_fraction"],
        "other_data": sorted({d for ds in other_data.values() for d in ds}),
        "rows_matching": int((ran["verdict"] == "✓ matches").sum()), "rows_run": len(ran), "rows": len(table),
        "claims_holding": sum(c["holds"] == "✓" for c in claims), "claims_checked": sum(not c["holds"].startswith("—") for c in claims),
    }, indent=2))
    return written
