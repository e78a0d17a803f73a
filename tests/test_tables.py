"""A paper table end to end at smoke scale: sweep -> report -> table with the paper column, verdicts
and claims; the index page; the SLURM preset and the submitit_local launcher."""
import json
import time

import pandas as pd
import pytest

from conftest import run_cli
from memrepro.config import compose
from memrepro.results.report import index, report
from memrepro.results.tables import load_paper

FAST = ["scale=smoke", "trainer.progress=false", "plots=false", "threads=1"]


@pytest.fixture(scope="module")
def fig10(tmp_path_factory):
    root = tmp_path_factory.mktemp("tables")
    runs = root / "nmn-fig10/smoke/runs"
    # trainer.clip_norm: a setting given on the command line, which the header must list
    proc = run_cli(["-m", "experiment=nmn_fig10", *FAST, "trainer.clip_norm=5", f"hydra.sweep.dir={runs}"], root)
    assert proc.returncode == 0, proc.stderr
    return root, report(runs, root / "nmn-fig10/smoke", store_dir=root / "results/nmn-fig10/smoke")


def test_table_has_the_paper_column_and_verdicts(fig10):
    _, written = fig10
    table = pd.read_csv(written["csv"])
    paper = load_paper("nmn-fig10")
    assert list(table["row"]) == [r["label"] for r in paper["rows"]]
    assert list(table["paper"]) == [r["value"] for r in paper["rows"]]
    assert (table["n"] == 3).all()
    for _, row in table.iterrows():  # the verdict follows the table's tolerance
        within = abs(row["ours_mean"] - row["paper"]) <= paper["tolerance"]["abs"]
        assert row["verdict"] == ("✓ matches" if within else "✗ differs")
    md = written["md"].read_text()
    assert "Scale **smoke**" in md and "Settings that differ" in md and "`trainer.epochs`" in md
    assert "`trainer.clip_norm` = 5 (paper scale: 10.0)" in md
    assert "trained at commit `" in md  # the runs' own commit and date, recorded in their summaries
    assert time.strftime("%Y-%m-%d", time.gmtime()) in md
    assert "NMN long-term error < RNN long-term error" in md
    assert written["tex"].read_text().startswith("\\begin{table}")
    status = json.loads(written["status"].read_text())
    assert status["rows_run"] == 4 and status["claims_checked"] == 2


def test_index_lists_every_paper_table(fig10, tmp_path):
    root, written = fig10
    page = index(root / "results", doc=tmp_path / "REPRODUCTION.md").read_text()
    assert "| nmn-fig10" in page and "not run yet (its estimated wall time is in conf/experiment/smann_1.yaml): `make table-smann-1`" in page
    assert (tmp_path / "REPRODUCTION.md").read_text() == page
    # the smoke runs' measured time per update, scaled to the paper's updates
    assert "paper scale not run: ≈" in page and "from the smoke runs' time per update" in page


def test_the_results_store_alone_regenerates_the_table(fig10, tmp_path):
    """Once stored, the table needs no run folder: the same table.md from runs.csv/curves.csv."""
    root, written = fig10
    copy = tmp_path / "results/nmn-fig10/smoke"
    copy.mkdir(parents=True)
    for name in ("runs.csv", "curves.csv", "meta.json"):
        (copy / name).write_bytes((written["store"] / name).read_bytes())
    index(tmp_path / "results")
    assert (copy / "table.md").read_text() == written["md"].read_text()
    # the store keeps 9 significant digits
    pd.testing.assert_frame_equal(pd.read_csv(copy / "table.csv"), pd.read_csv(written["csv"]), rtol=1e-5)


def test_slurm_preset_composes():
    cfg = compose(["hydra/launcher=slurm"], with_hydra=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher") and cfg.hydra.launcher.cpus_per_task == 2


def test_submitit_local_launcher_runs_a_sweep(tmp_path):
    args = ["-m", "model=rnn,lstm", "task=copy", "model.hidden_size=8", "task.lengths=[1,3]", "task.eval_lengths=[4]", *FAST,
            "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5", "hydra.sweep.dir=s"]
    proc = run_cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    statuses = sorted(json.loads(p.read_text())["status"] for p in (tmp_path / "s").rglob("summary.json"))
    assert statuses == ["completed", "completed"]
