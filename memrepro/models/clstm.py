"""Constrained LSTM — SMANN §2.1, eq. (1) (Anonymous, ICLR 2020 submission "Sparse memory-augmented
neural network").

An LSTM without output gate whose hidden state is a "double tanh" of the cell state:

    f_t = σ(W_f x_t + U_f h_{t−1} + b_f)
    i_t = σ(W_i x_t + U_i h_{t−1} + b_i)
    c_t = f_t ⊙ c_{t−1} + i_t ⊙ tanh(W_c x_t + U_c h_{t−1} + b_c)
    h_t = D/2 · (tanh(c_t + u) + tanh(c_t − u))                                       (1)

u is a trainable vector (init 0.5), D a trainable diagonal (init 1). With |c| ≪ u the output is
≈ 0 and with |c| ≫ u it saturates at ±D, so components that the chrono initialiser (eq. 4) keeps
alive for a long time can be filtered out or weighted (SMANN §2.1, last paragraph).

`ConstrainedLSTMCell` is shared by `CLSTM` (a stack of cells, SMANN Table 1) and by the neural
controller of `memrepro.models.smann` (eqs. 5–6), which splits eq. (1) into `candidate` (the new
cell state) and `output` (the double tanh) so that the mask can act between the two.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from memrepro.models.cells import Cell, CellStack
from memrepro.models.chrono import check_init, gate_biases


class ConstrainedLSTMCell(Cell):
    """Eq. (1). Gates are laid out (i, f, g) like PyTorch's LSTM without its o block."""

    def __init__(self, input_size: int, hidden_size: int, init: str = "standard", t_max: float | None = None, forget_bias: float = 1.0):
        super().__init__()
        check_init(init, t_max)
        H = self.hidden_size = hidden_size
        self.input = nn.Linear(input_size, 3 * H)  # W x + b for the whole sequence at once
        self.recurrent = nn.Linear(H, 3 * H, bias=False)
        self.u = nn.Parameter(torch.full((H,), 0.5))
        self.d = nn.Parameter(torch.ones(H))
        bound = 1 / math.sqrt(H)  # PyTorch's LSTM weight init: U(−1/√H, 1/√H)
        with torch.no_grad():
            nn.init.uniform_(self.input.weight, -bound, bound)
            nn.init.uniform_(self.recurrent.weight, -bound, bound)
            b_i, b_f = gate_biases(init, H, t_max, forget_bias)
            self.input.bias.zero_()
            self.input.bias[:H], self.input.bias[H : 2 * H] = b_i, b_f

    def candidate(self, wx_t: Tensor, h: Tensor, c: Tensor) -> Tensor:
        """The new cell state f ⊙ c + i ⊙ tanh(·), given the input projection ``wx_t`` = W x_t + b."""
        i, f, g = (wx_t + self.recurrent(h)).chunk(3, dim=-1)
        return torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)

    def output(self, c: Tensor) -> Tensor:
        """h = D/2 · (tanh(c + u) + tanh(c − u))."""
        return 0.5 * self.d * (torch.tanh(c + self.u) + torch.tanh(c - self.u))

    def zero_state(self, batch_size: int) -> tuple[Tensor, Tensor]:
        z = self.recurrent.weight.new_zeros(batch_size, self.hidden_size)
        return z, z

    def forward(self, wx_t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """One step of eq. (1): (h, c) -> (h', c')."""
        c = self.candidate(wx_t, *state)
        return self.output(c), c

    @staticmethod
    def hidden(state: tuple[Tensor, Tensor]) -> Tensor:
        return state[0]


class CLSTM(CellStack):
    """A stack of constrained LSTM layers and a linear read-out (SMANN §4.1: one layer of 128)."""

    def __init__(self, input_size: int, output_size: int, hidden_size: int = 128, num_layers: int = 1, dropout: float = 0.0,
                 init: str = "standard", t_max: float | None = None, forget_bias: float = 1.0):
        check_init(init, t_max)
        super().__init__(input_size, output_size, hidden_size, num_layers, dropout,
                         lambda a, b: ConstrainedLSTMCell(a, b, init, t_max, forget_bias))
