"""The four data sets of the Neural Memory Networks paper (Biggs & Nuttall, §IV.A–D).

The paper describes each data set in a few sentences and publishes no generator; the sequences
here follow those sentences, and docs/tasks.md lists what we had to choose. The paper trains on
fixed data sets and plots training and test error (Figs. 7, 8, 10), so the three classification
tasks default to the fixed-dataset regime; memory recall (Fig. 9, one convergence curve) is
sampled on the fly, since its default sequences (two 5-bit numbers) take only 1024 values.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import MultivariateNormal

from memrepro.errors import ConfigError
from memrepro.tasks.base import Batch, Task, check_int, check_positive


class MemoryRecall(Task):
    """Memory recall (NMN §IV.C): store a sequence of numbers, then output it on a blank cue.

    The input is ``length`` random ``bits``-bit numbers, then as many zero vectors, which "signify
    to the networks to read and output the stored sequences"; the target during those zero steps
    is the stored sequence, and only they are scored. Default: length 2, 5 bits (Fig. 9).
    Metric ``number_error``: the share of recalled numbers with at least one wrong bit.

    Worked example (length=2, bits=5; one row per step)::

        inputs   1 0 1 1 0      targets  - - - - -      mask 0
                 0 0 1 0 1               - - - - -           0
                 0 0 0 0 0               1 0 1 1 0           1
                 0 0 0 0 0               0 0 1 0 1           1
    """

    output_kind = "bits"

    def __init__(self, length: int = 2, bits: int = 5, **regime):
        super().__init__(**regime)
        check_int("task.length", length)
        check_int("task.bits", bits)
        self.length, self.bits = length, bits
        self.input_size = self.output_size = bits

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        numbers = torch.randint(0, 2, (batch_size, self.length, self.bits), generator=generator).float()
        blank = torch.zeros_like(numbers)
        mask = torch.cat([torch.zeros(batch_size, self.length), torch.ones(batch_size, self.length)], dim=1)
        return Batch(torch.cat([numbers, blank], dim=1), torch.cat([blank, numbers], dim=1), mask)

    def metrics(self, outputs: Tensor, batch: Batch) -> dict[str, float]:
        wrong = ((outputs > 0).float() != batch.targets).any(-1).float()
        return {"number_error": ((wrong * batch.mask).sum() / batch.mask.sum()).item()}


class _LaggedClassRecall(Task):
    """Shared generator of §IV.B and §IV.D: classify the input now and recall earlier classes.

    Classes c_t are i.i.d. uniform over ``num_classes`` (so nothing about the past can be guessed
    from the present); the input is x_t = onehot(c_t) + ``noise``·N(0, I). Output group k is the
    class at t − lags[k], scored from step lags[k] on; targets [B, T, G], mask [B, T, G].
    """

    output_kind = "classes"

    def __init__(self, lags: tuple[int, ...], num_classes: int, length: int, noise: float, **regime):
        super().__init__(**regime)
        check_int("task.num_classes", num_classes, minimum=2)
        check_int("task.length", length)
        check_positive("task.noise", noise, allow_zero=True)
        self.lags, self.length, self.noise = lags, length, noise
        self.num_classes = self.input_size = num_classes
        self.output_size = len(lags) * num_classes

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        C, T = self.num_classes, self.length
        classes = torch.randint(C, (batch_size, T), generator=generator)
        inputs = F.one_hot(classes, C).float() + self.noise * torch.randn(batch_size, T, C, generator=generator)
        source = torch.arange(T)[:, None] - torch.tensor(self.lags)  # [T, G]: the step each output names
        targets = classes[:, source.clamp(min=0)]
        mask = (source >= 0).float().expand(batch_size, -1, -1).contiguous()
        return Batch(inputs, targets, mask)

    def group_error(self, outputs: Tensor, batch: Batch, groups: slice) -> float:
        """Share of wrong scored outputs among the output groups ``groups``."""
        predicted = outputs.reshape(*batch.targets.shape, self.num_classes).argmax(-1)
        wrong, mask = (predicted != batch.targets)[..., groups].float(), batch.mask[..., groups]
        return ((wrong * mask).sum() / mask.sum().clamp_min(1)).item()


class ClassificationRecall(_LaggedClassRecall):
    """Classification and recall (NMN §IV.B): "classify an input and also state the previous two
    classifications it made, in the order it made them".

    Output groups: the class of the current input, then the classes ``history`` = 2 steps back
    (t−1, t−2); group k is scored from step k on. Three classes by default, well separated
    (noise 0.1), so the current output is easy and the history outputs need memory: a memory-less
    network stays at chance, (C−1)/C = 66.7%, on them (the paper: "no better than converging to
    the most prolific output"). Metrics ``error_current`` and ``error_history`` (both history
    groups together).

    Worked example (C=3, T=4, noise 0; classes 2 0 1 1; "-" unscored)::

        inputs   onehot(2) onehot(0) onehot(1) onehot(1)
        targets  [2 - -]   [0 2 -]   [1 0 2]   [1 1 0]
    """

    def __init__(self, num_classes: int = 3, history: int = 2, length: int = 50, noise: float = 0.1, **regime):
        check_int("task.history", history)
        check_int("task.length", length)
        if length <= history:
            raise ConfigError(f"task.length={length} with task.history={history}: the sequence must be longer than the history")
        super().__init__(tuple(range(history + 1)), num_classes, length, noise, **regime)

    def metrics(self, outputs: Tensor, batch: Batch) -> dict[str, float]:
        return {
            "error_current": self.group_error(outputs, batch, slice(0, 1)),
            "error_history": self.group_error(outputs, batch, slice(1, None)),
        }


class ExtendedRecall(_LaggedClassRecall):
    """Extended recall (NMN §IV.D): "some classifications depending only upon the current input,
    and some classifications depending on information from 25 inputs prior".

    Two output groups of 3 classes each: the class of the current input (immediate) and the
    class of the input ``delay`` = 25 steps earlier (long-term, scored from step 25 on). Chance
    on the long-term outputs is 2/3 = 66.7% error, the RNN's figure in the paper. Metrics
    ``error_immediate`` and ``error_long``; on the train and test splits they give the four
    curves of Fig. 10.

    With ``cued`` the long-term classifications are only "some" of them: an extra input channel
    flags every ``delay``-th step (0, 25, 50, …) and the long-term output is scored only there, so
    each flagged step asks for the class shown at the previous flag. Without it (the default here;
    conf/task/extended_recall.yaml sets it, see docs/tasks.md) the long-term output is scored at
    every step from ``delay`` on.

    Worked example (C=3, delay=2, T=5, noise 0; classes 2 0 1 1 2)::

        targets  [2 -]  [0 -]  [1 2]  [1 0]  [2 1]
        cued:    cue 1 0 1 0 1; long-term scored at steps 2 and 4 only (classes 2 and 1)
    """

    def __init__(self, num_classes: int = 3, delay: int = 25, length: int = 100, noise: float = 0.1, cued: bool = False, **regime):
        check_int("task.delay", delay)
        check_int("task.length", length)
        if length <= delay:
            raise ConfigError(f"task.length={length} with task.delay={delay}: the sequence must be longer than the delay")
        super().__init__((0, delay), num_classes, length, noise, **regime)
        self.cued = cued
        self.input_size += int(cued)

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        batch = super().sample(batch_size, generator)
        if not self.cued:
            return batch
        cue = (torch.arange(self.length) % self.lags[1] == 0).float()
        mask = batch.mask * torch.stack([torch.ones_like(cue), cue], dim=-1)
        return Batch(torch.cat([batch.inputs, cue[:, None].expand(batch_size, -1, 1)], dim=-1), batch.targets, mask)

    def metrics(self, outputs: Tensor, batch: Batch) -> dict[str, float]:
        return {
            "error_immediate": self.group_error(outputs, batch, slice(0, 1)),
            "error_long": self.group_error(outputs, batch, slice(1, 2)),
        }


def bayes_classes(x: Tensor, means: Tensor, scale_tril: Tensor) -> Tensor:
    """The memory-less Bayes classifier with equal priors: the most likely Gaussian for each point."""
    densities = MultivariateNormal(means, scale_tril=scale_tril, validate_args=False)
    return densities.log_prob(x[..., None, :]).argmax(-1)


@functools.lru_cache(maxsize=8)
def tuned_gaussians(num_classes: int, dims: int, target_error: float, seed: int, samples: int) -> tuple[Tensor, Tensor]:
    """Means [C, d] and Cholesky factors [C, d, d] of C random Gaussians, scaled by one common
    spread so that `bayes_classes` errs ``target_error`` on ``samples`` Monte-Carlo points.

    Geometric bisection on the spread, the same points (up to scale) for every candidate so the
    error is a monotone step function of it. Cached, as the tuning takes about a second.
    """
    g = torch.Generator().manual_seed(seed)
    means = 2 * torch.rand(num_classes, dims, generator=g) - 1
    a = torch.randn(num_classes, dims, dims, generator=g)
    shape = torch.linalg.cholesky(a @ a.mT / dims + 0.5 * torch.eye(dims))
    classes = torch.randint(num_classes, (samples,), generator=g)
    offsets = (shape[classes] @ torch.randn(samples, dims, 1, generator=g))[..., 0]

    def error(spread: float) -> float:
        x = means[classes] + spread * offsets
        return (bayes_classes(x, means, spread * shape) != classes).float().mean().item()

    lo, hi = 1e-3, 1.0
    if error(lo) > target_error:
        raise ConfigError(f"task.memoryless_error={target_error}: two Gaussians nearly coincide for task.structure_seed={seed}; choose another seed or a larger error")
    for _ in range(20):
        if error(hi) >= target_error:
            break
        lo, hi = hi, 2 * hi
    else:
        raise ConfigError(f"task.memoryless_error={target_error}: unreachable by widening the Gaussians; choose a smaller error")
    for _ in range(20):
        mid = (lo * hi) ** 0.5
        lo, hi = (mid, hi) if error(mid) < target_error else (lo, mid)
    return means, (lo * hi) ** 0.5 * shape


class SortedClassification(Task):
    """Sorted classification (NMN §IV.A): which of C = 10 random Gaussians did each point come
    from, when the Gaussians are visited in a stationary order?

    The order is cyclic, c_t = (c_0 + t) mod C with a uniform start c_0, so a network that
    remembers the previous class knows the next one, while a memory-less one can only separate
    the overlapping Gaussians (the paper's FFNN: 4.5% error; NMN 0.7%; RNN 1.8%).

    The Gaussians are part of the task's definition, drawn once from ``structure_seed`` (the same
    for every run seed, like a data set): means ~ U[−1, 1]^d, covariances
    s²·(A Aᵀ/d + I/2) with A ~ N(0, 1)^{d×d} and one common spread s, tuned at construction
    (`tuned_gaussians`) so that the memory-less Bayes classifier (argmax of the class densities,
    equal priors: every class is equally frequent) errs ``memoryless_error`` = 0.045, the
    paper's FFNN error, on ``tuning_samples`` Monte-Carlo points. Metric ``bayes_error``: that
    classifier's error on the scored batch itself, the floor of any memory-less model.

    Worked example (C=3, d=1, T=5, start 2; x_t drawn from Gaussian c_t)::

        targets  2 0 1 2 0        mask  1 1 1 1 1
    """

    output_kind = "classes"

    def __init__(self, num_classes: int = 10, dims: int = 2, length: int = 50, memoryless_error: float = 0.045, structure_seed: int = 0, tuning_samples: int = 50_000, **regime):
        super().__init__(**regime)
        check_int("task.num_classes", num_classes, minimum=2)
        check_int("task.dims", dims)
        check_int("task.length", length)
        check_int("task.structure_seed", structure_seed, minimum=0)
        check_int("task.tuning_samples", tuning_samples)
        chance = 1 - 1 / num_classes
        if not (isinstance(memoryless_error, (int, float)) and 0 < memoryless_error < chance):
            raise ConfigError(f"task.memoryless_error={memoryless_error!r}: must be in (0, {chance:.3g}), below chance")
        self.length = length
        self.num_classes = self.output_size = num_classes
        self.input_size = dims
        self.means, self.scale_tril = tuned_gaussians(num_classes, dims, float(memoryless_error), structure_seed, tuning_samples)

    def points(self, classes: Tensor, generator: torch.Generator) -> Tensor:
        """A point from the Gaussian of each class id in ``classes`` [...] -> [..., d]."""
        z = torch.randn(*classes.shape, self.input_size, 1, generator=generator)
        return self.means[classes] + (self.scale_tril[classes] @ z)[..., 0]

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        start = torch.randint(self.num_classes, (batch_size, 1), generator=generator)
        classes = (start + torch.arange(self.length)) % self.num_classes
        return Batch(self.points(classes, generator), classes, torch.ones(batch_size, self.length))

    def metrics(self, outputs: Tensor, batch: Batch) -> dict[str, float]:
        wrong = (bayes_classes(batch.inputs, self.means, self.scale_tril) != batch.targets).float()
        return {"bayes_error": ((wrong * batch.mask).sum() / batch.mask.sum()).item()}
