"""The command line as a user meets it: a run folder, reproducibility, resume after SIGKILL, help,
and one-line errors that leave earlier output alone."""
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from conftest import REPO, SMOKE, assert_one_line_error, run_cli

COPY = ["model=lstm", "task=copy", "model.hidden_size=16", "task.lengths=[1,4]", "task.eval_lengths=[6]"]


def snapshot(folder):
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("cli")
    proc = run_cli([*COPY, *SMOKE, "plots=true", "run_dir=outputs/first"], cwd)
    assert proc.returncode == 0, proc.stderr
    return cwd, cwd / "outputs/first", proc


def test_run_writes_the_run_folder_and_says_where(finished_run):
    cwd, run_dir, proc = finished_run
    for name in [".hydra/config.yaml", "metrics.csv", "timing.csv", "summary.json", "curves.png", "checkpoint.pt"]:
        assert (run_dir / name).exists(), name
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["model"] == "lstm" and summary["task"] == "copy"
    assert summary["parameters"] > 0 and "eval_bit_errors" in summary["final"] and "len6_bit_errors" in summary["final"]
    assert str(run_dir / "curves.png").split("outputs/")[-1] in proc.stdout
    # an LSTM has no memory to draw, and one evaluation length makes no length curve
    assert summary["figures"] == ["curves.png"]
    assert summary["commit"] == "unknown" or all(c in "0123456789abcdef" for c in summary["commit"])  # the code's provenance


def test_same_seed_gives_identical_metrics(finished_run, tmp_path):
    _, first, _ = finished_run
    proc = run_cli([*COPY, *SMOKE, f"run_dir={tmp_path / 'again'}"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "again/metrics.csv").read_text() == (first / "metrics.csv").read_text()


def test_sigkill_then_resume_ends_with_the_same_metrics(tmp_path):
    args = [*COPY, "scale=smoke", "trainer.progress=false", "plots=false", "threads=1", "trainer.steps=400", "trainer.eval_every=40", "trainer.checkpoint_every=20"]
    full = run_cli([*args, f"run_dir={tmp_path / 'full'}"], tmp_path)
    assert full.returncode == 0, full.stderr
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    victim = subprocess.Popen([sys.executable, "-m", "memrepro", *args, f"run_dir={tmp_path / 'killed'}"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = tmp_path / "killed/metrics.csv"
    deadline = time.time() + 120
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 4):
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    rows_at_kill = len(pd.read_csv(metrics))
    assert 3 <= rows_at_kill < 10, "the run must be killed mid-way"
    resumed = run_cli([*args, f"run_dir={tmp_path / 'killed'}", "resume=true"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert metrics.read_text() == (tmp_path / "full/metrics.csv").read_text()
    assert json.loads((tmp_path / "killed/summary.json").read_text())["final"] == json.loads((tmp_path / "full/summary.json").read_text())["final"]


def test_sigterm_marks_the_run_interrupted_in_one_line(tmp_path):
    """A scheduler's SIGTERM (preemption) ends the run as Ctrl-C does: summary "interrupted", a
    one-line message naming resume, no traceback."""
    args = [*COPY, "scale=smoke", "trainer.progress=false", "plots=false", "threads=1", "trainer.steps=100000", "trainer.eval_every=40"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    victim = subprocess.Popen([sys.executable, "-m", "memrepro", *args, f"run_dir={tmp_path / 'run'}"], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "run/metrics.csv"
    deadline = time.time() + 120
    while time.time() < deadline and not metrics.exists():
        time.sleep(0.05)
    victim.send_signal(signal.SIGTERM)
    _, err = victim.communicate(timeout=60)
    assert victim.returncode == 130 and "Traceback" not in err and "resume=true" in err and len(err.strip().splitlines()) == 1, err
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    assert summary["status"] == "interrupted" and "SIGTERM" in summary["error"]


def test_help_lists_groups_and_options(tmp_path):
    proc = run_cli(["--help"], tmp_path)
    assert proc.returncode == 0
    for word in ["model:", "task:", "trainer:", "scale:", "lstm", "copy", "smoke", "memrepro -m"]:
        assert word in proc.stdout, word


@pytest.mark.parametrize("args, words", [
    (["model=lstmm"], ["unknown model 'lstmm'", "lstm", "rnn"]),
    (["task=copi"], ["unknown task 'copi'", "copy"]),
    (["-m", "model=rnn,foo"], ["unknown model 'foo'"]),
    (["task=copy", "task.lengths=[-3,5]"], ["task.lengths", "-3"]),
    (["model.hidden_size=0"], ["model.hidden_size=0"]),
    (["task=add", "task.splits=[1.0,0.0,0.0]"], ["split", "empty"]),
    (["model.hidden_size=abc"], ["model.hidden_size", "abc"]),
    (["model.hiden_size=4"], ["model.hiden_size"]),
    (["trainer.batch_size=-2"], ["trainer.batch_size"]),
    (["scale=huge"], ["unknown scale 'huge'"]),
])
def test_bad_input_is_one_line_and_touches_nothing(finished_run, args, words):
    cwd, run_dir, _ = finished_run
    before = snapshot(cwd / "outputs")
    proc = run_cli([*args, *SMOKE], cwd)
    assert_one_line_error(proc, *words)
    assert snapshot(cwd / "outputs") == before


def test_an_existing_run_is_never_overwritten(finished_run):
    cwd, run_dir, _ = finished_run
    before = snapshot(run_dir)
    assert_one_line_error(run_cli([*COPY, *SMOKE, f"run_dir={run_dir}"], cwd), "already holds a run", "resume=true")
    assert snapshot(run_dir) == before


def test_a_failed_run_without_checkpoint_does_not_block_a_fresh_start(tmp_path):
    from memrepro.errors import ConfigError
    from memrepro.results import io

    io.write_json(tmp_path / io.SUMMARY, {"status": "failed", "error": "slice indices must be integers"})
    assert io.prepare_run_dir(tmp_path, resume=False) == tmp_path
    (tmp_path / io.CHECKPOINT).write_bytes(b"a checkpoint is worth continuing")
    with pytest.raises(ConfigError, match="already holds a run"):
        io.prepare_run_dir(tmp_path, resume=False)


def test_resume_with_other_settings_is_refused(finished_run):
    cwd, run_dir, _ = finished_run
    before = snapshot(run_dir)
    proc = run_cli([*COPY, *SMOKE, "model.hidden_size=32", f"run_dir={run_dir}", "resume=true"], cwd)
    assert_one_line_error(proc, "differ", "model.hidden_size")
    assert snapshot(run_dir) == before


def test_each_run_gets_its_own_folder_under_outputs(tmp_path):
    for _ in range(2):
        assert run_cli([*COPY, *SMOKE, "trainer.steps=2"], tmp_path).returncode == 0
    folders = sorted((tmp_path / "outputs/runs").iterdir())
    assert len(folders) == 2 and all(f.name.endswith("_lstm_copy") and (f / "summary.json").exists() for f in folders)


def test_a_failing_figure_leaves_the_run_completed(tmp_path, monkeypatch, capsys):
    from conftest import smoke_cfg
    from memrepro.results import plots
    from memrepro.run import run

    def broken(*args):
        raise ValueError("no display")

    monkeypatch.setattr(plots, "plot_run", broken)
    summary = run(smoke_cfg(*COPY, "plots=true"), tmp_path)
    assert summary["status"] == "completed" and summary["figures_error"] == "ValueError: no display"
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "completed"
    assert "its figures failed" in capsys.readouterr().err
