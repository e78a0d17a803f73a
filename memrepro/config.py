"""Config plumbing shared by the CLI, the report and the tests: where the configs live, the
``${sc:...}``/``${epochs:...}`` scale resolvers, the config groups' options, and composing a config
without the CLI."""
from __future__ import annotations

import subprocess
from pathlib import Path

from omegaconf import OmegaConf

from memrepro.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
GROUPS = ("model", "task", "trainer", "scale", "experiment")


def fraction(which: str, root) -> float:
    """The chosen scale's fraction of the paper's budget ``which`` (steps, data, eval): the table's
    own ``budgets.<scale>.<which>`` where its experiment file sets one, else conf/scale/<scale>.yaml's."""
    own = (root.get("budgets") or {}).get(root.scale.name) or {}
    return float(own.get(which, root.scale[which]))


def scaled(which: str, paper_value, *, _root_) -> int:
    """``${sc:steps,20000}`` -> 20000 x the chosen scale's ``steps`` fraction, at least 1."""
    return max(1, int(round(float(paper_value) * fraction(which, _root_))))


def scaled_epochs(paper_epochs, *, _root_) -> int:
    """``${epochs:100}``: passes over a training split that the scale has shrunk by its ``data``
    fraction, so that the optimizer updates are the paper's x the ``steps`` fraction (shrinking the
    data must not shrink the updates a second time): 100 x steps / data, at least 1."""
    return max(1, int(round(float(paper_epochs) * fraction("steps", _root_) / fraction("data", _root_))))


def pixels(dataset: str) -> int:
    """``${pixels:digits}`` = 64: the steps of a pixel-by-pixel image sequence (chrono's T_max)."""
    from memrepro.data.mnist import IMAGE_SHAPES, check_dataset

    check_dataset(dataset)
    h, w = IMAGE_SHAPES[dataset]
    return h * w


def first_set(*values):
    """``${first:${run_dir},outputs/runs/...}``: the first value that is not null."""
    return next((v for v in values if v is not None), None)


def register_resolvers() -> None:
    for name, fn in (("sc", scaled), ("epochs", scaled_epochs), ("pixels", pixels), ("first", first_set)):
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
