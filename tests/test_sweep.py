"""A sweep end to end: jobs, a failing job isolated, the report's table and figure, and a resumed
sweep that re-runs only what did not finish."""
import json
import shutil

import pandas as pd
import pytest

from conftest import SMOKE, run_cli
from memrepro.results.report import main as report_main, report

SWEEP = ["-m", "task=copy", "task.lengths=[1,4]", "task.eval_lengths=[6]", *SMOKE]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("sweep")
    proc = run_cli([*SWEEP, "model=rnn,lstm", "model.hidden_size=16", "seed=0,1", "hydra.sweep.dir=sweep"], cwd)
    assert proc.returncode == 0, proc.stderr
    return cwd / "sweep"


def test_report_has_one_row_per_model_with_mean_and_std(sweep):
    written = report(sweep)
    table = pd.read_csv(written["cells_csv"])
    assert sorted(table["cell"]) == ["lstm", "rnn"] and list(table["n"]) == [2, 2]
    runs = [json.loads(p.read_text()) for p in sweep.rglob("summary.json")]
    lstm = [r["final"]["eval_bit_errors"] for r in runs if r["model"] == "lstm"]
    row = table[table["cell"] == "lstm"].iloc[0]
    assert row["eval_bit_errors_mean"] == pytest.approx(sum(lstm) / 2, rel=1e-5)
    assert row["eval_bit_errors_std"] == pytest.approx(pd.Series(lstm).std(), rel=1e-4, abs=1e-9)
    assert row["parameters"] == next(r["parameters"] for r in runs if r["model"] == "lstm")
    md = written["cells_md"].read_text()
    assert "±" in md and "| lstm" in md and written["figure"].stat().st_size > 10_000


def test_failing_job_is_recorded_and_the_rest_finish(tmp_path):
    # hidden_size=0 fails at construction in its job only; the other job finishes, then the sweep exits 1
    proc = run_cli([*SWEEP, "model=lstm", "model.hidden_size=8,0", "hydra.sweep.dir=s"], tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "failed: model.hidden_size=0" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("memrepro: 1 job(s) of the sweep failed")
    statuses = {p.parent.name: json.loads(p.read_text())["status"] for p in (tmp_path / "s").rglob("summary.json")}
    assert sorted(statuses.values()) == ["completed", "failed"]
    md = report(tmp_path / "s")["cells_md"].read_text()
    assert "did not finish" in md and "model.hidden_size=0" in md

    # resume=true re-runs only the unfinished job
    done = next(tmp_path.glob("s/*hidden_size=8*/metrics.csv"))
    mtime = done.stat().st_mtime_ns
    again = run_cli([*SWEEP, "model=lstm", "model.hidden_size=8,0", "hydra.sweep.dir=s", "resume=true"], tmp_path)
    assert "finished already; skipped" in again.stdout and done.stat().st_mtime_ns == mtime


def _corrupt_copy(sweep, dest):
    shutil.copytree(sweep, dest)
    for p in dest.rglob("summary.json"):
        p.write_text("{truncated")
    return dest


@pytest.mark.parametrize("case, words", [
    ("misspelt metric", ["--metric eval_bit_error:", "eval_bit_errors"]),
    ("out under a file", ["--out", "cannot create it"]),
    ("every summary corrupt", ["every summary.json", "unreadable (4 runs)"]),
])
def test_report_errors_are_one_line_and_exit_2(sweep, tmp_path, capsys, case, words):
    (tmp_path / "afile").write_text("in the way")
    args = {
        "misspelt metric": [str(sweep), "--metric", "eval_bit_error", "--out", str(tmp_path / "out")],
        "out under a file": [str(sweep), "--out", str(tmp_path / "afile/out")],
        "every summary corrupt": [str(_corrupt_copy(sweep, tmp_path / "corrupt")), "--out", str(tmp_path / "out")],
    }[case]
    with pytest.raises(SystemExit) as exit_info:
        report_main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("memrepro-report: error: ") and all(w in err for w in words), err
    assert not (tmp_path / "out").exists()
