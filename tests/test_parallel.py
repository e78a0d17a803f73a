"""Parallel seeds: k seeds trained in lockstep in one process give each seed the metrics of its
own sequential run (up to float rounding), with per-seed clipping, data, early stop and failure."""
import json
import math
import re

import pandas as pd
import pytest
import torch
from torch import nn

from conftest import REPO, SMOKE, run_cli, smoke_cfg
from memrepro.cli import group_seed_sweep
from memrepro.errors import ConfigError
from memrepro.models.base import SequenceModel
from memrepro.models.recurrent import LSTM
from memrepro.results import io
from memrepro.results.report import report
from memrepro.run import run, run_seeds
from memrepro.tasks.base import Batch, Task
from memrepro.train.parallel import Lane, fit_parallel
from memrepro.train.stacked import StackedForward
from memrepro.train.trainer import Trainer


class Delay(Task):
    """Output the input bit from ``lag`` steps earlier; with ``lengths`` each batch draws its
    length, so lanes of a parallel job see batches of different lengths."""

    input_size, output_size, output_kind = 1, 1, "bits"

    def __init__(self, lengths=(8, 8), lag=2, **kw):
        super().__init__(**kw)
        self.lengths, self.lag = lengths, lag

    def sample(self, batch_size, generator):
        T = int(torch.randint(self.lengths[0], self.lengths[1] + 1, (1,), generator=generator))
        x = torch.randint(0, 2, (batch_size, T, 1), generator=generator).float()
        y = torch.zeros_like(x)
        y[:, self.lag :] = x[:, : -self.lag]
        mask = torch.ones(batch_size, T)
        mask[:, : self.lag] = 0
        return Batch(x, y, mask)


class StepRNN(SequenceModel):
    """An Elman RNN written step by step (the default `forward` loop), as the memory models are.
    Its parameters all sit in nn.Linear layers: the seeds fold into the batch axis."""

    def __init__(self, input_size, output_size, hidden_size=16):
        super().__init__(input_size, output_size)
        self.cell = nn.Linear(input_size + hidden_size, hidden_size)
        self.readout = nn.Linear(hidden_size, output_size)
        self.hidden_size = hidden_size

    def initial_state(self, batch_size):
        return torch.zeros(batch_size, self.hidden_size)

    def step(self, x_t, h):
        h = torch.tanh(self.cell(torch.cat([x_t, h], dim=-1)))
        return self.readout(h), h


class LearnedStart(StepRNN):
    """A trained initial state outside any layer: cannot fold, so torch.vmap runs the seeds."""

    def __init__(self, input_size, output_size, hidden_size=16):
        super().__init__(input_size, output_size, hidden_size)
        self.h0 = nn.Parameter(torch.randn(hidden_size) * 0.1)

    def initial_state(self, batch_size):
        return self.h0.expand(batch_size, -1)


class TimeFirst(StepRNN):
    """Applies its readout to a time-first stack: folding would mix the seeds' rows, which the
    check at the first update catches, so torch.vmap runs it."""

    def forward(self, x, state=None, return_states=False):
        h, hs = self.initial_state(x.shape[0]), []
        for t in range(x.shape[1]):
            h = torch.tanh(self.cell(torch.cat([x[:, t], h], dim=-1)))
            hs.append(h)
        return self.readout(torch.stack(hs)).transpose(0, 1)


def trainer(**kw):
    args = dict(optimizer=lambda p: torch.optim.Adam(p, lr=1e-2), batch_size=8, steps=40, eval_every=10, checkpoint_every=20, clip_norm=0.5, progress=False)
    return Trainer(**{**args, **kw})


def make(model_cls, seed):
    torch.manual_seed(seed)
    return model_cls(1, 1, hidden_size=16)


def sequential(tmp_path, model_cls, seeds, task_kw, **trainer_kw):
    results = {}
    for s in seeds:
        folder = tmp_path / f"seq/seed={s}"
        folder.mkdir(parents=True)
        results[s] = trainer(**trainer_kw).fit(make(model_cls, s), Delay(**task_kw), folder, seed=s)
    return results


def parallel(tmp_path, model_cls, seeds, task_kw, **trainer_kw):
    lanes = []
    for s in seeds:
        folder = tmp_path / f"par/seed={s}"
        folder.mkdir(parents=True)
        lanes.append(Lane(trainer(**trainer_kw), make(model_cls, s), Delay(**task_kw), folder, s))
    forward = fit_parallel(lanes, progress=False)
    return lanes, forward


def metrics(tmp_path, mode, seed):
    return pd.read_csv(tmp_path / f"{mode}/seed={seed}" / io.METRICS)


@pytest.mark.parametrize("model_cls, strategy", [(LSTM, "loop"), (StepRNN, "fold"), (LearnedStart, "vmap"), (TimeFirst, "vmap")])
def test_parallel_seeds_match_sequential_runs(tmp_path, model_cls, strategy):
    seeds, task_kw = [0, 1, 2], dict(lengths=(4, 10), eval_size=32)
    seq = sequential(tmp_path, model_cls, seeds, task_kw)
    lanes, forward = parallel(tmp_path, model_cls, seeds, task_kw)
    assert forward.strategy == strategy, forward.notes  # fused nn.LSTM: neither fold nor vmap
    if model_cls is TimeFirst:
        assert "differ" in forward.notes["fold"]
    for lane in lanes:
        a, b = metrics(tmp_path, "seq", lane.seed), metrics(tmp_path, "par", lane.seed)
        pd.testing.assert_frame_equal(a, b, rtol=1e-4, atol=1e-5)
        assert lane.result["final"] == pytest.approx(seq[lane.seed]["final"], rel=1e-4, abs=1e-5)
        assert lane.result["sequences"] == 40 * 8
    # the seeds really differ: different data and initialisation
    finals = [metrics(tmp_path, "par", s)["eval_loss"].iloc[-1] for s in seeds]
    assert len(set(finals)) == 3


def test_lanes_have_their_own_optimizer_state_and_checkpoints(tmp_path):
    lanes, _ = parallel(tmp_path, StepRNN, [3, 4], dict(eval_size=8), steps=20)
    for lane in lanes:
        ckpt = io.load_checkpoint(lane.run_dir / io.CHECKPOINT)
        state = ckpt["optimizer"]["state"]
        assert all(int(v["step"]) == 20 for v in state.values())
        params = dict(lane.model.named_parameters())
        assert torch.equal(ckpt["model"]["cell.weight"], params["cell.weight"].detach())
    w3, w4 = (io.load_checkpoint(lane.run_dir / io.CHECKPOINT)["model"]["cell.weight"] for lane in lanes)
    assert not torch.allclose(w3, w4)


def test_a_lane_stopping_early_leaves_the_others_running(tmp_path):
    seeds = [0, 1]
    # seed 0's threshold is never met, seed 1's at the first evaluation
    lanes = []
    for s, value in zip(seeds, [-1.0, 1e9]):
        folder = tmp_path / f"seed={s}"
        folder.mkdir()
        t = trainer(steps=40, early_stop={"metric": "eval_bit_errors", "value": value})
        lanes.append(Lane(t, make(StepRNN, s), Delay(eval_size=8), folder, s))
    fit_parallel(lanes, progress=False)
    assert lanes[0].result["steps"] == 40 and lanes[0].result["solved_at"] is None
    assert lanes[1].result["steps"] == 10 and lanes[1].result["solved_at"]["step"] == 10


def test_a_diverging_lane_fails_alone(tmp_path):
    lanes = []
    for s in [0, 1]:
        folder = tmp_path / f"seed={s}"
        folder.mkdir()
        lanes.append(Lane(trainer(), make(StepRNN, s), Delay(eval_size=8), folder, s))
    with torch.no_grad():
        lanes[1].model.readout.bias.fill_(math.nan)  # seed 1's outputs, and only its, are NaN
    fit_parallel(lanes, progress=False)
    assert lanes[0].result["steps"] == 40 and lanes[0].error is None
    assert lanes[1].result is None and "non-finite loss at step 1" in str(lanes[1].error)
    assert math.isfinite(lanes[0].result["final"]["eval_loss"])


# --- run folders of a parallel job, and a sweep over seeds ----------------------------------------
COPY = ["model=lstm", "task=copy", "model.hidden_size=8", "task.lengths=[1,4]", "task.eval_lengths=[6]", *SMOKE, "trainer.steps=30", "trainer.eval_every=10"]


def test_parallel_job_writes_the_run_folders_of_separate_runs(tmp_path):
    summaries = run_seeds(smoke_cfg(*COPY, "trainer.parallel_seeds=2", "seed=3"), tmp_path / "par", {"overrides": ["seed=3", "trainer.parallel_seeds=2"]})
    assert [s["seed"] for s in summaries] == [3, 4]
    alone = run(smoke_cfg(*COPY, "seed=4"), tmp_path / "seq", {"overrides": ["seed=4"]})
    lane, seq = tmp_path / "par/seed=4", tmp_path / "seq"
    pd.testing.assert_frame_equal(pd.read_csv(lane / io.METRICS), pd.read_csv(seq / io.METRICS), rtol=1e-4)
    assert (lane / "config.yaml").read_text() == (seq / "config.yaml").read_text()
    summary = json.loads((lane / io.SUMMARY).read_text())
    assert summary["status"] == "completed" and summary["overrides"] == ["seed=4"]
    assert summary["parallel"]["seeds"] == [3, 4] and summary["parallel"]["strategy"] == "loop"  # nn.LSTM
    assert summary["final"] == pytest.approx(alone["final"], rel=1e-4)
    with pytest.raises(ConfigError, match="seed=3 already holds a run"):
        run_seeds(smoke_cfg(*COPY, "trainer.parallel_seeds=2", "seed=3"), tmp_path / "par")


def test_sweep_over_seeds_groups_them_into_parallel_jobs(tmp_path):
    proc = run_cli(["-m", *COPY, "seed=0,1,2,3", "trainer.parallel_seeds=2", "hydra.sweep.dir=s"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    runs = sorted((re.search(r"(?:^|,)seed=(\d+)", p.parent.parent.name)[1], p.parent.name) for p in (tmp_path / "s").rglob(io.SUMMARY))
    assert runs == [("0", "seed=0"), ("0", "seed=1"), ("2", "seed=2"), ("2", "seed=3")]  # job folder, seed folder
    table = pd.read_csv(report(tmp_path / "s")["cells_csv"])
    assert list(table["cell"]) == ["lstm"] and list(table["n"]) == [4]


@pytest.mark.parametrize("args, grouped", [
    (["-m", "seed=0,1,2,3", "trainer.parallel_seeds=2"], ["-m", "seed=0,2", "trainer.parallel_seeds=2"]),
    (["-m", "seed=range(3)", "trainer.parallel_seeds=5"], ["-m", "seed=0", "trainer.parallel_seeds=3"]),
    (["seed=1", "trainer.parallel_seeds=5"], ["seed=1", "trainer.parallel_seeds=5"]),  # one job: seeds 1-5
    # the seed axis of an experiment file (nmn_fig10 sweeps seed: 0,1,2)
    (["-m", "experiment=nmn_fig10", "trainer.parallel_seeds=3"], ["-m", "experiment=nmn_fig10", "seed=0", "trainer.parallel_seeds=3"]),
])
def test_seed_sweep_grouping(args, grouped):
    assert group_seed_sweep(args) == grouped


@pytest.mark.parametrize("seeds", ["seed=0,2", "seed=0,1,2"])
def test_seed_groups_must_be_consecutive_and_whole(seeds):
    with pytest.raises(ConfigError, match="trainer.parallel_seeds=2 .*consecutive"):
        group_seed_sweep(["-m", seeds, "trainer.parallel_seeds=2"])


def test_a_trainer_with_its_own_objective_runs_it_per_lane(tmp_path):
    """The forcing trainers' objectives (free-running passes, discriminators) run lane by lane;
    they sample from the global generator, so only the bookkeeping is compared with a single run."""
    from test_forcing import NextBit, TinyMemoryNet, forcing

    from memrepro.train.forcing import MemoryForcing

    lanes = []
    for s in (0, 1):
        torch.manual_seed(s)
        (tmp_path / f"seed={s}").mkdir()
        lanes.append(Lane(forcing(MemoryForcing), TinyMemoryNet(1, 1), NextBit(eval_size=16), tmp_path / f"seed={s}", s))
    fit_parallel(lanes, progress=False)
    for lane in lanes:
        rows = pd.read_csv(lane.run_dir / io.METRICS)
        assert {"train_d_hidden_accuracy", "train_d_memory_accuracy", "train_correct"} <= set(rows) and list(rows["step"]) == [3, 6]
        progress = io.load_checkpoint(lane.run_dir / io.CHECKPOINT)["progress"]
        assert progress["correct"] == lane.result["correct_predictions"] <= 6 * 8
    assert lanes[0].trainer.critics["memory"] is not lanes[1].trainer.critics["memory"]


@pytest.mark.parametrize("model_name", ["ntm", "dnc"])
def test_memory_models_fold_and_match_sequential_runs(tmp_path, model_name):
    """NTM and DNC (every parameter used through a linear map) run folded: seed axis in the batch."""
    from memrepro.models.dnc import DNC
    from memrepro.models.ntm import NTM

    cls = {"ntm": NTM, "dnc": DNC}[model_name]
    same_memory = {"memory_init": "constant"} if model_name == "ntm" else {}  # the default random init differs per seed: not foldable
    small = lambda i, o, hidden_size: cls(i, o, controller_size=hidden_size, memory_slots=8, memory_width=4, **same_memory)
    seeds, task_kw = [0, 1], dict(lengths=(3, 6), eval_size=16)
    sequential(tmp_path, small, seeds, task_kw, steps=20)
    lanes, forward = parallel(tmp_path, small, seeds, task_kw, steps=20)
    assert forward.strategy == "fold", forward.notes
    for s in seeds:
        pd.testing.assert_frame_equal(metrics(tmp_path, "seq", s), metrics(tmp_path, "par", s), rtol=1e-4, atol=1e-5)


EXPECTED_STRATEGY = {"ntm": "vmap", "dnc": "fold", "stack_rnn": "fold", "nmn": "fold", "ffnn": "fold", "smann": "loop", "lstm": "loop",
                     "skip_gru": "fold", "skip_lstm": "fold"}  # NTM: its random memory differs per seed


@pytest.mark.parametrize("strategy", ["fold", "vmap"])
def test_a_loss_that_reads_the_forward_trains_each_seed_on_its_own(tmp_path, monkeypatch, strategy):
    """Skip GRU's budget loss sums the updates of its latest forward: a shared forward hands each
    seed's model its own count (its rows of the folded batch, its slice of the vmapped outputs);
    left on one module, every seed would be priced with one seed's updates, or fail."""
    from memrepro.models.skip_rnn import SkipGRU

    if strategy == "vmap":  # as a model that cannot fold would run
        monkeypatch.setattr(StackedForward, "_check_fold", lambda *a: (_ for _ in ()).throw(ValueError("no fold")))
    def small(i, o, hidden_size):
        model = SkipGRU(i, o, hidden_size=hidden_size, budget=0.1, dropout=0.0)  # no RNG draws
        nn.init.constant_(model.update_prob.bias, -0.2)  # Δũ near 0.5: some steps skip, per sequence and seed
        return model

    seeds, task_kw = [0, 1], dict(lengths=(6, 6), eval_size=8)  # one length: no padding counted into the budget
    sequential(tmp_path, small, seeds, task_kw, steps=6)
    lanes, forward = parallel(tmp_path, small, seeds, task_kw, steps=6)
    assert forward.strategy == strategy, forward.notes
    for s in seeds:
        a, b = metrics(tmp_path, "seq", s), metrics(tmp_path, "par", s)
        pd.testing.assert_frame_equal(a, b, rtol=1e-4, atol=1e-5)
    # each model gets its own count, which differs between these two (W_p drawn large: Δũ varies)
    models = []
    for s in seeds:
        torch.manual_seed(s)
        models.append(small(1, 1, 16))
        nn.init.normal_(models[-1].update_prob.weight, std=3.0)
    batches = [Delay(lengths=(12, 12)).sample(5, torch.Generator().manual_seed(s)) for s in seeds]
    StackedForward.__call__(forward, models, batches)
    stacked = [m.last_updates for m in models]
    own = [(m(b.inputs), m.last_updates)[1] for m, b in zip(models, batches)]
    for a, b in zip(stacked, own):
        torch.testing.assert_close(a, b)
    assert not torch.equal(own[0], own[1])


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "conf" / "model").glob("*.yaml")))
def test_every_model_runs_stacked_with_its_own_outputs(name):
    """Whichever strategy each model gets, the k outputs are each model's own (eval mode: no dropout)."""
    from memrepro.run import build

    models = [build(smoke_cfg(f"model={name}", "task=copy"), seed=s)[1].eval() for s in range(3)]
    batches = [Batch(torch.rand(2, 5, 9), torch.rand(2, 5, 8), torch.ones(2, 5)) for _ in models]
    forward = StackedForward()
    with torch.no_grad():
        outputs = forward(models, batches)
        for model, batch, y in zip(models, batches, outputs):
            torch.testing.assert_close(y, model(batch.inputs), rtol=1e-4, atol=1e-5)
    assert forward.strategy == EXPECTED_STRATEGY.get(name, forward.strategy), forward.notes
