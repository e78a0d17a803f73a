"""The run folder: every file is written atomically (temp file + rename), so a crash or a kill at any
moment leaves either the previous good file or the new one, never a torn one.

    <run_dir>/
      .hydra/          Hydra's own record of the composed config and overrides
      metrics.csv      one row per evaluation (deterministic: same seed -> identical file)
      timing.csv       wall-clock time per evaluation row (kept apart so metrics.csv is reproducible)
      summary.json     status, final/best metrics, parameter count, throughput, settings
      checkpoint.pt    model, optimizer, scheduler, curriculum, RNG states, metrics log
      curves.png       training curves (+ model-specific figures)
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from memrepro.errors import CheckpointError, ConfigError

METRICS, TIMING, SUMMARY, CHECKPOINT, CURVES = "metrics.csv", "timing.csv", "summary.json", "checkpoint.pt", "curves.png"


_UMASK = os.umask(0)
os.umask(_UMASK)


def _atomic(path: Path, write) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, default=_jsonable)
            f.write("\n")

    _atomic(path, write)


def _jsonable(x):
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def write_csv(path: Path, rows: list[dict]) -> None:
    _atomic(path, lambda tmp: pd.DataFrame(rows).to_csv(tmp, index=False, float_format="%.6g"))


def save_checkpoint(path: Path, state: dict) -> None:
    _atomic(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path) -> dict:
    if not Path(path).exists():
        raise CheckpointError(f"no checkpoint at {path}: nothing to resume (run without resume=true to start afresh)")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many types for a corrupt file; all mean the same to the user
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(e).__name__}): delete it to start afresh") from None


def read_summary(run_dir: Path) -> dict | None:
    path = Path(run_dir) / SUMMARY
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def failed_without_checkpoint(run_dir: Path) -> bool:
    """A run that failed before it wrote a checkpoint: nothing in its folder is worth keeping."""
    summary = read_summary(run_dir)
    return summary is not None and summary.get("status") == "failed" and not (run_dir / CHECKPOINT).exists()


def prepare_run_dir(run_dir: Path, resume: bool) -> Path:
    """Check that ``run_dir`` can take this run before any training starts.

    A folder that already holds a run is never written into unless resuming it; an unwritable
    location fails here, with the path, rather than after an hour of training.
    """
    run_dir = Path(run_dir)
    has_run = (run_dir / SUMMARY).exists() or (run_dir / CHECKPOINT).exists()
    if not resume and has_run and failed_without_checkpoint(run_dir):
        has_run = False  # nothing to continue: a fresh start replaces the failed attempt's files
    if resume and not has_run:
        raise ConfigError(f"resume=true but {run_dir} holds no run: give run_dir=<an existing run folder>")
    if not resume and has_run:
        raise ConfigError(f"{run_dir} already holds a run: pass resume=true to continue it, or choose another run_dir")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=run_dir, prefix=".write-test.")
        probe.close()
    except OSError as e:
        raise ConfigError(f"run_dir={run_dir}: cannot write there ({e.strerror}); choose a writable run_dir") from None
    return run_dir
