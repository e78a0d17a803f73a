"""`run(cfg, run_dir)`: build task, model and trainer from a composed config, train, and write the
run folder. Hydra-free (the CLI composes the config), so tests and notebooks call it directly."""
from __future__ import annotations

import platform
import time
import traceback
from pathlib import Path

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from memrepro.errors import ConfigError, MemreproError
from memrepro.results import io

# settings that do not change what is computed: excluded when comparing a resumed run's config
RUNTIME_KEYS = ("resume", "run_dir", "device", "threads", "plots")
CONFIG = "config.yaml"  # the resolved config of a run, which a resume must match


def build(cfg: DictConfig, seed: int | None = None):
    """Instantiate task, model (seeded) and trainer; constructor errors become one-line ConfigErrors."""
    seed = cfg.seed if seed is None else seed
    task = _instantiate(cfg.task, "task")
    torch.manual_seed(seed)
    model = _instantiate(cfg.model, "model", input_size=task.input_size, output_size=task.output_size)
    trainer = _instantiate(cfg.trainer, "trainer")
    return task, model, trainer


def _instantiate(node: DictConfig, group: str, **kwargs):
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, MemreproError):
            raise cause from None
        if isinstance(cause, TypeError) and "argument" in str(cause):
            # e.g. "__init__() got an unexpected keyword argument 'hidden'": a misspelt setting
            raise ConfigError(f"{group}: {str(cause).split('() ', 1)[-1]} (see `memrepro {group}=<name> --cfg job` for its settings)") from None
        raise ConfigError(f"{group}: {str(cause or e).splitlines()[0]}") from None


def check_runtime(cfg: DictConfig) -> torch.device:
    """The run-level settings: seed, threads and an available device."""
    for name, minimum in (("seed", 0), ("threads", 0)):
        value = cfg[name]
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ConfigError(f"{name}={value!r}: must be an integer ≥ {minimum}")
    try:
        device = torch.device(cfg.device)
        torch.empty(1, device=device)
    except (RuntimeError, AssertionError) as e:
        raise ConfigError(f"device={cfg.device!r} is not available here ({str(e).splitlines()[0]}); use device=cpu") from None
    return device


def run(cfg: DictConfig, run_dir: str | Path, meta: dict | None = None) -> dict:
    """Train one configuration into ``run_dir``; returns the summary also written to summary.json.

    ``meta`` carries what only the CLI knows (the chosen config names, the overrides).
    """
    run_dir = io.prepare_run_dir(Path(run_dir), cfg.resume)
    device = check_runtime(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    started = time.time()
    summary = {
        "status": "running",
        **(meta or {}),
        "seed": cfg.seed,
        "scale": cfg.scale.name,
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "started_at": started,
        "host": {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(), "device": str(device)},
    }
    try:
        task, model, trainer = build(cfg)
        summary.setdefault("model", type(model).__name__.lower())
        summary.setdefault("task", type(task).__name__.lower())
        summary.update(parameters=model.num_parameters(), model_class=type(model).__name__, task_class=type(task).__name__,
                       input_size=task.input_size, output_size=task.output_size, output_kind=task.output_kind)
        if cfg.resume:
            check_resume_config(cfg, run_dir)
        else:
            OmegaConf.save(resolved_config(cfg), run_dir / CONFIG)
        io.write_json(run_dir / io.SUMMARY, summary)
        summary.update(trainer.fit(model, task, run_dir, seed=cfg.seed, resume=cfg.resume, device=device))
        summary["status"] = "completed" if not summary.get("solved_at") else "solved"
    except BaseException as e:
        summary["status"] = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
        summary["error"] = str(e) if isinstance(e, MemreproError) else traceback.format_exception_only(type(e), e)[-1].strip()
        io.write_json(run_dir / io.SUMMARY, summary)
        raise
    summary["wall_seconds"] = round(time.time() - started, 2)
    io.write_json(run_dir / io.SUMMARY, summary)
    if cfg.plots:
        from memrepro.results.plots import plot_run  # matplotlib only when plotting

        summary["figures"] = plot_run(run_dir, model, task, trainer)
        io.write_json(run_dir / io.SUMMARY, summary)
    return summary


def resolved_config(cfg: DictConfig) -> dict:
    """The config as plain data, without the settings that do not change what is computed."""
    config = OmegaConf.to_container(cfg, resolve=True)
    for key in RUNTIME_KEYS:
        config.pop(key, None)
    config.get("trainer", {}).pop("progress", None)
    return config


def check_resume_config(cfg: DictConfig, run_dir: Path) -> None:
    """A run resumes only with the settings it started with; anything else would mix two runs."""
    config_file = run_dir / CONFIG
    if config_file.exists():
        before, now = OmegaConf.to_container(OmegaConf.load(config_file)), resolved_config(cfg)
        if before != now:
            changed = sorted(_diff(before, now))
            raise ConfigError(f"resume=true with settings that differ from the run's own ({', '.join(changed[:5])}): resume with the same overrides")


def _diff(a, b, prefix="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _diff(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [prefix.rstrip(".")] if a != b else []
