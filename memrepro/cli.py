"""`memrepro`: the command line. A thin Hydra wrapper around `memrepro.run.run_seeds`.

Before Hydra starts, the overrides are checked so that a wrong name or value ends in one line
naming the problem (and nothing is written): Hydra's own messages run over several lines.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from memrepro.config import CONF_DIR, GROUPS, check_option, compose, register_resolvers
from memrepro.errors import ConfigError, MemreproError
from memrepro.results import io
from memrepro.train.compiled import compile_training_step
from memrepro.run import CONFIG, build, check_resume_config, check_runtime, run_seeds, seed_runs, with_values

HYDRA_FLAGS_WITHOUT_RUN = {"--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--version", "--shell-completion", "-sc"}
CONFIG_PRINTERS = {"--cfg": {"job", "hydra", "all"}, "-c": {"job", "hydra", "all"},  # flag: the values it takes
                   "--info": {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}, "-i": {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}}
# launchers that come from Hydra plugins: the module to import and the memrepro extra that installs it
LAUNCHER_PLUGINS = {"joblib": ("hydra_plugins.hydra_joblib_launcher", "sweep"),
                    "submitit_local": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
                    "submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
                    "slurm": ("hydra_plugins.hydra_submitit_launcher", "slurm")}
ON_SLURM = {"slurm", "submitit_slurm"}
FAILED_JOBS = "MEMREPRO_FAILED_JOBS"  # environment variable: the file where a sweep's failed jobs are listed
GROUP_KEYS = set(GROUPS)  # launchers come from Hydra plugins; Hydra checks those names itself


def main() -> None:
    register_resolvers()
    args = sys.argv[1:]
    flags = HYDRA_FLAGS_WITHOUT_RUN & set(args)
    try:
        if not flags:
            args = group_seed_sweep(args)
            check_overrides(args)
        elif flags <= set(CONFIG_PRINTERS):
            if "-m" in args or "--multirun" in args:
                raise ConfigError(f"{' '.join(sorted(flags))} prints one job's configuration: drop -m and give one value per setting")
            check_overrides(_without_flag_values(args), compose_only=True)
    except MemreproError as e:
        fail(e)
    sys.argv[1:] = args
    # SIGTERM (a scheduler's preemption, `kill`) ends a run as Ctrl-C does: summary "interrupted"
    signal.signal(signal.SIGTERM, _interrupt)
    # A sweep's jobs may run in other processes (joblib) or on other machines (SLURM): each failed
    # job adds a line to this file, kept in the working folder, which a cluster's nodes share.
    here = os.getcwd() if os.access(os.getcwd(), os.W_OK) else None
    fd, failures = tempfile.mkstemp(prefix=".memrepro-failed-jobs.", dir=here)
    os.close(fd)
    os.environ[FAILED_JOBS] = failures
    try:
        _hydra_main()
    except KeyboardInterrupt:
        print("memrepro: interrupted; continue with resume=true (the run folder keeps its last checkpoint)", file=sys.stderr)
        sys.exit(130)
    finally:
        failed = Path(failures).read_text().splitlines()
        os.unlink(failures)
    if failed:
        print(f"memrepro: {len(failed)} job(s) of the sweep failed (see above and each job's summary.json); fix them and rerun the sweep with resume=true", file=sys.stderr)
        sys.exit(1)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def fail(error: Exception) -> None:
    print(f"memrepro: error: {error}", file=sys.stderr)
    sys.exit(2)


def group_seed_sweep(args: list[str]) -> list[str]:
    """A sweep with ``trainer.parallel_seeds=k`` over ``seed=0,1,…`` runs one job per k consecutive
    seeds: ``seed=0,…,9 trainer.parallel_seeds=5`` becomes ``seed=0,5``, and each job trains its
    seeds in lockstep (``<job folder>/seed=<s>/``). Fewer seeds than k: one job with all of them.
    The seed axis comes from the command line or else from the experiment's sweeper params."""
    if "-m" not in args and "--multirun" not in args:
        return args
    try:
        parsed = {o.key_or_group: o for o in OverridesParser.create().parse_overrides([a for a in args if not a.startswith("-")])}
    except Exception:
        return args  # check_overrides reports it
    k = parsed.get("trainer.parallel_seeds")
    if k is None or k.is_sweep_override() or not isinstance(k.value(), int) or k.value() <= 1:
        return args
    seed = parsed.get("seed") or _experiment_seed_axis(parsed.get("experiment"))
    if seed is None or not seed.is_sweep_override():
        return args
    seeds = sorted(seed.sweep_iterator())
    if not all(isinstance(s, int) for s in seeds):
        return args  # check_runtime reports it
    asked = k.value()
    k = min(asked, len(seeds))
    groups = [seeds[i : i + k] for i in range(0, len(seeds), k)]
    if len(seeds) % k or any(g != list(range(g[0], g[0] + k)) for g in groups):
        raise ConfigError(f"trainer.parallel_seeds={asked} with {seed.input_line}: a job trains k consecutive seeds; sweep consecutive seeds, a multiple of k of them")
    grouped = [f"seed={','.join(str(g[0]) for g in groups)}", f"trainer.parallel_seeds={k}"]
    return [a for a in args if a not in (seed.input_line, parsed["trainer.parallel_seeds"].input_line)] + grouped


def _experiment_seed_axis(experiment):
    """``hydra.sweeper.params.seed`` of the chosen experiment file, as a parsed override."""
    if experiment is None or experiment.is_sweep_override() or experiment.is_delete():
        return None
    path = CONF_DIR / "experiment" / f"{experiment.value()}.yaml"
    if not path.exists():
        return None  # check_overrides names the unknown experiment
    axis = OmegaConf.select(OmegaConf.load(path), "hydra.sweeper.params.seed")
    return None if axis is None else OverridesParser.create().parse_overrides([f"seed={axis}"])[0]


def _without_flag_values(args: list[str]) -> list[str]:
    """The overrides of a ``--cfg job`` / ``--info config`` command line, without the flags' values."""
    kept = []
    for i, a in enumerate(args):
        if not (i and a in CONFIG_PRINTERS.get(args[i - 1], ())):
            kept.append(a)
    return kept


def check_launcher(name: str) -> None:
    """A launcher that exists, whose plugin is installed, and (SLURM) a cluster to submit to."""
    options = {"basic", *LAUNCHER_PLUGINS, *(p.stem for p in (CONF_DIR / "hydra" / "launcher").glob("*.yaml"))}
    if name not in options:
        raise ConfigError(f"unknown launcher {name!r}: choose one of {', '.join(sorted(options))}")
    module, extra = LAUNCHER_PLUGINS.get(name, (None, None))
    if module is not None and importlib.util.find_spec(module) is None:
        raise ConfigError(f"hydra/launcher={name} needs its Hydra plugin: pip install 'memrepro[{extra}]'")
    if name in ON_SLURM and shutil.which("srun") is None:
        raise ConfigError(f"hydra/launcher={name}: no SLURM on this machine (`srun` not found); submit from the cluster's login node, or try the same path here with hydra/launcher=submitit_local")


def check_overrides(args: list[str], compose_only: bool = False) -> None:
    """Validate group choices (all sweep values) and, for a single run, the whole composition
    (``compose_only``: no more, for a command that only prints the configuration)."""
    overrides = [a for a in args if not a.startswith("-")]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as e:  # Hydra's parser errors carry a multi-line grammar report
        raise ConfigError(f"cannot parse the overrides: {str(e).splitlines()[0]}") from None
    for o in parsed:
        group = o.key_or_group
        if group in GROUP_KEYS and not o.is_delete():
            values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
            for v in values:
                check_option(group, v)
        elif group == "hydra/launcher":
            check_launcher(o.get_value_element_as_str())
    _check_output_root(parsed)
    if "-m" in args or "--multirun" in args:
        return
    try:
        cfg = compose(overrides)
        OmegaConf.to_container(cfg, resolve=True)
    except MemreproError:
        raise
    except Exception as e:
        raise ConfigError(_one_line(e)) from None
    if compose_only:
        return
    # Everything run() would reject, rejected before Hydra creates or touches a folder:
    check_runtime(cfg)
    task, model, trainer = build(cfg)  # every constructor validates its arguments
    trainer.check_task(task)
    _check_budget_setting(parsed, task)
    task.check_data()
    if cfg.compile:
        compile_training_step(model, cfg.compile_steps)  # refuses fused models and a missing C++ compiler
    if cfg.run_dir is not None:
        for seed_cfg, folder in seed_runs(cfg, cfg.run_dir):
            io.prepare_run_dir(folder, cfg.resume)
            if cfg.resume:
                check_resume_config(seed_cfg, folder)
                io.load_checkpoint(folder / io.CHECKPOINT)


def _check_budget_setting(parsed, task) -> None:
    """``trainer.steps`` budgets an online task, ``trainer.epochs`` a dataset task: the other one
    would be ignored without a word."""
    given = {o.key_or_group for o in parsed}
    unused, used = ("trainer.steps", "trainer.epochs") if not task.online else ("trainer.epochs", "trainer.steps")
    if unused in given:
        regime = "draws a fresh batch for every update" if task.online else "passes over a fixed dataset"
        raise ConfigError(f"{unused} has no effect here: {type(task).__name__} {regime}, so set {used} instead")


def _check_output_root(parsed) -> None:
    """Hydra creates the run/sweep folder itself: make sure it can, before anything starts."""
    roots = {o.key_or_group: o.value() for o in parsed if o.key_or_group in ("hydra.run.dir", "hydra.sweep.dir", "run_dir")}
    for root in list(roots.values()) or ["outputs"]:
        path = Path(str(root)).absolute()
        while not path.exists():
            path = path.parent
        if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
            raise ConfigError(f"cannot write under {path}: run from a writable folder or set run_dir=<writable path>")


def _one_line(error: Exception) -> str:
    """Hydra/OmegaConf composition errors, reduced to their most telling line."""
    cause = error.__cause__ or error
    text = str(cause).splitlines()
    if "not in struct" in str(cause) or "Could not override" in str(error):
        key = str(error).split("'")[1] if "'" in str(error) else text[0]
        return f"no setting {key!r} (check the spelling; `memrepro --cfg job` lists the settings, +{key}=... adds a new one)"
    return " ".join(line.strip() for line in text if line.strip() and not line.startswith("    "))[:300]


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _hydra_main(cfg: DictConfig) -> dict | None:
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    choices = hc.runtime.choices
    meta = {
        "model": choices.get("model"),
        "task": choices.get("task"),
        "trainer": choices.get("trainer"),
        "experiment": choices.get("experiment"),
        "overrides": list(hc.overrides.task),
        **({"job": job} if (job := _submitit_job()) else {}),
    }
    try:
        summaries = run_seeds(cfg, run_dir, meta, job_mode=_sweep_job_mode if multirun else None)
    except MemreproError as e:
        if not multirun:
            fail(e)
        return _job_failed(hc, str(e))
    except Exception as e:
        if not multirun:
            raise
        # One failing job must not take the sweep down: it is recorded in its summary.json.
        return _job_failed(hc, f"{type(e).__name__}: {e}")
    for (_, folder), summary in zip(seed_runs(cfg, run_dir), summaries):
        print_summary(summary, folder)
    return summaries[0] if len(summaries) == 1 else summaries


def _job_failed(hc, error: str) -> None:
    line = f"job {hc.job.num} ({hc.job.override_dirname}) failed: {error}"
    print(f"memrepro: {line}", file=sys.stderr)
    failures = os.environ.get(FAILED_JOBS, "")
    if os.path.isfile(failures):  # absent where a cluster node does not share the working folder
        with open(failures, "a") as f:
            f.write(line.replace("\n", " ") + "\n")
    return None


def _submitit_job() -> str | None:
    """The submitit job this process runs as (its id survives a SLURM requeue), or None."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return None
    import submitit

    return str(submitit.JobEnvironment().job_id)


def _sweep_job_mode(cfg: DictConfig, run_dir: Path) -> DictConfig | None:
    """In a sweep, ``resume=true`` re-runs only the jobs that did not finish: finished jobs are
    skipped (None), interrupted ones continue from their checkpoint, failed ones start again.
    A requeued submitit job (SLURM preemption or time limit) does the same for its own folder,
    whatever ``resume`` says: its summary.json names the job that wrote it."""
    previous = io.read_summary(run_dir)
    if previous is None and not (run_dir / io.CHECKPOINT).exists():
        return with_values(cfg, resume=False)
    job = _submitit_job()
    requeued = job is not None and previous is not None and previous.get("job") == job
    if not (cfg.resume or requeued):
        return cfg  # prepare_run_dir refuses to overwrite it, with the reason
    if previous and previous.get("status") in ("completed", "solved"):
        print(f"memrepro: {run_dir} finished already; skipped")
        return None
    if (run_dir / io.CHECKPOINT).exists():
        return with_values(cfg, resume=True)
    for name in (io.SUMMARY, io.METRICS, io.TIMING, CONFIG):
        (run_dir / name).unlink(missing_ok=True)
    return with_values(cfg, resume=False)


def print_summary(summary: dict, run_dir: Path) -> None:
    final = summary.get("final", {})
    secs = summary.get("train_seconds") or 0
    # test metrics first: in the dataset regime they are the result (best-validation weights)
    shown = {k: v for k, v in sorted(final.items(), key=lambda kv: not kv[0].startswith("test_")) if not k.startswith(("train_", "trainset_")) and isinstance(v, (int, float))}
    line = "  ".join(f"{k} {v:.4g}" for k, v in list(shown.items())[:8])
    rate = summary.get("sequences_per_second") or 0
    print(
        f"\nmemrepro: {summary['model']} on {summary['task']} — {summary['status']} in {secs:.0f}s, "
        f"{summary.get('sequences', 0):,} sequences ({rate:.0f} seq/s), {summary.get('parameters', 0):,} parameters\n"
        f"  {line}\n"
        f"  run folder: {run_dir}\n"
        + "".join(f"  {name}: {run_dir / name}\n" for name in [io.SUMMARY, *summary.get("figures", [])] if (run_dir / name).exists())
    )


if __name__ == "__main__":
    main()
