"""Professor Forcing and Memory Forcing: teacher-forced training plus adversarial terms.

* `ProfessorForcing` (Lamb et al. 2016, "Professor Forcing", §3): a discriminator D_h reads the
  sequence of hidden states and tells teacher-forced runs (label 1) from free-running ones (label
  0, the model fed its own samples); D_h minimises the cross-entropy C_d (Memory Forcing eq. 7)
  and the generator minimises NLL + C_h, with C_h = -log D_h(free-running states) (eq. 8).
* `MemoryForcing` (Asadulaev, Tretyak & Filchenkov, "Memory Forcing", §3), two variants:
  - ``adversarial`` (eq. 9): a second discriminator D_m on the sequence of memory matrices;
    generator loss NLL + C_h + C_m (sequence generation, §4.1).
  - ``classifier`` (eq. 10): the memory sequences of correct predictions (distance exactly 0
    after rounding) and of incorrect ones fill two buffers; once both hold a batch, a classifier
    D_p learns to tell them apart, and the generator minimises NLL + C_p with
    C_p = -log D_p(this batch's memory sequences): memories should look like those of correct
    answers (copy task, §4.2). No free-running pass is needed.

Discriminators (Memory Forcing §4.1): a GRU of 128 units over the sequence, then dense layers of
256, 8 and 4 ReLU units and one logit: the paper's "[hidden size, 128, 256, 8, 4, output size]".

Gating (Lamb et al. 2016, stated with their experiments): the generator takes the adversarial
term only while its discriminator is accurate enough to be informative (accuracy ≥ 0.75), and
the discriminator is not trained while it is already nearly perfect (accuracy > 0.99). The
accuracy is measured on this batch, under no_grad, *before* any loss is built, so a gated-off
term never enters the graph.

Features come from ``model.trace(state)``: key ``hidden`` for D_h, key ``memory`` (flattened) for
D_m / D_p. Free running feeds the model's own sample of step t as the input of step t+1, so it
needs a next-step prediction task (input size = output size, e.g. ``mnist_generation``).

Correct predictions (the paper's copy metric, Table 2) are counted by the base `Trainer` for
every trainer, so plain teacher forcing and memory forcing report the same ``correct_predictions``.
"""
from __future__ import annotations

from collections import deque

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_sequence

from memrepro.errors import ConfigError
from memrepro.tasks.base import Batch, check_positive
from memrepro.train.trainer import Trainer

DISCRIMINATOR_SIZES = (128, 256, 8, 4)
VARIANTS = ("adversarial", "classifier")


class Discriminator(nn.Module):
    """Sequence [B, T, F] -> one logit per sequence (1 = teacher-forced / correct)."""

    def __init__(self, features: int, sizes=DISCRIMINATOR_SIZES):
        super().__init__()
        self.gru = nn.GRU(features, sizes[0], batch_first=True)
        layers, last = [], sizes[0]
        for size in sizes[1:]:
            layers += [nn.Linear(last, size), nn.ReLU()]
            last = size
        self.head = nn.Sequential(*layers, nn.Linear(last, 1))

    def forward(self, sequence: Tensor, lengths: Tensor | None = None) -> Tensor:
        if lengths is not None:
            sequence = pack_padded_sequence(sequence, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, h = self.gru(sequence)
        return self.head(h[-1]).squeeze(-1)


class Critic:
    """A discriminator with its optimizer, the two accuracy gates, and the standardisation of its
    inputs.

    Features are centred per feature and divided by one overall scale, both taken from this
    batch's real and fake sequences together (detached) and applied to every sequence the critic
    reads for the batch: the DNC's memory entries are ~1e-3 (Memory Forcing §4.2) and its hidden states O(1),
    and a GRU reading raw 1e-3 inputs stays at chance for thousands of updates (docs/forcing.md).
    """

    def __init__(self, features: int, make_optimizer, device, train_below: float, use_above: float, steps: int = 1):
        self.net = Discriminator(features).to(device)
        self.optimizer = make_optimizer(self.net.parameters())
        self.train_below, self.use_above, self.steps = train_below, use_above, steps
        self.centre, self.scale = 0.0, 1.0

    def fit_scale(self, real: Tensor, fake: Tensor) -> None:
        """Standardise this batch's inputs by the pooled statistics of both kinds of sequence."""
        with torch.no_grad():
            flat = torch.cat([real.detach().flatten(0, -2), fake.detach().flatten(0, -2)])
            self.centre = flat.mean(0)
            self.scale = (flat - self.centre).std().clamp_min(1e-8)

    def logits(self, sequence: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.net((sequence - self.centre) / self.scale, lengths)

    def accuracy(self, real: Tensor, fake: Tensor, real_lengths=None, fake_lengths=None) -> float:
        with torch.no_grad():
            right = torch.cat([self.logits(real, real_lengths) > 0, self.logits(fake, fake_lengths) <= 0])
        return right.float().mean().item()

    def train_step(self, real: Tensor, fake: Tensor, real_lengths=None, fake_lengths=None) -> None:
        """``steps`` updates on C_d (eq. 7): real sequences labelled 1, fake ones 0 (inputs detached)."""
        real, fake = real.detach(), fake.detach()
        for _ in range(self.steps):
            real_logits, fake_logits = self.logits(real, real_lengths), self.logits(fake, fake_lengths)
            loss = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits)) + F.binary_cross_entropy_with_logits(
                fake_logits, torch.zeros_like(fake_logits)
            )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()

    def fooling_loss(self, fake: Tensor) -> Tensor:
        """C = -log D(fake) (eq. 8): the generator's term. Gradients reach D's parameters too;
        `train_step` clears them before D's own update."""
        logits = self.logits(fake)
        return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))

    def state_dict(self) -> dict:
        return {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])


class ProfessorForcing(Trainer):
    """Teacher forcing + discriminator(s) on the hidden (and memory) sequence, free vs teacher-forced."""

    def __init__(
        self,
        discriminator_optimizer,
        memory: bool = False,
        train_discriminator_below: float = 0.99,
        use_adversary_above: float = 0.75,
        discriminator_steps: int = 1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_positive("trainer.discriminator_steps", discriminator_steps)
        for name, value in (("train_discriminator_below", train_discriminator_below), ("use_adversary_above", use_adversary_above)):
            if not 0 <= value <= 1:
                raise ConfigError(f"trainer.{name}={value!r}: an accuracy in [0, 1]")
        self.make_discriminator_optimizer = discriminator_optimizer
        self.gates = (train_discriminator_below, use_adversary_above)
        self.discriminator_steps = discriminator_steps
        self.features = ("hidden", "memory") if memory else ("hidden",)
        self._critics: dict[str, Critic] | None = None

    # --- features ------------------------------------------------------------------------------
    def traced(self, states: list) -> dict[str, Tensor]:
        """The per-step states -> {feature: [B, T, F]}, for the features the critics read."""
        traces = [self.model.trace(state) for state in states]
        missing = [f for f in self.features if f not in traces[0]]
        if missing:
            raise ConfigError(
                f"trainer={type(self).__name__}: model {type(self.model).__name__} exposes no {'/'.join(missing)} in trace(); "
                "use a memory model (e.g. model=dnc) for memory forcing"
            )
        return {f: torch.stack([t[f].flatten(1) for t in traces], dim=1) for f in self.features}

    @property
    def critics(self) -> dict[str, Critic]:
        """Built on first use: their input sizes come from the model's trace."""
        if self._critics is None:
            with torch.no_grad():
                probe = self.traced([self.model.initial_state(1)])
            self._critics = {
                f: Critic(probe[f].shape[-1], self.make_discriminator_optimizer, self.device, *self.gates, self.discriminator_steps) for f in self.features
            }
        return self._critics

    free_running = True
    other_tasks = ""  # a hint appended to check_task's input-size error: the variant that fits

    def check_task(self, task) -> None:
        if task.output_kind == "regression":
            raise ConfigError(
                f"trainer={type(self).__name__}: needs bits, pixels or classes outputs to sample and to count "
                f"correct predictions; {type(task).__name__} is regression"
            )
        if self.free_running and task.input_size != task.output_size:
            raise ConfigError(
                f"trainer={type(self).__name__} runs the model on its own samples, so the task must predict its next input "
                f"(input size = output size); {type(task).__name__} has {task.input_size} -> {task.output_size}{self.other_tasks}"
            )

    def free_run(self, batch: Batch) -> list:
        """States of a free-running pass: the input of step t+1 is the model's sample at step t."""
        state = self.model.initial_state(len(batch))
        x, states = batch.inputs[:, 0], []
        for _ in range(batch.inputs.shape[1]):
            y, state = self.model.step(x, state)
            states.append(state)
            x = self.sample_input(y.detach())
        return states

    def sample_input(self, y: Tensor) -> Tensor:
        if self.task.output_kind == "classes":
            logits = y.unflatten(-1, (-1, self.task.num_classes))
            picks = torch.multinomial(logits.softmax(-1).flatten(0, -2), 1).view(logits.shape[:-1])
            return F.one_hot(picks, self.task.num_classes).flatten(-2).float()
        return torch.bernoulli(torch.sigmoid(y))

    # --- the objective -------------------------------------------------------------------------
    def _objective(self, batch: Batch):
        outputs, states = self.model(batch.inputs, return_states=True)
        loss, metrics, total = self._loss(outputs, batch)
        teacher, free = self.traced(states), self.traced(self.free_run(batch))
        for name in self.features:
            total = total + self.gated_term(name, teacher[name], free[name], free[name], metrics)
        return loss, metrics, total

    def gated_term(self, name: str, real: Tensor, fake: Tensor, fooled: Tensor, metrics: dict, real_lengths=None, fake_lengths=None):
        """Measure D's accuracy on this batch, train D unless it is nearly perfect, and return the
        generator's term on ``fooled`` only if D is accurate enough (else no graph is built)."""
        critic = self.critics[name]
        critic.fit_scale(real, fake)
        accuracy = critic.accuracy(real, fake, real_lengths, fake_lengths)
        if accuracy <= critic.train_below:
            critic.train_step(real, fake, real_lengths, fake_lengths)
        use = accuracy >= critic.use_above
        metrics[f"d_{name}_accuracy"], metrics[f"d_{name}_used"] = torch.tensor(accuracy), torch.tensor(float(use))
        # 1 if any term entered this update's loss; logged every update, so its mean is the engaged share
        metrics["forcing_engaged"] = torch.tensor(float(use or metrics.get("forcing_engaged", 0) == 1))
        return critic.fooling_loss(fooled) if use else 0.0

    # --- bookkeeping ---------------------------------------------------------------------------
    def _final(self) -> dict:
        """The summary gains ``forcing_engaged``: the share of all updates in which a term acted
        (each logging interval's mean weighted by its updates); the tables show it per row."""
        result, last, engaged = super()._final(), 0, 0.0
        for row in self.state.rows:
            engaged += row.get("train_forcing_engaged", 0.0) * (row["step"] - last)
            last = row["step"]
        result["forcing_engaged"] = engaged / last if last else 0.0
        return result

    def _extra_state(self) -> dict:
        return {"critics": {f: c.state_dict() for f, c in self.critics.items()}}

    def _load_extra_state(self, extra: dict) -> None:
        for f, critic in self.critics.items():
            critic.load_state_dict(extra["critics"][f])


class MemoryForcing(ProfessorForcing):
    """Memory Forcing, eq. 9 (``variant=adversarial``) or eq. 10 (``variant=classifier``)."""

    other_tasks = "; for a task like copy, trainer.variant=classifier (eq. 10, mf-2) runs no free-running pass"

    def __init__(self, variant: str = "adversarial", buffer_size: int = 512, **kwargs):
        if variant not in VARIANTS:
            raise ConfigError(f"trainer.variant={variant!r}: choose adversarial (eq. 9) or classifier (eq. 10)")
        check_positive("trainer.buffer_size", buffer_size)
        super().__init__(memory=True, **kwargs)
        self.variant = variant
        self.free_running = variant == "adversarial"
        if variant == "classifier":
            self.features = ("memory",)
            self.buffers = {True: deque(maxlen=buffer_size), False: deque(maxlen=buffer_size)}
            self._buffer_generator = None

    @property
    def buffer_generator(self) -> torch.Generator:
        """Draws from the buffers; its own stream, so the training data match teacher forcing's."""
        if self._buffer_generator is None:
            self._buffer_generator = torch.Generator().manual_seed(self.generator.initial_seed() + 1)
        return self._buffer_generator

    def _objective(self, batch: Batch):
        if self.variant == "adversarial":
            return super()._objective(batch)
        outputs, states = self.model(batch.inputs, return_states=True)
        loss, metrics, total = self._loss(outputs, batch)
        metrics["forcing_engaged"] = torch.tensor(0.0)  # until both buffers hold a batch
        correct = self.sequence_correct(outputs, batch)
        memories = self.traced(states)["memory"]
        if all(len(b) >= len(batch) for b in self.buffers.values()):
            (good, good_lengths), (bad, bad_lengths) = (self.draw(self.buffers[k], len(batch)) for k in (True, False))
            total = total + self.gated_term("memory", good, bad, memories, metrics, good_lengths, bad_lengths)
        for memory, ok in zip(memories.detach(), correct.tolist()):
            self.buffers[ok].append(memory)
        metrics["buffer_correct"], metrics["buffer_incorrect"] = (torch.tensor(float(len(self.buffers[k]))) for k in (True, False))
        return loss, metrics, total

    def draw(self, buffer: deque, n: int) -> tuple[Tensor, Tensor]:
        """n random buffered sequences, padded, with their lengths (sequences differ in length)."""
        picks = torch.randperm(len(buffer), generator=self.buffer_generator)[:n].tolist()
        items = [buffer[i] for i in picks]
        return pad_sequence(items, batch_first=True), torch.tensor([len(m) for m in items])

    def _extra_state(self) -> dict:
        extra = super()._extra_state()
        if self.variant == "classifier":
            extra["buffers"] = {k: list(b) for k, b in self.buffers.items()}
            extra["buffer_generator"] = self.buffer_generator.get_state()
        return extra

    def _load_extra_state(self, extra: dict) -> None:
        super()._load_extra_state(extra)
        if self.variant == "classifier":
            for k, items in extra["buffers"].items():
                self.buffers[k].clear()
                self.buffers[k].extend(items)
            self.buffer_generator.set_state(extra["buffer_generator"])
