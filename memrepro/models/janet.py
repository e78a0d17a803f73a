"""JANET, "just another network" — Westhuizen & Lasenby 2018, "The unreasonable effectiveness of the
forget gate" (arXiv:1804.04849), §3; a baseline of SMANN Tables 2–3.

An LSTM reduced to its forget gate, the input gate tied to it with a shift β:

    s_t = U_f h_{t−1} + W_f x_t + b_f
    c̃_t = tanh(U_c h_{t−1} + W_c x_t + b_c)
    c_t = σ(s_t) ⊙ c_{t−1} + (1 − σ(s_t − β)) ⊙ c̃_t
    h_t = c_t

with β = 1 and the forget bias drawn by the chrono initialiser (b_f ~ log U([1, T_max − 1])),
as in the JANET paper; ``init=standard`` gives b_f = ``forget_bias`` instead.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from memrepro.models.cells import Cell, CellStack
from memrepro.models.chrono import check_init, gate_biases


class JANETCell(Cell):
    def __init__(self, input_size: int, hidden_size: int, beta: float = 1.0, init: str = "chrono", t_max: float | None = None, forget_bias: float = 1.0):
        super().__init__()
        H = self.hidden_size = hidden_size
        self.beta = beta
        self.input = nn.Linear(input_size, 2 * H)  # (s, c̃) blocks of W x + b
        self.recurrent = nn.Linear(H, 2 * H, bias=False)
        bound = 1 / math.sqrt(H)
        with torch.no_grad():
            nn.init.uniform_(self.input.weight, -bound, bound)
            nn.init.uniform_(self.recurrent.weight, -bound, bound)
            self.input.bias.zero_()
            self.input.bias[:H] = gate_biases(init, H, t_max, forget_bias)[1]

    def zero_state(self, batch_size: int) -> Tensor:
        return self.recurrent.weight.new_zeros(batch_size, self.hidden_size)

    def forward(self, wx_t: Tensor, h: Tensor) -> Tensor:
        s, g = (wx_t + self.recurrent(h)).chunk(2, dim=-1)
        return torch.sigmoid(s) * h + (1 - torch.sigmoid(s - self.beta)) * torch.tanh(g)

    @staticmethod
    def hidden(h: Tensor) -> Tensor:
        return h


class JANET(CellStack):
    """A stack of JANET layers and a linear read-out (SMANN Table 2: two layers of 32)."""

    def __init__(self, input_size: int, output_size: int, hidden_size: int = 32, num_layers: int = 2, dropout: float = 0.1,
                 beta: float = 1.0, init: str = "chrono", t_max: float | None = 784, forget_bias: float = 1.0):
        check_init(init, t_max)
        super().__init__(input_size, output_size, hidden_size, num_layers, dropout,
                         lambda a, b: JANETCell(a, b, beta, init, t_max, forget_bias))
