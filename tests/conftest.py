import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from memrepro.config import compose

REPO = Path(__file__).resolve().parent.parent
SMOKE = ["scale=smoke", "trainer.progress=false", "plots=false", "threads=1"]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # small models: threads only add overhead, and CI has 2 cores


def run_cli(args: list[str], cwd: Path, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """`memrepro <args>` in a subprocess, as a user would type it."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, "-m", "memrepro", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, **kwargs)


def smoke_cfg(*overrides: str):
    return compose([*SMOKE, *overrides])


def assert_one_line_error(proc: subprocess.CompletedProcess, *words: str) -> str:
    """A user error: exit code != 0, no traceback, one line on stderr naming the problem."""
    assert proc.returncode != 0, proc.stdout
    err = proc.stderr.strip()
    assert "Traceback" not in err and "Traceback" not in proc.stdout, err
    assert len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, (w, err)
    return err
