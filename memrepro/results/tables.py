"""A paper's table beside ours: per row of `memrepro/papers/<id>.yaml`, our mean ± std over seeds,
the paper's value, the difference and a verdict (tolerance from the yaml); the paper's qualitative
claims checked on our numbers; a header with the scale, the settings that differ from the paper's,
wall time, commit and date."""
from __future__ import annotations

import json
import math
import operator
import time
from pathlib import Path

import pandas as pd
import yaml
from omegaconf import OmegaConf

from memrepro.config import RUNTIME_KEYS, code_commit
from memrepro.errors import MemreproError

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


def row_values(runs: pd.DataFrame, row: dict) -> pd.Series:
    """Our values of a paper row's metric, one per finished seed."""
    if row.get("model") is None or runs.empty:
        return pd.Series(dtype=float)
    wanted = {**(row.get("variant") or {}), **(row.get("task_variant") or {})}
    sel = runs[(runs["model"] == row["model"]) & (runs["task"] == row["task"]) & runs["status"].isin(["completed", "solved"])]
    sel = sel[[_matches(o, wanted) for o in sel["overrides"]]]
    if row["metric"] not in sel:
        return pd.Series(dtype=float)
    return sel[row["metric"]].dropna()


def verdict(ours: float, paper: float, tolerance: dict) -> str:
    if math.isnan(ours):
        return "not run"
    if paper is None:
        return "ours only"
    allowed = max(tolerance.get("abs", 0.0), tolerance.get("rel", 0.0) * abs(paper))
    return "✓ matches" if abs(ours - paper) <= allowed else "✗ differs"


def likely_reason(row: dict, scale: str) -> str:
    """Why a row differs: the paper yaml's own note for it, else the scale's reduced budget."""
    if row.get("note"):
        return row["note"]
    if row.get("metric") == "parameters":  # a count does not depend on the training budget
        return "architectural details the source does not give (the model's docs page compares the counts)"
    return f"scale {scale}: budgets below the paper's (settings above)" if scale != "paper" else "see docs/papers.md"


def compare(runs: pd.DataFrame, paper: dict, scale: str = "paper") -> pd.DataFrame:
    """One row per paper row: ours (mean, std, n), the paper's value, difference, verdict, and
    for a row that differs its likely reason."""
    out = []
    tol = paper.get("tolerance", {})
    for row in paper["rows"]:
        values = row_values(runs, row)
        mean = values.mean() if len(values) else math.nan
        std = values.std(ddof=1) if len(values) > 1 else math.nan
        literature = row.get("model") is None
        out.append({
            "row": row["label"],
            "task": row.get("task") or "—",
            "metric": row.get("metric"),
            "ours_mean": mean, "ours_std": std, "n": len(values),
            "paper": row.get("value"), "paper_std": row.get("std"),
            "diff": mean - row["value"] if row.get("value") is not None and not math.isnan(mean) else math.nan,
            "verdict": (v := "literature value" if literature else verdict(mean, row.get("value"), tol)),
            "likely reason": likely_reason(row, scale) if v == "✗ differs" else "",
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
    return pd.DataFrame({
        "row": table["row"], "task": table["task"], "metric": table["metric"],
        "ours (mean ± std)": [_fmt(m, s, n) for m, s, n in zip(table["ours_mean"], table["ours_std"], table["n"])],
        "n": table["n"], "paper": paper_col,
        "diff": ["—" if pd.isna(d) else _num(d, "+") for d in table["diff"]],
        "verdict": table["verdict"], "likely reason": table["likely reason"], "source": table["source"],
    })


# overrides that do not change what is computed (identity, bookkeeping, speed), left out of the comparison
NOT_SETTINGS = ("seed", "scale", "experiment", "trainer.progress", "trainer.parallel_seeds", *RUNTIME_KEYS)


def settings_that_differ(experiment: str, scale: str, ours: list[str], paper_cell: list[str]) -> list[str]:
    """The settings of one of our runs (its overrides ``ours`` at ``scale``) that differ from the
    paper-scale composition of the experiment with the same cell (``paper_cell``: the sweep's own
    choices, without the extra settings given on the command line)."""
    from memrepro.config import compose

    def flat(overrides, s):
        cfg = compose([f"experiment={experiment}", *overrides, f"scale={s}"])
        return pd.json_normalize(OmegaConf.to_container(cfg, resolve=True), sep=".").iloc[0].to_dict()

    ours, paper = flat(ours, scale), flat(paper_cell, "paper")
    return [f"`{k}` = {ours.get(k)!r} (paper scale: {paper.get(k)!r})" for k in sorted(set(ours) | set(paper)) if k not in ("scale.name", "scale.data", "scale.steps", "scale.eval") and ours.get(k) != paper.get(k)]


def provenance(runs: pd.DataFrame) -> str:
    """The commit(s) the runs were trained at (recorded in their summaries), else the report's."""
    known = sorted(set(runs["commit"].dropna())) if "commit" in runs else []
    if known:
        return "trained at commit " + ", ".join(f"`{c}`" for c in known)
    return f"report at commit `{code_commit()}` (the runs predate commit records)"


def wall_time(runs: pd.DataFrame) -> float:
    """Seconds from the first run's start to the last run's end (the sweep's wall time)."""
    if "started_at" not in runs or runs["started_at"].isna().all():
        return math.nan
    return float((runs["started_at"] + runs["wall_seconds"].fillna(0)).max() - runs["started_at"].min())


def header(paper: dict, runs: pd.DataFrame, scale: str, experiment: str | None) -> list[str]:
    lines = [
        f"# {paper['id']}: {paper['title']}", "",
        f"*{paper['paper']}*, {paper['source']}. Scale **{scale}**; wall time {wall_time(runs) / 60:.1f} min; "
        f"{provenance(runs)}; {time.strftime('%Y-%m-%d')}.", "",
    ]
    if paper.get("paper_settings"):
        lines += ["The paper's settings: " + "; ".join(f"{k}: {v}" for k, v in paper["paper_settings"].items()) + ".", ""]
    if experiment:
        ours = [o for o in runs["overrides"].iloc[0] if o.split("=", 1)[0].lstrip("+") not in NOT_SETTINGS]
        # an override shared by every run and not a cell choice was given on the command line
        given = set.intersection(*(set(o) for o in runs["overrides"])) if len(runs) > 1 else set()
        paper_cell = [o for o in ours if o not in given or o.lstrip("+").startswith("experiment/")]
        diffs = settings_that_differ(experiment, scale, ours, paper_cell)
        if diffs:
            lines += [f"Settings that differ from the paper's at scale `{scale}`:", "", *[f"- {d}" for d in diffs], ""]
    return lines


def paper_report(runs: pd.DataFrame, paper: dict, out_dir: Path, scale: str, experiment: str | None) -> dict[str, Path]:
    table = compare(runs, paper, scale)
    claims = check_claims(table, paper)
    shown = display(table)
    tol = paper.get("tolerance", {})
    lines = header(paper, runs, scale, experiment)
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
    ran = table[~table["verdict"].isin(["literature value", "not run"])]
    written["status"].write_text(json.dumps({
        "scale": scale, "wall_minutes": round(wall_time(runs) / 60, 1),
        "rows_matching": int((ran["verdict"] == "✓ matches").sum()), "rows_run": len(ran), "rows": len(table),
        "claims_holding": sum(c["holds"] == "✓" for c in claims), "claims_checked": sum(not c["holds"].startswith("—") for c in claims),
    }, indent=2))
    return written
