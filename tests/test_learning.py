"""Models that actually learn, through the real trainer at smoke scale (issue 2's "Must show")."""
import pytest

from conftest import smoke_cfg
from memrepro.run import run


def train(tmp_path, *overrides):
    summary = run(smoke_cfg(*overrides), tmp_path / "run")
    assert summary["status"] == "completed"
    return summary["final"]


def test_lstm_solves_memory_recall_of_length_2(tmp_path):
    final = train(tmp_path, "model=lstm", "task=memory_recall", "model.hidden_size=32", "trainer.optimizer.lr=0.01", "trainer.steps=400", "trainer.eval_every=100")
    assert final["eval_bit_errors"] == 0 and final["eval_number_error"] == 0


@pytest.fixture(scope="module")
def recall(tmp_path_factory):
    common = ["task=classification_recall", "task.dataset_size=200", "trainer.optimizer.lr=0.01", "trainer.epochs=30"]
    return {m: train(tmp_path_factory.mktemp(m), f"model={m}", *common, *(["model.hidden_size=32"] if m == "lstm" else [])) for m in ("ffnn", "lstm")}


def test_ffnn_stays_at_chance_on_the_history_outputs(recall):
    # three equiprobable classes: a memory-less guess errs 2/3 of the time on t-1 and t-2
    assert recall["ffnn"]["test_error_history"] == pytest.approx(2 / 3, abs=0.06)
    assert recall["ffnn"]["test_error_current"] < 0.05  # while it classifies the present fine


def test_lstm_learns_the_history_outputs(recall):
    assert recall["lstm"]["test_error_history"] < 0.1 < recall["ffnn"]["test_error_history"] - 0.4


def test_lstm_beats_the_trivial_add_baseline(tmp_path):
    # length 30 instead of the paper's 120 keeps this a seconds-long test
    final = train(tmp_path, "model=lstm", "task=add", "task.length=30", "model.hidden_size=32", "trainer.optimizer.lr=0.01", "trainer.epochs=30")
    assert final["test_baseline_mse"] == pytest.approx(1 / 6, abs=0.03)
    assert final["test_mse"] < 0.1 * final["test_baseline_mse"]
