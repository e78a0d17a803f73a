"""Config plumbing shared by the CLI, the report and the tests: where the configs live, the
``${sc:...}`` scale resolver, the config groups' options, and composing a config without the CLI."""
from __future__ import annotations

import subprocess
from pathlib import Path

from omegaconf import OmegaConf

from memrepro.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
GROUPS = ("model", "task", "trainer", "scale", "experiment")


def scaled(which: str, paper_value, *, _root_) -> int:
    """``${sc:steps,20000}`` -> 20000 x the chosen scale's ``steps`` fraction, at least 1."""
    fraction = _root_.scale[which]
    return max(1, int(round(float(paper_value) * fraction)))


def first_set(*values):
    """``${first:${run_dir},outputs/runs/...}``: the first value that is not null."""
    return next((v for v in values if v is not None), None)


def register_resolvers() -> None:
    for name, fn in (("sc", scaled), ("first", first_set)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def options(group: str) -> list[str]:
    """The names available in a config group (conf/<group>/*.yaml)."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def check_option(group: str, name: str) -> None:
    if name not in options(group):
        raise ConfigError(f"unknown {group} {name!r}; choose one of: {', '.join(options(group))}")


def compose(overrides: list[str] | None = None, with_hydra: bool = False):
    """Compose the primary config with overrides, as the CLI would (for tests and notebooks);
    ``with_hydra`` keeps Hydra's own node (launcher, sweeper, run dirs)."""
    from hydra import compose as hydra_compose, initialize_config_dir

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides or []), return_hydra_config=with_hydra)


register_resolvers()


# How a run is executed, not what it computes: left out of resume checks and of the tables'
# "settings that differ from the paper".
RUNTIME_KEYS = ("resume", "run_dir", "device", "threads", "plots", "compile", "compile_steps")


def code_commit() -> str:
    """The short git commit of this code (``unknown`` outside a git checkout): runs record it."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
