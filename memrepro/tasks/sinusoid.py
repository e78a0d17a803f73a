"""Next-sample prediction of a noisy sinusoid — Biggs & Nuttall, "Neural Memory Networks", §I and
Fig. 2: "predict the next sequence in a noisy sinusoidal signal … trained with a single sinusoid
then tested with a sum of three sinusoids of varying frequencies with errors around 10% for
training and 15% for testing".

Training sequences: x_t = sin(2π t / P + φ) + ε_t with the one period P = ``period`` (in samples),
φ ~ U[0, 2π) and ε_t ~ N(0, ``noise``²); the target at step t is the next noisy sample x_{t+1}.
The first ``warmup`` steps are not scored (a memory of the previous inputs is still filling).
The test set (`extra_eval_sets`, key ``mix``) is the sum of ``test_components`` sinusoids of
amplitude 1/``test_components`` each, periods ~ U[``test_periods``], random phases, same noise.

Metric ``relative_error``: the paper's "error" is not defined; we take the relative RMS error
‖ŷ − y‖₂ / ‖y‖₂ over the scored steps (docs/tasks.md), scale-free, so the training and the
test signal compare although their amplitudes differ. ``persistence_relative_error`` is the same for
the memory-less guess ŷ_t = x_t, a reference point.

Worked example (period 4, φ = 0, noise 0, warmup 1)::

    inputs   0  1  0 -1  0      targets  1  0 -1  0  1      mask  0 1 1 1 1
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from memrepro.errors import ConfigError
from memrepro.tasks.base import Batch, Task, check_int, check_positive


class Sinusoid(Task):
    output_kind = "regression"
    input_size = 1
    output_size = 1

    def __init__(self, length: int = 100, period: float = 50.0, noise: float = 0.05, test_components: int = 3,
                 test_periods=(25.0, 100.0), warmup: int = 10, **regime):
        super().__init__(**regime)
        check_int("task.length", length)
        check_positive("task.period", period)
        check_positive("task.noise", noise, allow_zero=True)
        check_int("task.test_components", test_components)
        check_int("task.warmup", warmup, minimum=0)
        if len(test_periods) != 2 or not 0 < test_periods[0] <= test_periods[1]:
            raise ConfigError(f"task.test_periods={list(test_periods)}: give [min, max] with 0 < min ≤ max")
        if warmup >= length:
            raise ConfigError(f"task.warmup={warmup} with task.length={length}: leaves no step to score")
        self.length, self.period, self.noise, self.warmup = length, float(period), noise, warmup
        self.test_components, self.test_periods = test_components, tuple(float(p) for p in test_periods)

    def _batch(self, periods: Tensor, amplitude: float, generator: torch.Generator) -> Batch:
        """Sum over the last axis of ``periods`` [B, K] of sinusoids with random phases, plus noise."""
        B = periods.shape[0]
        phases = 2 * math.pi * torch.rand(periods.shape, generator=generator)
        t = torch.arange(self.length + 1, dtype=torch.float32)
        signal = amplitude * torch.sin(2 * math.pi * t[:, None] / periods[:, None, :] + phases[:, None, :]).sum(-1)
        x = (signal + self.noise * torch.randn(signal.shape, generator=generator)).unsqueeze(-1)  # [B, T+1, 1]
        mask = (torch.arange(self.length) >= self.warmup).float().expand(B, -1)
        return Batch(x[:, :-1], x[:, 1:], mask)

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        return self._batch(torch.full((batch_size, 1), self.period), 1.0, generator)

    def extra_eval_sets(self, generator: torch.Generator) -> dict[str, Batch]:
        lo, hi = self.test_periods
        periods = lo + (hi - lo) * torch.rand(self.eval_size, self.test_components, generator=generator)
        return {"mix": self._batch(periods, 1.0 / self.test_components, generator)}

    def metrics(self, outputs: Tensor, batch: Batch) -> dict[str, float]:
        """``relative_error`` of the model and ``persistence_relative_error`` of the memory-less guess x̂_{t+1} = x_t."""
        m = batch.mask.unsqueeze(-1)
        norm = (batch.targets**2 * m).sum()
        return {
            "relative_error": (((outputs - batch.targets) ** 2 * m).sum() / norm).sqrt().item(),
            "persistence_relative_error": (((batch.inputs - batch.targets) ** 2 * m).sum() / norm).sqrt().item(),
        }
