"""Every model composes with every task and trains a few steps (configs checked against the
code that consumes them). Models and tasks are discovered from conf/, so new ones are covered."""
import itertools
import math

import pytest

from conftest import smoke_cfg
from memrepro.config import options
from memrepro.run import run

# The cross product is run for these tasks (short sequences, one per output kind); every other
# task is trained by the baselines, which keeps this file within a minute or two.
PROBE_TASKS = ["copy", "add", "extended_recall", "memory_recall"]
BASELINES = ["ffnn", "rnn", "lstm", "gru"]
TINY = ["trainer.steps=2", "trainer.epochs=1", "trainer.eval_every=1", "task.eval_size=4"]
SHORT = {
    "add": ["task.length=12"], "copy": ["task.lengths=[1,3]", "task.eval_lengths=[4]"], "extended_recall": ["task.length=30"],
    **{name: ["task.dataset=digits"] for name in ("seq_mnist", "pmnist", "mnist_generation")},  # offline data
    "graph_traversal": ["task.lessons=1", "task.london_size=4"],
}

PAIRS = sorted({*itertools.product(options("model"), PROBE_TASKS), *itertools.product(BASELINES, options("task"))})


@pytest.mark.parametrize("model, task", PAIRS, ids=[f"{m}-{t}" for m, t in PAIRS])
def test_model_trains_on_task(model, task, tmp_path):
    summary = run(smoke_cfg(f"model={model}", f"task={task}", *TINY, *SHORT.get(task, [])), tmp_path / "run", {"model": model, "task": task})
    assert summary["status"] == "completed" and summary["parameters"] > 0
    assert summary["steps"] >= 1
    assert all(math.isfinite(v) for v in summary["final"].values() if isinstance(v, float))


def test_a_scale_shrinks_the_updates_once_not_twice():
    """Dataset regime: the data shrinks by the scale's `data` fraction and the epochs grow by
    1/data, so the optimizer updates are the paper's x `steps` (smann-3: 35,000 training
    sequences at batch 200, 100 epochs = 17,500 updates at paper scale)."""
    from memrepro.config import compose

    def updates(scale, *extra):
        cfg = compose(["experiment=smann_3", "+experiment/smann/model=lstm_32x2", "+experiment/smann/task=add", f"scale={scale}", *extra])
        return cfg.trainer.epochs * math.ceil(0.7 * cfg.task.dataset_size / cfg.trainer.batch_size)

    assert updates("paper") == 17_500
    fraction = compose(["experiment=smann_3", "scale=quick"]).budgets.quick.steps
    assert updates("quick") == pytest.approx(17_500 * fraction, rel=0.1)
    # a table's own budget for a scale replaces conf/scale/<scale>.yaml's fractions
    assert updates("smoke", "+budgets.smoke.steps=0.02", "+budgets.smoke.data=0.08") == 350


@pytest.mark.parametrize("dataset, t_max", [("mnist", 784), ("digits", 64)])
def test_the_chrono_t_max_follows_the_images(dataset, t_max):
    from memrepro.config import compose

    cfg = compose(["experiment=smann_1", "+experiment/smann/model=clstm_128", "+experiment/smann/task=mnist", f"mnist_dataset={dataset}"])
    assert cfg.model.t_max == t_max


def test_an_experiment_sets_top_level_settings_and_the_command_line_wins():
    """An experiment file's `compile: true` (mf-2, the SMANN and slides tables) must reach the run:
    the primary config's own `compile: false` comes before the experiment, the command line after."""
    from memrepro.config import compose

    assert compose([]).compile is False
    assert compose(["experiment=mf_2"]).compile is True
    assert compose(["experiment=smann_3", "scale=paper"]).compile is True
    assert compose(["experiment=mf_2", "compile=false"]).compile is False
