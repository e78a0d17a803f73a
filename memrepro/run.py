"""`run(cfg, run_dir)`: build task, model and trainer from a composed config, train, and write the
run folder. Hydra-free (the CLI composes the config), so tests and notebooks call it directly."""
from __future__ import annotations

import platform
import sys
import time
import traceback
import types
import typing
from pathlib import Path
from typing import Callable

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from memrepro.config import RUNTIME_KEYS, code_commit
from memrepro.errors import ConfigError, MemreproError
from memrepro.results import io
from memrepro.train.compiled import compile_training_step
from memrepro.train.parallel import Lane, fit_parallel

CONFIG = "config.yaml"  # the resolved config of a run, which a resume must match


def build(cfg: DictConfig, seed: int | None = None):
    """Instantiate task, model (seeded) and trainer; constructor errors become one-line ConfigErrors."""
    seed = cfg.seed if seed is None else seed
    task = _instantiate(cfg.task, "task")
    torch.manual_seed(seed)
    model = _instantiate(cfg.model, "model", input_size=task.input_size, output_size=task.output_size)
    trainer = _instantiate(cfg.trainer, "trainer")
    return task, model, trainer


def _numeric_type(hint) -> type | None:
    """int or float where an annotation is one of them (or it or None), else None."""
    if hint in (int, float):
        return hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 and args[0] in (int, float) else None
    return None


def check_types(node: DictConfig, group: str) -> None:
    """Every setting that its constructor annotates ``int`` or ``float`` has that type: one check,
    before the constructor runs, for every model, task and trainer (2.5 layers, lr='abc')."""
    try:
        target = get_object(node._target_)
        hints = typing.get_type_hints(target.__init__ if isinstance(target, type) else target)
    except Exception:
        return  # an unknown target is reported by instantiate
    for key, value in node.items():
        want = _numeric_type(hints.get(key))
        if want is None or value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int if want is int else (int, float)):
            raise ConfigError(f"{group}.{key}={value!r}: must be {'an integer' if want is int else 'a number'}")


def _instantiate(node: DictConfig, group: str, **kwargs):
    check_types(node, group)
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
    """The run-level settings: seed, threads, compile and an available device."""
    for name, minimum in (("seed", 0), ("threads", 0), ("compile_steps", 1)):
        value = cfg[name]
        if name == "compile_steps" and value is None:  # the model's own (SequenceModel.compile_steps)
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ConfigError(f"{name}={value!r}: must be an integer ≥ {minimum}")
    if not isinstance(cfg.compile, bool):
        raise ConfigError(f"compile={cfg.compile!r}: must be true or false")
    if cfg.compile and cfg.trainer.get("parallel_seeds", 1) > 1:
        raise ConfigError(f"compile=true with trainer.parallel_seeds={cfg.trainer.parallel_seeds}: the compiled step cannot take stacked seeds; choose one of the two")
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
    if cfg.trainer.get("parallel_seeds", 1) > 1:
        raise ConfigError(f"trainer.parallel_seeds={cfg.trainer.parallel_seeds}: several runs; call run_seeds, which returns their summaries")
    return run_seeds(cfg, run_dir, meta)[0]


def run_seeds(cfg: DictConfig, run_dir: str | Path, meta: dict | None = None, job_mode: Callable | None = None) -> list[dict]:
    """Train the seeds ``seed`` … ``seed + k - 1`` (k = ``trainer.parallel_seeds``) in this process
    and return their summaries. With k = 1 the run folder is ``run_dir`` itself; with k > 1 each
    seed gets ``run_dir/seed=<s>/``, a run folder like that of a separate run of that seed, and the
    seeds train in lockstep (`memrepro.train.parallel`).

    ``job_mode(cfg, folder)`` (sweeps) may change a seed's config for its folder (resume or not) or
    return None to leave a finished run alone. Errors are recorded in each summary.json; a seed's
    own error (e.g. a non-finite loss) is raised after the other seeds have finished.
    """
    k = cfg.trainer.get("parallel_seeds", 1)
    seeds = [c.seed for c, _ in seed_runs(cfg, run_dir)]
    device = check_runtime(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    summaries, records = {}, []
    for seed_cfg, folder in seed_runs(cfg, run_dir):
        seed = seed_cfg.seed
        if job_mode is not None:
            seed_cfg = job_mode(seed_cfg, folder)
            if seed_cfg is None:
                summaries[seed] = io.read_summary(folder)
                continue
        records.append(RunRecord(seed_cfg, folder, _seed_meta(meta, seed) if k > 1 else meta, device))
    for r in records:
        r.build()
    try:
        if k == 1 and records:
            r = records[0]
            r.result = r.trainer.fit(r.model, r.task, r.run_dir, seed=r.cfg.seed, resume=r.cfg.resume, device=device)
        elif records:
            lanes = [Lane(r.trainer, r.model, r.task, r.run_dir, r.cfg.seed, r.cfg.resume) for r in records]
            forward = fit_parallel(lanes, device, progress=cfg.trainer.progress)
            for r, lane in zip(records, lanes):
                r.result, r.error = lane.result, lane.error
                r.summary["parallel"] = {"seeds": seeds, "strategy": forward.strategy, "not_used": forward.notes}
    except BaseException as e:
        for r in records:
            if r.result is None:
                r.fail(e)
        raise
    for r in records:
        if r.error is not None:
            r.fail(r.error)
        else:
            summaries[r.cfg.seed] = r.finish()
    errors = [r for r in records if r.error is not None]
    if errors:
        first = errors[0]
        raise type(first.error)(f"seed={first.cfg.seed}: {first.error}" if k > 1 else str(first.error))
    return [summaries[s] for s in seeds]


def seed_runs(cfg: DictConfig, run_dir: str | Path) -> list[tuple[DictConfig, Path]]:
    """Each seed's config and run folder: ``run_dir`` itself for one seed, ``run_dir/seed=<s>``
    for each of ``trainer.parallel_seeds`` > 1."""
    k = cfg.trainer.get("parallel_seeds", 1)
    if k == 1:
        return [(cfg, Path(run_dir))]
    return [(with_values(cfg, seed=s), Path(run_dir) / f"seed={s}") for s in range(cfg.seed, cfg.seed + k)]


class RunRecord:
    """One run folder through a run's life: summary.json opened, the run built, then finished
    (metrics, wall time, figures) or failed (status and error)."""

    def __init__(self, cfg: DictConfig, run_dir: Path, meta: dict | None, device: torch.device):
        self.cfg, self.run_dir = cfg, io.prepare_run_dir(run_dir, cfg.resume)
        self.result, self.error = None, None
        self.started = time.time()
        self.summary = {
            "status": "running",
            **(meta or {}),
            "seed": cfg.seed,
            "scale": cfg.scale.name,
            "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started)),
            "started_at": self.started,
            "commit": code_commit(),
            "host": {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(), "device": str(device)},
        }

    def build(self) -> None:
        cfg, summary = self.cfg, self.summary
        try:
            self.task, self.model, self.trainer = build(cfg)
            if cfg.compile:
                summary["compiled"] = compile_training_step(self.model, cfg.compile_steps)
                print(f"memrepro: {summary['compiled']}", file=sys.stderr)
            summary.setdefault("model", type(self.model).__name__.lower())
            summary.setdefault("task", type(self.task).__name__.lower())
            summary.update(parameters=self.model.num_parameters(), model_class=type(self.model).__name__, task_class=type(self.task).__name__,
                           input_size=self.task.input_size, output_size=self.task.output_size, output_kind=self.task.output_kind)
            if cfg.resume:
                check_resume_config(cfg, self.run_dir)
            else:
                OmegaConf.save(resolved_config(cfg), self.run_dir / CONFIG)
        except BaseException as e:
            self.fail(e)
            raise
        io.write_json(self.run_dir / io.SUMMARY, summary)

    def fail(self, e: BaseException) -> None:
        # SystemExit: submitit's preemption handler exits the job so that SLURM requeues it
        self.summary["status"] = "interrupted" if isinstance(e, (KeyboardInterrupt, SystemExit)) else "failed"
        self.summary["error"] = str(e) if isinstance(e, MemreproError) else traceback.format_exception_only(type(e), e)[-1].strip()
        io.write_json(self.run_dir / io.SUMMARY, self.summary)

    def finish(self) -> dict:
        summary = self.summary
        summary.update(self.result)
        summary["status"] = "completed" if not summary.get("solved_at") else "solved"
        summary["wall_seconds"] = round(time.time() - self.started, 2)
        io.write_json(self.run_dir / io.SUMMARY, summary)
        if self.cfg.plots:
            from memrepro.results.plots import plot_run  # matplotlib only when plotting

            try:
                summary["figures"] = plot_run(self.run_dir, self.model, self.task, self.trainer)
            except Exception as e:  # a figure must not turn a finished run into a failed one
                summary["figures_error"] = f"{type(e).__name__}: {e}"
                print(f"memrepro: warning: the run finished, but its figures failed ({summary['figures_error']})", file=sys.stderr)
            io.write_json(self.run_dir / io.SUMMARY, summary)
        return summary


def with_values(cfg: DictConfig, **values) -> DictConfig:
    """A copy of ``cfg`` with top-level values replaced."""
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.update(values)
    return cfg


def _seed_meta(meta: dict | None, seed: int) -> dict:
    """The CLI's record of a job, as a separate run of ``seed`` would have it."""
    meta = dict(meta or {})
    if "overrides" in meta:
        meta["overrides"] = [o for o in meta["overrides"] if o.split("=", 1)[0].lstrip("+~") not in ("seed", "trainer.parallel_seeds")] + [f"seed={seed}"]
    return meta


def resolved_config(cfg: DictConfig) -> dict:
    """The config as plain data, without the settings that do not change what is computed."""
    config = OmegaConf.to_container(cfg, resolve=True)
    for key in RUNTIME_KEYS:
        config.pop(key, None)
    for key in ("progress", "parallel_seeds"):  # how a run is shown and scheduled, not what it computes
        config.get("trainer", {}).pop(key, None)
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
