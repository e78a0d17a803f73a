"""FFNN with a simple Gaussian memory — Biggs & Nuttall, "Neural Memory Networks", §I and Fig. 1.

"Ten previous inputs were stored in memory, from which five additional inputs were drawn from
Gaussian weights on the memory." The memory is a shift register of the last ``memory_length``
inputs (most recent first); memory input k is a fixed Gaussian-weighted average of it,

    m_k = Σ_i G_{k,i} x_{t−1−i},   G_{k,i} ∝ exp(−(i − μ_k)² / 2σ²),   Σ_i G_{k,i} = 1,

with the centres μ_k evenly spaced over the memory locations 0 … L−1. The weights are fixed, not
learned ("the memory architecture is predetermined"): σ = 0.5 locations gives the ≈0.8 peaks of
Fig. 1(b). The network is an FFNN of sigmoid layers on [x_t, m_1, …, m_K] with a linear output.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from memrepro.models.base import SequenceModel
from memrepro.models.recurrent import make_activation
from memrepro.tasks.base import check_positive


def gaussian_memory_weights(memory_length: int, memory_inputs: int, sigma: float) -> Tensor:
    """G [K, L]: row k is a normalised Gaussian over the memory locations centred at μ_k."""
    centres = torch.linspace(0, memory_length - 1, memory_inputs)
    locations = torch.arange(memory_length, dtype=torch.float32)
    g = torch.exp(-((locations - centres[:, None]) ** 2) / (2 * sigma**2))
    return g / g.sum(-1, keepdim=True)


class GaussianMemoryFFNN(SequenceModel):
    """State: the register of the previous ``memory_length`` inputs [B, L, I], most recent first."""
    scans = False  # no Python time loop carries gradients (compile=true: nothing to compile)

    def __init__(self, input_size: int, output_size: int, hidden_sizes=(16,), memory_length: int = 10, memory_inputs: int = 5,
                 sigma: float = 0.5, activation: str = "sigmoid"):
        super().__init__(input_size, output_size)
        check_positive("model.memory_length", memory_length)
        check_positive("model.memory_inputs", memory_inputs)
        check_positive("model.sigma", sigma)
        self.memory_length = memory_length
        self.register_buffer("weights", gaussian_memory_weights(memory_length, memory_inputs, sigma))
        layers, last = [], input_size * (1 + memory_inputs)
        for i, h in enumerate(hidden_sizes):
            check_positive(f"model.hidden_sizes[{i}]", h)
            layers += [nn.Linear(last, h), make_activation(activation)]
            last = h
        self.net = nn.Sequential(*layers, nn.Linear(last, output_size))

    def initial_state(self, batch_size: int) -> Tensor:
        return self.weights.new_zeros(batch_size, self.memory_length, self.input_size)

    def step(self, x_t: Tensor, state: Tensor):
        memory_inputs = torch.einsum("kl,bli->bki", self.weights, state).flatten(1)
        y = self.net(torch.cat([x_t, memory_inputs], dim=-1))
        return y, torch.cat([x_t.unsqueeze(1), state[:, :-1]], dim=1)

    def forward(self, x: Tensor, state=None, return_states: bool = False):
        if return_states:
            return super().forward(x, state, return_states=True)
        if state is None:
            state = self.initial_state(x.shape[0])
        T, L = x.shape[1], self.memory_length
        history = torch.cat([state.flip(1), x], dim=1)  # oldest first
        registers = history.unfold(1, L, 1)[:, :T].flip(-1)  # [B, T, I, L]: step t sees x_{t−1}, …, x_{t−L}
        memory_inputs = torch.einsum("kl,btil->btki", self.weights, registers).flatten(2)
        return self.net(torch.cat([x, memory_inputs], dim=-1))

    def trace(self, state: Tensor) -> dict[str, Tensor]:
        return {"memory": state.flatten(1)}
