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


def test_a_model_without_a_time_loop_says_there_is_nothing_to_compile():
    model = LSTM(1, 1, hidden_size=4)
    assert compiled.compile_training_step(model).endswith("nothing to compile")
    assert model.scan.steps == 0


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


@pytest.mark.parametrize("steps", [0, -2, 1.5, True])
def test_compile_steps_must_be_a_positive_integer(steps):
    with pytest.raises(ConfigError, match="compile_steps="):
        compiled.compile_training_step(StepRNN(1, 1), steps)


def test_chunked_model_keeps_the_eager_loop_for_evaluation_and_states():
    model = StepRNN(1, 1)
    compiled.compile_training_step(model, steps=4)
    x = torch.rand(2, 6, 1)
    with torch.no_grad():
        y = model(x)
    y_states, states = model(x, return_states=True)  # per-step states: the step loop, not chunks
    assert len(states) == 6 and torch.allclose(y, y_states)


def assert_compiled_matches_eager(make, steps: int, x: torch.Tensor) -> None:
    """Two copies of ``make()``, one compiled in graphs of ``steps``: equal outputs and gradients."""
    eager, chunked = make(), make()
    chunked.load_state_dict(eager.state_dict())
    compiled.compile_training_step(chunked, steps=steps)
    grads = []
    for model in (eager, chunked):
        y = model(x)
        (y.pow(2).sum() + model.extra_loss()).backward()
        grads.append([p.grad for p in model.parameters()])
    torch.testing.assert_close(chunked(x).detach(), eager(x).detach(), rtol=1e-5, atol=1e-6)
    for g_eager, g_chunked in zip(*grads):
        torch.testing.assert_close(g_chunked, g_eager, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_chunks_and_the_tail_give_the_eager_outputs_and_gradients():
    """Length 8 in chunks of 3: two compiled chunks, then two one-step graphs for the tail."""
    torch.manual_seed(0)
    assert_compiled_matches_eager(lambda: StepRNN(2, 3), 3, torch.rand(4, 8, 2))


def test_cell_stacks_compile_eight_steps_per_graph_unless_told():
    from memrepro.models.clstm import CLSTM
    from memrepro.models.smann import NC

    for model in (CLSTM(1, 1, 4), NC(1, 1, [4, 4])):
        assert compiled.compile_training_step(model).endswith("8 step(s) per graph") and model.scan.steps == 8
    model = NC(1, 1, [4, 4])
    compiled.compile_training_step(model, steps=2)
    assert model.scan.steps == 2


@pytest.mark.slow
@pytest.mark.parametrize("name", ["clstm", "nc", "smann", "skip_lstm", "stack_rnn"])
def test_compiled_time_loops_give_the_eager_outputs_and_gradients(name):
    """Length 11 in graphs of 4 steps (two chunks and a three-step tail), with mask-off steps for
    NC and SMANN: the compiled loops must give the eager loop's outputs and gradients."""
    from memrepro.models.clstm import CLSTM
    from memrepro.models.skip_rnn import SkipLSTM
    from memrepro.models.smann import NC, SMANN
    from memrepro.models.stack_rnn import StackRNN

    cls, args = {"clstm": (CLSTM, (2, 3, 5, 2)), "nc": (NC, (2, 3, [5, 4])), "smann": (SMANN, (2, 3, [5, 4], 6, 3)), "skip_lstm": (SkipLSTM, (2, 3, 5, 2)),
                 "stack_rnn": (StackRNN, (2, 3, 5, 2, 2, 6))}[name]

    def make():
        torch.manual_seed(0)
        model = cls(*args) if cls is StackRNN else cls(*args, dropout=0.0)
        if hasattr(model, "mask"):
            with torch.no_grad():
                model.mask.logits[[1, 4, 5, 9]] = -1.0  # mask-off steps
        return model

    assert_compiled_matches_eager(make, 4, torch.rand(3, 11, 2))


@pytest.mark.slow
def test_compiled_training_keeps_every_state_as_the_eager_loop_does():
    """The forcing trainers' forward (return_states=True) under compile=true: a DNC with a GRU
    controller (mf-1/2's), length 7 in graphs of 3 steps; the kept states' traces and the gradients
    through them equal the eager loop's."""
    from memrepro.config import compose
    from memrepro.run import build

    cfg = compose(["model=dnc", "model.controller=gru", "model.controller_size=8", "model.memory_slots=5", "model.memory_width=4",
                   "task=copy", "task.lengths=[3,3]", "scale=smoke"])
    torch.manual_seed(0)
    task, eager, _ = build(cfg)
    _, chunked, _ = build(cfg)
    chunked.load_state_dict(eager.state_dict())
    compiled.compile_training_step(chunked, steps=3)
    x = task.sample(2, torch.Generator().manual_seed(0)).inputs
    runs = []
    for model in (eager, chunked):
        y, states = model(x, return_states=True)
        memory = torch.stack([model.trace(s)["memory"] for s in states], dim=1)
        (y.pow(2).sum() + memory.pow(2).sum()).backward()
        runs.append((y.detach(), memory.detach(), [p.grad for p in model.parameters()]))
    (y_e, m_e, g_e), (y_c, m_c, g_c) = runs
    assert len(m_c[0]) == x.shape[1]
    torch.testing.assert_close(y_c, y_e, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(m_c, m_e, rtol=1e-5, atol=1e-6)
    for a, b in zip(g_e, g_c):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
