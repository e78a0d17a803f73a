"""Skip RNN — Campos et al. 2018 (ICLR), "Skip RNN: learning to skip state updates in recurrent
neural networks", §3, eqs. (2)–(5); the `skip_lstm` / `skip_gru` baselines of SMANN Tables 2–3.

A binary state-update gate u_t decides whether the cell updates or copies its state:

    u_t      = f_binarize(ũ_t)                                          (2)
    s_t      = u_t · S(s_{t−1}, x_t) + (1 − u_t) · s_{t−1}              (3)
    Δũ_t     = σ(W_p s_t + b_p)                                         (4)
    ũ_{t+1}  = u_t · Δũ_t + (1 − u_t) · (ũ_t + min(Δũ_t, 1 − ũ_t))     (5)

f_binarize rounds (ũ ≥ 0.5) with the straight-through gradient, ũ_1 = 1 (the first step always
updates), and the budget loss L_budget = λ Σ_t u_t (§3.3) is returned by `extra_loss()`.
Stacked layers share one gate computed from the top layer's state (its cell state c for the LSTM),
as in the authors' multi-layer cells; b_p starts at 1 (their default), W_p at PyTorch's default.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from memrepro.models.base import SequenceModel
from memrepro.models.controller import GRUCell, LSTMCell
from memrepro.models.recurrent import check_dropout
from memrepro.tasks.base import check_positive


class SkipState(NamedTuple):
    layers: tuple  # per layer: (h, c) for the LSTM, (h,) for the GRU
    u_tilde: Tensor  # [B, 1] the update probability ũ_t
    updates: Tensor  # [B, 1] Σ u so far (differentiable through the ST estimator), for the budget


class _SkipRNN(SequenceModel):
    compile_steps = 8  # compile=true: 8 steps per graph, 1.3-1.8x faster than one (docs/benchmarks.md, "Step-loop models")
    cell: type[nn.Module]  # written-out cells (memrepro.models.controller): vmap batches them, for parallel seeds
    state_parts: int  # tensors in one layer's state; the last one is what eq. (4) reads
    forward_values = ("last_updates", "last_steps")  # what the budget loss and diagnostics read (SequenceModel)

    def __init__(self, input_size: int, output_size: int, hidden_size: int = 32, num_layers: int = 2, dropout: float = 0.1,
                 budget: float = 1e-4):
        super().__init__(input_size, output_size)
        check_positive("model.hidden_size", hidden_size)
        check_positive("model.num_layers", num_layers)
        check_positive("model.budget", budget, allow_zero=True)
        check_dropout(dropout)
        self.hidden_size, self.budget = hidden_size, budget
        sizes = [input_size] + [hidden_size] * num_layers
        self.cells = nn.ModuleList(self.cell(a, b) for a, b in zip(sizes, sizes[1:]))
        self.update_prob = nn.Linear(hidden_size, 1)  # W_p, b_p of eq. (4)
        nn.init.constant_(self.update_prob.bias, 1.0)
        self.dropout = nn.Dropout(dropout)
        self.readout = nn.Linear(hidden_size, output_size)
        self.last_updates: Tensor | None = None  # Σ_t u_t per sequence of the latest forward
        self.last_steps = 1

    def initial_state(self, batch_size: int) -> SkipState:
        z = self.readout.weight.new_zeros(batch_size, self.hidden_size)
        ones = z.new_ones(batch_size, 1)
        return SkipState(tuple((z,) * self.state_parts for _ in self.cells), ones, torch.zeros_like(ones))

    def step(self, x_t: Tensor, state: SkipState):
        u_tilde = state.u_tilde
        u = (u_tilde >= 0.5).to(u_tilde.dtype) + (u_tilde - u_tilde.detach())  # eq. (2), straight-through
        layers = []
        for cell, old in zip(self.cells, state.layers):
            new = cell([x_t], old)  # S(s_{t−1}, x_t) of eq. (3)
            x_t = new[0]  # upper layers read the candidate h, so a copied step changes nothing above
            layers.append(tuple(u * n + (1 - u) * o for n, o in zip(new, old)))  # eq. (3)
        delta = torch.sigmoid(self.update_prob(layers[-1][-1]))  # eq. (4)
        u_tilde = u * delta + (1 - u) * (u_tilde + torch.minimum(delta, 1 - u_tilde))  # eq. (5)
        y = self.readout(self.dropout(layers[-1][0]))
        return y, SkipState(tuple(layers), u_tilde, state.updates + u)

    def forward(self, x: Tensor, state=None, return_states: bool = False):
        y, states, state = self.run_steps(x, state, return_states)
        self.last_updates, self.last_steps = state.updates, x.shape[1]
        return (y, states) if return_states else y

    def extra_loss(self) -> Tensor | float:
        """λ Σ_t u_t, averaged over the sequences of the latest forward (Campos et al. §3.3)."""
        return 0.0 if self.last_updates is None else self.budget * self.last_updates.mean()

    def diagnostics(self) -> dict[str, float]:
        """The share of steps that updated the state in the latest forward."""
        if self.last_updates is None:
            return {}
        return {"update_rate": float(self.last_updates.detach().mean()) / self.last_steps}

    def trace(self, state: SkipState) -> dict[str, Tensor]:
        return {"hidden": state.layers[-1][0], "update_prob": state.u_tilde}


class SkipLSTM(_SkipRNN):
    """Skip RNN over LSTM cells (forget-gate bias 1, the other biases 0: the authors' default);
    eq. (4) reads c."""

    cell = LSTMCell
    state_parts = 2

    def __init__(self, input_size: int, output_size: int, hidden_size: int = 32, num_layers: int = 2, dropout: float = 0.1,
                 budget: float = 1e-4):
        super().__init__(input_size, output_size, hidden_size, num_layers, dropout, budget)
        H = hidden_size
        with torch.no_grad():
            for cell in self.cells:
                cell.bias.zero_()
                cell.bias[H : 2 * H] = 1.0  # gates (i, f, o, g)


class SkipGRU(_SkipRNN):
    """Skip RNN over GRU cells; eq. (4) reads h."""

    cell = GRUCell
    state_parts = 1
