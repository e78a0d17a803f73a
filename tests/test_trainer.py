"""The trainer on a task defined here, so these tests pin the loop itself: regimes, best-validation
test metrics, early stop, curriculum, clipping, non-finite handling, checkpoints."""
import math

import pandas as pd
import pytest
import torch

from memrepro.errors import CheckpointError, ConfigError, TrainingDiverged
from memrepro.models.recurrent import LSTM, RNN
from memrepro.results import io
from memrepro.tasks.base import Batch, Task
from memrepro.train.trainer import Trainer


class Delay(Task):
    """Output the input bit from ``lag`` steps earlier; lessons grow the lag from 1."""

    input_size, output_size, output_kind = 1, 1, "bits"

    def __init__(self, length=8, lag=2, lessons=1, **kw):
        super().__init__(**kw)
        self.length, self.max_lag, self.num_lessons = length, lag, lessons

    @property
    def lag(self):
        return self.max_lag - (self.num_lessons - 1 - self.lesson)

    def sample(self, batch_size, generator):
        x = torch.randint(0, 2, (batch_size, self.length, 1), generator=generator).float()
        y = torch.zeros_like(x)
        y[:, self.lag :] = x[:, : -self.lag]
        mask = torch.ones(batch_size, self.length)
        mask[:, : self.lag] = 0
        return Batch(x, y, mask)


def trainer(**kw):
    args = dict(optimizer=lambda p: torch.optim.Adam(p, lr=1e-2), batch_size=16, steps=60, epochs=3, eval_every=20, checkpoint_every=20, progress=False)
    return Trainer(**{**args, **kw})


def model(seed=0):
    torch.manual_seed(seed)
    return LSTM(1, 1, hidden_size=16)


def test_online_learns_and_logs(tmp_path):
    result = trainer(steps=150).fit(model(), Delay(eval_size=64), tmp_path)
    rows = pd.read_csv(tmp_path / io.METRICS)
    assert list(rows["step"]) == [20, 40, 60, 80, 100, 120, 140, 150]
    assert rows["sequences"].iloc[-1] == 150 * 16
    assert result["final"]["eval_bit_errors"] < 0.5 < rows["eval_bit_errors"].iloc[0]


def test_dataset_regime_reports_test_of_best_validation(tmp_path):
    task = Delay(dataset_size=200, eval_size=8)
    result = trainer(epochs=4, batch_size=50).fit(model(), task, tmp_path)
    rows = pd.read_csv(tmp_path / io.METRICS)
    # 140 training sequences in batches of 50 -> 3 updates per epoch, validation at each epoch end
    assert list(rows["epoch"]) == [1, 2, 3, 4]
    assert result["best_val"] == pytest.approx(rows["val_loss"].min(), rel=1e-5)
    assert "trainset_bit_errors" in rows
    assert "test_bit_errors" in result["final"]


def test_correct_predictions_count_the_sequences_entirely_right(tmp_path):
    """A model frozen at zero logits predicts 0 everywhere, so a training sequence is right
    exactly when all its scored target bits are 0: count those in the replayed data stream."""
    net = model()
    for p in net.parameters():
        torch.nn.init.zeros_(p)
    task = Delay(length=4, lag=1, eval_size=8)
    result = trainer(steps=40, optimizer=lambda p: torch.optim.SGD(p, lr=0.0)).fit(net, task, tmp_path, seed=3)
    g = torch.Generator().manual_seed(3)
    expected = sum(int(((b.targets.squeeze(-1) * b.mask).sum(1) == 0).sum()) for b in (task.sample(16, g) for _ in range(40)))
    assert 0 < expected < 40 * 16
    assert result["correct_predictions"] == expected
    assert result["final"]["train_correct_fraction"] == pytest.approx(expected / (40 * 16))


def test_early_stop_records_time_to_solve(tmp_path):
    result = trainer(steps=2000, early_stop={"metric": "eval_bit_errors", "value": 0.05}).fit(model(), Delay(eval_size=64), tmp_path)
    assert result["solved_at"] is not None and result["steps"] < 2000
    assert result["final"]["eval_bit_errors"] <= 0.05


def test_curriculum_every_moves_lessons(tmp_path):
    task = Delay(lag=3, lessons=3, eval_size=16)
    trainer(steps=60, curriculum={"every": 20}).fit(model(), task, tmp_path)
    assert list(pd.read_csv(tmp_path / io.METRICS)["lesson"]) == [0, 1, 2]  # the lesson each interval trained on
    assert task.lag == 3


def test_curriculum_every_does_not_wait_for_evaluations(tmp_path):
    task = Delay(lag=4, lessons=4, eval_size=16)  # lessons move at updates 7, 14 and 21
    trainer(steps=60, curriculum={"every": 7}).fit(model(), task, tmp_path)
    assert list(pd.read_csv(tmp_path / io.METRICS)["lesson"]) == [2, 3, 3]  # evaluations at 20, 40, 60


def test_clip_value_bounds_every_gradient_entry(tmp_path):
    m = model()
    seen = []
    t = trainer(steps=1, clip_value=1e-4, clip_norm=None)
    original = torch.optim.Adam.step

    def spy(self, *a, **k):
        seen.append(max(p.grad.abs().max().item() for p in m.parameters()))
        return original(self, *a, **k)

    torch.optim.Adam.step = spy
    try:
        t.fit(m, Delay(eval_size=4), tmp_path)
    finally:
        torch.optim.Adam.step = original
    assert seen and seen[0] <= 1e-4 + 1e-12


class Exploding(RNN):
    def forward(self, x, state=None, return_states=False):
        return super().forward(x) * math.inf


def test_nonfinite_loss_stops_with_the_step_and_keeps_checkpoint(tmp_path):
    with pytest.raises(TrainingDiverged, match="at step 1; no checkpoint"):
        trainer().fit(Exploding(1, 1, hidden_size=4), Delay(eval_size=4), tmp_path)


class Huge(RNN):
    def forward(self, x, state=None, return_states=False):
        return super().forward(x) * 1e12  # finite, but far past any sane loss


def test_finite_divergence_stops_with_the_step(tmp_path):
    with pytest.raises(TrainingDiverged, match=r"loss diverged at step 1 \(.* > 1e\+10\)"):
        trainer().fit(Huge(1, 1, hidden_size=4), Delay(eval_size=4), tmp_path)


def test_learning_rate_overflowing_the_optimizer_is_one_error(tmp_path):
    with pytest.raises(TrainingDiverged, match="overflowed at step 1.*lower trainer.optimizer.lr"):
        trainer(optimizer=lambda p: torch.optim.Adam(p, lr=1e300)).fit(model(), Delay(eval_size=4), tmp_path)


def test_nonfinite_skip_counts_and_leaves_weights(tmp_path):
    m = Exploding(1, 1, hidden_size=4)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    result = trainer(steps=5, eval_every=5, nonfinite="skip").fit(m, Delay(eval_size=4), tmp_path)
    assert result["skipped_updates"] == 5
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_resume_continues_to_identical_metrics(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    full.mkdir(), part.mkdir()
    trainer(steps=100).fit(model(), Delay(eval_size=32), full)
    trainer(steps=60).fit(model(), Delay(eval_size=32), part)  # "killed" after its step-60 checkpoint
    trainer(steps=100).fit(model(), Delay(eval_size=32), part, resume=True)
    pd.testing.assert_frame_equal(pd.read_csv(full / io.METRICS), pd.read_csv(part / io.METRICS))


def test_resume_mid_epoch_in_dataset_regime(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    full.mkdir(), part.mkdir()
    kw = dict(epochs=3, batch_size=30, checkpoint_every=4, eval_every=100)
    result = trainer(**kw).fit(model(), Delay(dataset_size=200, eval_size=8), full)
    trainer(**{**kw, "epochs": 2}).fit(model(), Delay(dataset_size=200, eval_size=8), part)
    resumed = trainer(**kw).fit(model(), Delay(dataset_size=200, eval_size=8), part, resume=True)
    pd.testing.assert_frame_equal(pd.read_csv(full / io.METRICS), pd.read_csv(part / io.METRICS))
    assert resumed["final"]["test_bit_errors"] == result["final"]["test_bit_errors"]


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / io.CHECKPOINT).write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="unreadable"):
        trainer().fit(model(), Delay(eval_size=4), tmp_path, resume=True)


def test_checkpoint_of_another_model_is_a_clear_error(tmp_path):
    trainer(steps=20).fit(model(), Delay(eval_size=4), tmp_path)
    with pytest.raises(CheckpointError, match="does not match"):
        trainer(steps=40).fit(LSTM(1, 1, hidden_size=8), Delay(eval_size=4), tmp_path, resume=True)


@pytest.mark.parametrize("kw, field", [({"batch_size": 0}, "trainer.batch_size"), ({"steps": -1}, "trainer.steps"), ({"nonfinite": "ignore"}, "trainer.nonfinite"), ({"early_stop": {"value": 1}}, "trainer.early_stop")])
def test_bad_trainer_settings_name_the_field(kw, field):
    with pytest.raises(ConfigError, match=field):
        trainer(**kw)
