"""Professor / Memory Forcing: discriminators learn, the accuracy gates hold, the bookkeeping
(correct predictions, buffers, checkpoint state) is right, and a short run goes end to end."""
import json

import pandas as pd
import pytest
import torch

from memrepro.errors import ConfigError
from memrepro.models.base import SequenceModel
from memrepro.models.recurrent import GRU
from memrepro.results import io
from memrepro.tasks.algorithmic import Copy
from memrepro.tasks.base import Batch, Task
from memrepro.train.forcing import Critic, MemoryForcing, ProfessorForcing
from memrepro.train.losses import sequence_correct


def adam(lr):
    return lambda params: torch.optim.Adam(params, lr=lr)


def forcing(cls=ProfessorForcing, **kw):
    args = dict(optimizer=adam(1e-2), discriminator_optimizer=adam(1e-2), batch_size=8, steps=6, epochs=1, eval_every=3, checkpoint_every=3, progress=False)
    return cls(**{**args, **kw})


class TinyMemoryNet(SequenceModel):
    """A small recurrent net with an additive 4x3 memory, for the memory features."""

    def __init__(self, input_size, output_size, hidden=8, slots=4, width=3):
        super().__init__(input_size, output_size)
        self.cell = torch.nn.GRUCell(input_size + width, hidden)
        self.address, self.value = torch.nn.Linear(hidden, slots), torch.nn.Linear(hidden, width)
        self.readout = torch.nn.Linear(hidden + width, output_size)
        self.hidden, self.slots, self.width = hidden, slots, width

    def initial_state(self, batch_size):
        device = self.readout.weight.device
        return torch.zeros(batch_size, self.hidden, device=device), torch.zeros(batch_size, self.slots, self.width, device=device)

    def step(self, x_t, state):
        h, memory = state
        read = memory.mean(1)
        h = self.cell(torch.cat([x_t, read], -1), h)
        memory = memory + self.address(h).softmax(-1).unsqueeze(-1) * torch.tanh(self.value(h)).unsqueeze(1)
        return self.readout(torch.cat([h, read], -1)), (h, memory)

    def trace(self, state):
        return {"hidden": state[0], "memory": state[1]}


class NextBit(Task):
    """Predict the next bit of a random sequence: a next-step prediction task for free running."""

    input_size, output_size, output_kind = 1, 1, "bits"

    def sample(self, batch_size, generator):
        bits = torch.randint(0, 2, (batch_size, 7, 1), generator=generator).float()
        inputs = torch.cat([torch.zeros(batch_size, 1, 1), bits[:, :-1]], 1)
        return Batch(inputs, bits, torch.ones(batch_size, 7))


def test_discriminator_learns_to_separate_different_state_distributions():
    torch.manual_seed(0)
    critic = Critic(6, adam(1e-2), "cpu", train_below=1.0, use_above=0.75)
    g = torch.Generator().manual_seed(1)
    draw = lambda centre: centre + 0.3 * torch.randn(32, 5, 6, generator=g)
    assert critic.accuracy(draw(0.5), draw(-0.5)) < 0.9
    for _ in range(25):
        critic.train_step(draw(0.5), draw(-0.5))
    assert critic.accuracy(draw(0.5), draw(-0.5)) == 1.0


def prepared(trainer, model, task):
    """The attributes `fit` sets, for calling the update pieces directly."""
    trainer.model, trainer.task, trainer.device = model, task, torch.device("cpu")
    trainer.generator = torch.Generator().manual_seed(0)
    return trainer


def parameters(critic):
    return [p.detach().clone() for p in critic.net.parameters()]


def test_gates_respect_the_accuracy_thresholds():
    torch.manual_seed(0)
    trainer = prepared(forcing(), GRU(1, 1, hidden_size=4), NextBit())
    critic = trainer.critics["hidden"]
    real, fake = torch.full((16, 5, 4), 0.5), torch.full((16, 5, 4), -0.5, requires_grad=True)

    # An untrained discriminator (accuracy 0.5 on these): it trains, the generator gets no term.
    before, metrics = parameters(critic), {}
    assert critic.accuracy(real, fake) == 0.5
    term = trainer.gated_term("hidden", real, fake, fake, metrics)
    assert term == 0.0 and not isinstance(term, torch.Tensor)
    assert metrics["d_hidden_used"] == 0 and metrics["d_hidden_accuracy"] == 0.5
    assert any(not torch.equal(a, b) for a, b in zip(before, parameters(critic)))

    # A perfect discriminator: it is left alone, and the generator's term is built.
    while critic.accuracy(real, fake) < 1.0:
        critic.train_step(real, fake)
    before, metrics = parameters(critic), {}
    term = trainer.gated_term("hidden", real, fake, fake, metrics)
    assert all(torch.equal(a, b) for a, b in zip(before, parameters(critic)))
    assert metrics["d_hidden_used"] == 1 and term.requires_grad and term.item() > 0
    term.backward()
    assert fake.grad.abs().sum() > 0  # the generator is pushed through the discriminator


def test_sequence_correct_by_hand():
    targets = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 0.0]]])
    mask = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    outputs = torch.tensor([[[3.0, -2.0], [5.0, 5.0]], [[1.0, 1.0], [-1.0, -1.0]]])  # seq 0: unscored step wrong
    assert sequence_correct("bits", outputs, Batch(outputs, targets, mask), None).tolist() == [True, False]
    logits = torch.tensor([[[0.0, 2.0], [2.0, 0.0]]])
    assert sequence_correct("classes", logits, Batch(logits, torch.tensor([[1, 1]]), torch.tensor([[1.0, 0.0]])), 2).tolist() == [True]


def test_professor_forcing_needs_a_next_step_task(tmp_path):
    from memrepro.tasks.algorithmic import Add

    with pytest.raises(ConfigError, match="needs bits, pixels or classes"):
        forcing().fit(GRU(2, 1, hidden_size=4), Add(length=5), tmp_path)
    copy = Copy(bits=2, lengths=(1, 2))
    with pytest.raises(ConfigError, match="must predict its next input"):
        forcing().fit(GRU(copy.input_size, copy.output_size, hidden_size=4), copy, tmp_path)
    assert (tmp_path / io.METRICS).exists() is False


def test_memory_forcing_needs_a_memory():
    trainer = prepared(forcing(MemoryForcing), GRU(1, 1, hidden_size=4), NextBit())
    with pytest.raises(ConfigError, match="exposes no memory in trace"):
        trainer.critics


def test_professor_forcing_run_end_to_end(tmp_path):
    torch.manual_seed(0)
    result = forcing(MemoryForcing).fit(TinyMemoryNet(1, 1), NextBit(eval_size=16), tmp_path)
    rows = pd.read_csv(tmp_path / io.METRICS)
    for column in ("train_d_hidden_accuracy", "train_d_memory_accuracy", "train_correct", "eval_bit_errors"):
        assert column in rows
    assert 0 <= result["correct_predictions"] <= 6 * 8
    ckpt = torch.load(tmp_path / io.CHECKPOINT, weights_only=False)
    assert set(ckpt["extra"]["critics"]) == {"hidden", "memory"} and ckpt["progress"]["correct"] == result["correct_predictions"]


def test_classifier_variant_fills_buffers_and_trains_when_both_are_full():
    torch.manual_seed(0)
    task = Copy(bits=1, lengths=(1, 1))  # one bit: guessing is right half the time
    trainer = prepared(forcing(MemoryForcing, variant="classifier", buffer_size=16), TinyMemoryNet(task.input_size, task.output_size), task)
    g = torch.Generator().manual_seed(0)
    seen, used = 0, []
    for _ in range(12):
        batch = task.sample(8, g)
        counts = {k: len(b) for k, b in trainer.buffers.items()}
        loss, metrics, total = trainer._objective(batch)
        correct = round(metrics["correct"].item() * 8)  # the batch's share of right sequences
        seen += correct
        assert len(trainer.buffers[True]) == min(16, counts[True] + correct)
        assert len(trainer.buffers[False]) == min(16, counts[False] + 8 - correct)
        ready = all(n >= 8 for n in counts.values())
        assert ("d_memory_accuracy" in metrics) == ready
        used.append(ready)
    assert 0 < seen < 12 * 8 and any(used)
    # The checkpoint state restores buffers and classifier exactly.
    twin = prepared(forcing(MemoryForcing, variant="classifier", buffer_size=16), TinyMemoryNet(task.input_size, task.output_size), task)
    twin._load_extra_state(trainer._extra_state())
    assert all(torch.equal(a, b) for a, b in zip(parameters(trainer.critics["memory"]), parameters(twin.critics["memory"])))
    assert all(torch.equal(a, b) for k in (True, False) for a, b in zip(trainer.buffers[k], twin.buffers[k]))


def test_trainer_configs_compose_with_the_papers_settings():
    from hydra.utils import instantiate

    from memrepro.config import compose

    pf = instantiate(compose(["trainer=professor_forcing"]).trainer)
    mf = instantiate(compose(["trainer=memory_forcing", "trainer.variant=classifier"]).trainer)
    assert type(pf) is ProfessorForcing and pf.features == ("hidden",) and pf.gates == (0.99, 0.75)
    assert type(mf) is MemoryForcing and mf.variant == "classifier" and mf.features == ("memory",)
    optimizer = pf.make_optimizer([torch.zeros(1, requires_grad=True)])
    assert optimizer.defaults["lr"] == 1e-4 and optimizer.defaults["eps"] == 1e-9 and tuple(optimizer.defaults["betas"]) == (0.9, 0.98)
    with pytest.raises(ConfigError, match="trainer.variant='both'"):
        forcing(MemoryForcing, variant="both")


@pytest.mark.parametrize("name", ["ntm", "dnc", "smann"])
def test_memory_models_hidden_and_memory_features_carry_gradients(name):
    """The discriminators' features must keep their graph, or C_h / C_m / C_p would never reach
    the model (a detached trace made memory forcing a no-op)."""
    from memrepro.config import compose
    from memrepro.run import build

    task, model, _ = build(compose([f"model={name}", "task=copy", "scale=smoke", "task.bits=2", "task.lengths=[2,2]"]))
    _, states = model(task.sample(3, torch.Generator().manual_seed(0)).inputs, return_states=True)
    for key in ("hidden", "memory"):
        feature = torch.stack([model.trace(s)[key].flatten(1) for s in states], dim=1)
        grads = torch.autograd.grad(feature.square().sum(), list(model.parameters()), allow_unused=True, retain_graph=True)
        assert any(g is not None and g.abs().sum() > 0 for g in grads), key


class Ones(NextBit):
    """A sequence of ones: teacher-forced inputs are all ones, an untrained model's samples are not."""

    def sample(self, batch_size, generator):
        bits = torch.ones(batch_size, 7, 1)
        return Batch(torch.cat([torch.zeros(batch_size, 1, 1), bits[:, :-1]], 1), bits, torch.ones(batch_size, 7))


@pytest.mark.parametrize("variant", ["professor", "adversarial", "classifier"])
def test_discriminator_passes_the_gate_and_its_term_reaches_the_generator(variant):
    """Within 60 updates the discriminator is accurate enough to act (forcing_engaged = 1), and the
    adversarial or classifier term alone then gives the generator's parameters a nonzero gradient."""
    torch.manual_seed(0)
    task = Copy(bits=1, lengths=(1, 1)) if variant == "classifier" else Ones()
    cls, kw = (ProfessorForcing, {}) if variant == "professor" else (MemoryForcing, {"variant": variant, "buffer_size": 16})
    model = TinyMemoryNet(task.input_size, task.output_size)
    trainer = prepared(forcing(cls, **kw), model, task)
    g, optimizer = torch.Generator().manual_seed(0), torch.optim.Adam(model.parameters(), lr=1e-2)
    for update in range(60):
        loss, metrics, total = trainer._objective(task.sample(8, g))
        if metrics["forcing_engaged"] == 1:
            break
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    assert metrics["forcing_engaged"] == 1, f"never engaged in {update + 1} updates"
    term = total - loss  # the adversarial / classifier term(s) only
    grads = torch.autograd.grad(term, list(model.parameters()), allow_unused=True)
    assert sum(g.abs().sum().item() for g in grads if g is not None) > 0
