"""compile=true: the compiled training step gives the eager step's results; what it cannot take
is refused in one line before anything runs."""
import pandas as pd
import pytest
import torch

from conftest import smoke_cfg
from memrepro.errors import ConfigError
from memrepro.models.recurrent import LSTM
from memrepro.results import io
from memrepro.run import check_runtime
from memrepro.train import compiled
from test_parallel import Delay, StepRNN, trainer


def test_fused_forward_models_are_refused():
    with pytest.raises(ConfigError, match="compile=true: LSTM runs its own fused forward"):
        compiled.compile_training_step(LSTM(1, 1, hidden_size=4))


def test_a_missing_compiler_is_named(monkeypatch):
    monkeypatch.setattr(compiled.shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="needs a C\\+\\+ compiler"):
        compiled.compile_training_step(StepRNN(1, 1))


@pytest.mark.parametrize("overrides, message", [(["compile=yes"], "compile='yes': must be true or false"),
                                                (["compile=true", "trainer.parallel_seeds=2"], "choose one of the two")])
def test_bad_compile_settings(overrides, message):
    with pytest.raises(ConfigError, match=message):
        check_runtime(smoke_cfg(*overrides))


def test_evaluation_runs_the_eager_step():
    model = StepRNN(1, 1)
    eager = model.step
    compiled.compile_training_step(model)
    x = torch.rand(3, 1)
    with torch.no_grad():
        assert torch.equal(model.step(x, model.initial_state(3))[0], eager(x, model.initial_state(3))[0])


@pytest.mark.slow
def test_compiled_training_matches_eager(tmp_path):
    (tmp_path / "eager").mkdir(), (tmp_path / "compiled").mkdir()
    torch.manual_seed(0)
    trainer(steps=20).fit(StepRNN(1, 1), Delay(eval_size=16), tmp_path / "eager")
    torch.manual_seed(0)
    model = StepRNN(1, 1)
    compiled.compile_training_step(model)
    trainer(steps=20).fit(model, Delay(eval_size=16), tmp_path / "compiled")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "eager" / io.METRICS), pd.read_csv(tmp_path / "compiled" / io.METRICS), rtol=1e-4)
