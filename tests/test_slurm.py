"""The cluster path, run through submitit's local executor: a job preempted mid-run (the signal
SLURM sends, forwarded by submitit's controller) is requeued, continues its own run folder from
its last checkpoint without resume=true, and ends with the metrics of an uninterrupted run."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
from submitit.core.job_environment import JobEnvironment  # noqa: E402

from memrepro.config import compose  # noqa: E402
from memrepro.run import run  # noqa: E402

SETTINGS = ["task=copy", "model=lstm", "model.hidden_size=16", "task.eval_lengths=[10]", "trainer.steps=1000",
            "trainer.eval_every=40", "trainer.checkpoint_every=40", "trainer.progress=false", "plots=false", "seed=3"]


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _rows(metrics: Path) -> int:
    return len(metrics.read_text().splitlines()) - 1 if metrics.exists() else 0


def test_preempted_submitit_job_is_requeued_and_resumes_its_own_run(tmp_path):
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "memrepro", "-m", "hydra/launcher=submitit_local", f"hydra.sweep.dir={sweep}", *SETTINGS]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    job = None
    while time.time() < deadline and proc.poll() is None:
        folders = [p for p in sweep.glob("*/metrics.csv")]
        if folders and 2 <= _rows(folders[0]) and (folders[0].parent / "checkpoint.pt").exists():
            job = next(p for p in (sweep / ".submitit").iterdir() if p.name.isdigit())
            for task in _children(int(job.name)):  # the job's process, under submitit's controller
                os.kill(task, JobEnvironment._usr_sig())
            break
        time.sleep(0.02)
    assert job is not None, "the job finished before it could be preempted"
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out
    run_dir = next(sweep.glob("*/metrics.csv")).parent
    logs = "".join(p.read_text() for p in job.glob("*_log.*"))
    assert "Caught signal SIGUSR2" in logs and "Requeued job" in logs, logs[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["job"] == job.name
    assert len(summary["resumed_at"]) == 1 and 0 < summary["resumed_at"][0] < 1000  # continued, not restarted

    reference = tmp_path / "uninterrupted"
    run(compose(SETTINGS), reference)
    assert (run_dir / "metrics.csv").read_text() == (reference / "metrics.csv").read_text()
