"""Algorithmic tasks of the NTM and SMANN papers: copy, categorical copy, adding, frequency.

Sources: Graves, Wayne & Danihelka 2014, "Neural Turing Machines" §4.1 and the lecture slides
"Neural architectures with memory" (copy: 8-bit vectors, 1 ≤ length ≤ 20); the SMANN paper
("Sparse memory-augmented neural network", ICLR 2020 submission) §4 for adding, categorical copy
and frequency discrimination, which it takes from Hochreiter & Schmidhuber 1997, Arjovsky et al.
2016 (uRNN) and Neil et al. 2016 / Campos et al. 2017 (Skip-RNN). The choices made where the
papers are vague are listed in docs/tasks.md.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from memrepro.errors import ConfigError
from memrepro.tasks.base import Batch, Task, check_int, check_positive, check_range, lesson_high


def _pair(name: str, value) -> tuple:
    if len(value) != 2:
        raise ConfigError(f"{name}={list(value)}: give two numbers [min, max]")
    return tuple(value)


class Copy(Task):
    """NTM copy (Graves et al. 2014 §4.1): read a sequence of random bit vectors, then write it back.

    Each step has ``bits`` data channels and one delimiter channel. The input is L random
    vectors, then the delimiter flag alone, then L empty steps during which the target is the
    input sequence; only these L steps are scored ("no inputs were presented to the network while
    it receives the targets", §4.1). L is uniform on ``lengths`` (default 1..20, the paper's
    training range); a batch is padded to its longest sequence with unscored zero steps.
    `extra_eval_sets` holds one fixed set per length of ``eval_lengths`` (default 10, 20, 30, 50,
    120: the lengths of the paper's generalisation figures 4 and 6), keyed ``len120`` etc.

    Curriculum: with ``num_lessons`` = K > 1 the longest length grows linearly; lesson k draws
    L uniformly from lo .. lo + ceil((hi − lo)·(k + 1)/K). K = 1 (default) is no curriculum.

    Worked example (bits=3, L=2; rows are channels, columns steps, the last input row is the
    delimiter)::

        inputs   1 0 0 0 0      targets  0 0 0 1 0      mask  0 0 0 1 1
                 0 1 0 0 0               0 0 0 0 1
                 1 1 0 0 0               0 0 0 1 1
                 0 0 1 0 0
    """

    output_kind = "bits"

    def __init__(self, bits: int = 8, lengths=(1, 20), eval_lengths=(10, 20, 30, 50, 120), num_lessons: int = 1, **regime):
        super().__init__(**regime)
        check_int("task.bits", bits)
        lo, hi = _pair("task.lengths", lengths)
        check_int("task.lengths[0]", lo)
        check_int("task.lengths[1]", hi)
        check_range("task.lengths", lo, hi)
        for i, n in enumerate(eval_lengths):
            check_int(f"task.eval_lengths[{i}]", n)
        check_int("task.num_lessons", num_lessons)
        self.bits, self.lengths, self.eval_lengths = bits, (lo, hi), tuple(eval_lengths)
        self.num_lessons = num_lessons
        self.input_size, self.output_size = bits + 1, bits

    def max_length(self) -> int:
        """The longest length drawn in the current lesson."""
        return lesson_high(*self.lengths, self.lesson, self.num_lessons)

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        lengths = torch.randint(self.lengths[0], self.max_length() + 1, (batch_size,), generator=generator)
        return self.sequences(lengths, generator)

    def extra_eval_sets(self, generator: torch.Generator) -> dict[str, Batch]:
        return {f"len{n}": self.sequences(torch.full((self.eval_size,), n), generator) for n in self.eval_lengths}

    def sequences(self, lengths: Tensor, generator: torch.Generator) -> Batch:
        """One sequence per entry of ``lengths`` [B], padded to 2·max(L) + 1 steps."""
        B, L = len(lengths), int(lengths.max())
        t, n = torch.arange(2 * L + 1), lengths[:, None]
        bits = torch.randint(0, 2, (B, L, self.bits), generator=generator).float()
        bits *= (t[:L] < n)[..., None]  # zero the vectors past each sequence's own length
        inputs = torch.zeros(B, 2 * L + 1, self.bits + 1)
        inputs[:, :L, : self.bits] = bits
        inputs[torch.arange(B), lengths, self.bits] = 1.0
        source = t - n - 1  # step t of the output phase repeats input vector t - L - 1
        mask = (source >= 0) & (source < n)
        index = source.clamp(0, L - 1)[..., None].expand(-1, -1, self.bits)
        targets = bits.gather(1, index) * mask[..., None]
        return Batch(inputs, targets, mask.float())


class CopyMemory(Task):
    """Categorical copy over a long gap (SMANN §4 "copy task"; uRNN, Arjovsky et al. 2016 §4.1).

    Categories: 0 blank, 1..S symbols (S = ``num_symbols`` = 8), S + 1 delimiter (9 in the
    paper). A sequence has I + 2N + 1 steps, N = ``copy_length`` = 10 and I = ``gap``: N symbols
    drawn uniformly, I blanks, the delimiter (step I + N + 1 counted from 1: "the item located at
    I + 11"), then N blanks. The target is I + N + 1 blanks, then the N symbols. Every step is
    scored; the loss is the mean cross-entropy over steps, as in the paper. Inputs are one-hot
    over the S + 2 categories, outputs are logits over the S + 1 a target can take.

    Metric ``baseline``: the loss of a network that knows when to answer but remembers no symbol
    (certain blanks, then uniform over S for N steps) = N·ln S / (I + 2N + 1). SMANN's
    "len = 120" is I = 120: its RNN entry in Table 3, 0.1475, is exactly 10·ln 8 / 141. The uRNN
    paper writes 10·log 8 / (T + 20) with T = I + 1 (its gap includes the delimiter).

    Worked example (S=2, N=2, I=1; one category id per step, 3 = delimiter)::

        inputs   2 1 0 3 0 0
        targets  0 0 0 0 2 1        mask  1 1 1 1 1 1
    """

    output_kind = "classes"

    def __init__(self, gap: int = 120, copy_length: int = 10, num_symbols: int = 8, **regime):
        super().__init__(**regime)
        check_int("task.gap", gap, minimum=0)
        check_int("task.copy_length", copy_length)
        check_int("task.num_symbols", num_symbols, minimum=2)
        self.gap, self.copy_length, self.num_symbols = gap, copy_length, num_symbols
        self.length = gap + 2 * copy_length + 1
        self.input_size = num_symbols + 2
        self.num_classes = self.output_size = num_symbols + 1

    @property
    def baseline(self) -> float:
        return self.copy_length * math.log(self.num_symbols) / self.length

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        N, S = self.copy_length, self.num_symbols
        symbols = torch.randint(1, S + 1, (batch_size, N), generator=generator)
        ids = torch.zeros(batch_size, self.length, dtype=torch.long)
        ids[:, :N] = symbols
        ids[:, self.gap + N] = S + 1
        targets = torch.zeros_like(ids)
        targets[:, -N:] = symbols
        return Batch(F.one_hot(ids, S + 2).float(), targets, torch.ones(batch_size, self.length))

    def metrics(self, outputs: Tensor, batch: Batch) -> dict[str, float]:
        return {"baseline": self.baseline}


class Add(Task):
    """Adding problem (SMANN §4; Hochreiter & Schmidhuber 1997, experiment 4).

    Each step carries (value, marker). Values ~ U[``values``] (default U[−0.5, 0.5]). Exactly
    two markers are 1: one at a step drawn uniformly from the first 10% of the sequence, one from
    the last 10% (windows of max(1, T // 10) steps). The target, scored at the last step only
    (MSE), is the sum of the two marked values.

    Metric ``baseline_mse``: the MSE on the same batch of always answering the expected sum
    lo + hi, the trivial memory-less answer. Its expectation is the variance of the sum,
    2·(hi − lo)²/12 = 1/6 ≈ 0.167 for U[−0.5, 0.5].

    Worked example (T=10, windows of 1 step)::

        values   0.3 -0.1  0.2 ... 0.4 -0.2
        markers  1    0    0   ... 0    1
        target                          0.1   (scored at the last step only)
    """

    output_kind = "regression"
    input_size, output_size = 2, 1

    def __init__(self, length: int = 120, values=(-0.5, 0.5), **regime):
        super().__init__(**regime)
        check_int("task.length", length, minimum=2)
        lo, hi = _pair("task.values", values)
        if not lo < hi:
            raise ConfigError(f"task.values=[{lo}, {hi}]: the minimum must be below the maximum")
        self.length, self.values = length, (float(lo), float(hi))

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        T, (lo, hi) = self.length, self.values
        window = max(1, T // 10)
        values = lo + (hi - lo) * torch.rand(batch_size, T, generator=generator)
        first = torch.randint(0, window, (batch_size,), generator=generator)
        second = torch.randint(T - window, T, (batch_size,), generator=generator)
        markers = torch.zeros(batch_size, T)
        rows = torch.arange(batch_size)
        markers[rows, first] = markers[rows, second] = 1.0
        targets = torch.zeros(batch_size, T, 1)
        targets[:, -1, 0] = (values * markers).sum(1)
        mask = torch.zeros(batch_size, T)
        mask[:, -1] = 1.0
        return Batch(torch.stack([values, markers], dim=-1), targets, mask)

    def metrics(self, outputs: Tensor, batch: Batch) -> dict[str, float]:
        expected = sum(self.values)
        return {"baseline_mse": ((batch.targets[:, -1, 0] - expected) ** 2).mean().item()}


def _intervals(name: str, value) -> Tensor:
    """A list of [lo, hi] period ranges (ms) -> a float64 tensor [K, 2], checked."""
    rows = [tuple(v) for v in value]
    if not rows or any(len(r) != 2 or not 0 <= r[0] < r[1] for r in rows):
        raise ConfigError(f"{name}={[list(r) for r in rows]}: give a non-empty list of [lo, hi] with 0 ≤ lo < hi")
    return torch.tensor(rows, dtype=torch.float64)


def _uniform_on(intervals: Tensor, n: int, generator: torch.Generator) -> Tensor:
    """n draws, uniform on the union of disjoint intervals [K, 2], each in (lo, hi] (never 0)."""
    widths = intervals[:, 1] - intervals[:, 0]
    k = torch.multinomial(widths, n, replacement=True, generator=generator)
    return intervals[k, 1] - widths[k] * torch.rand(n, generator=generator, dtype=torch.float64)


class Frequency(Task):
    """Frequency discrimination (SMANN §4; Neil et al. 2016 task 1; Campos et al. 2017 §4).

    x_k = sin(2π (k·dt + φ) / P), k = 0 .. T−1, with phase shift φ ~ U(0, P). Class 1: P uniform
    on ``periods_class1`` (default (1, 2) ms); class 0: P uniform on the union of
    ``periods_class0`` (default (0, 1) ∪ (2, 3) ms). Exactly half of every batch (and of the
    data set) is class 1. Sampling interval ``dt`` = 1.0 ms and T = ``length`` = 120 (or 500), as
    in SMANN. The class is scored at the last step only. The Skip-RNN variant is a config:
    periods_class1=[[5, 6]], periods_class0=[[1, 5], [6, 100]], length=100.

    Worked example (T=4, dt=1, P=1.6 ms, φ=0.4 ms; class 1)::

        inputs   sin(2π·0.4/1.6)=1.00  sin(2π·1.4/1.6)=-0.71  sin(2π·2.4/1.6)=0.00  sin(2π·3.4/1.6)=0.71
        targets  -                     -                      -                      1
    """

    output_kind = "classes"
    input_size = 1
    num_classes = output_size = 2

    def __init__(self, length: int = 120, dt: float = 1.0, periods_class1=((1.0, 2.0),), periods_class0=((0.0, 1.0), (2.0, 3.0)), **regime):
        super().__init__(**regime)
        check_int("task.length", length)
        check_positive("task.dt", dt)
        one, zero = _intervals("task.periods_class1", periods_class1), _intervals("task.periods_class0", periods_class0)
        for a in one.tolist():
            for b in zero.tolist():
                if max(a[0], b[0]) < min(a[1], b[1]):
                    raise ConfigError(f"task.periods_class1 {a} overlaps task.periods_class0 {b}: the classes must not share periods")
        self.length, self.dt, self.periods_class1, self.periods_class0 = length, float(dt), one, zero

    @functools.cached_property
    def bayes_error(self) -> float:
        """The least error any classifier can reach. Sampled every dt, a sinusoid of period P is
        one of normalised frequency ν = (dt/P mod 1) folded onto [0, ½] (the aliases of ν and 1 − ν
        are the same sequences up to a uniform phase), so the ideal observer sees ν alone and errs
        on the overlap of the two classes' densities of ν: ½ ∫ min(p₀, p₁) dν, estimated from 2·10⁶
        draws per class on 4,000 bins. SMANN's printed task (dt = 1 ms, periods (1, 2) vs (0, 1) ∪
        (2, 3) ms) aliases: 0.407; at dt = 0.1 ms, 0.004 (docs/tasks.md)."""
        generator, n, bins = torch.Generator().manual_seed(0), 2_000_000, 4000
        densities = []
        for periods in (self.periods_class1, self.periods_class0):
            nu = torch.remainder(self.dt / _uniform_on(periods, n, generator), 1.0)
            densities.append(torch.histc(torch.minimum(nu, 1 - nu).float(), bins=bins, min=0.0, max=0.5) / n)
        return 0.5 * torch.minimum(*densities).sum().item()

    def metrics(self, outputs: Tensor, batch: Batch) -> dict[str, float]:
        """``bayes_error``: the floor of the error metric (logged beside it, as baselines are)."""
        return {"bayes_error": self.bayes_error}

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        B, T = batch_size, self.length
        labels = (torch.arange(B) % 2)[torch.randperm(B, generator=generator)]
        period = torch.where(labels == 1, _uniform_on(self.periods_class1, B, generator), _uniform_on(self.periods_class0, B, generator))
        phase = period * torch.rand(B, generator=generator, dtype=torch.float64)
        time = torch.arange(T, dtype=torch.float64) * self.dt
        inputs = torch.sin(2 * math.pi * (time + phase[:, None]) / period[:, None]).float()[..., None]
        targets = torch.zeros(B, T, dtype=torch.long)
        targets[:, -1] = labels
        mask = torch.zeros(B, T)
        mask[:, -1] = 1.0
        return Batch(inputs, targets, mask)
