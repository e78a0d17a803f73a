"""The memory-less and recurrent baselines every paper compares against.

* `FFNN`  — a feed-forward net applied to each step on its own: the papers' memory-less baseline
  (NMN paper §IV, "FFNN"; SMANN Table 2 has none).
* `RNN`   — Elman network, h_t = tanh(W x_t + U h_{t-1} + b) (Elman 1990; NMN paper §IV "RNN").
* `LSTM`  — Hochreiter & Schmidhuber 1997 with a forget gate (Gers et al. 2000), PyTorch's
  formulation; forget-gate bias 1 by default, the "standard initialization" of SMANN Table 1,
  or the chrono initialisation (SMANN eq. 4) with ``init=chrono``.
* `GRU`   — Cho et al. 2014.

Each `forward` runs PyTorch's fused kernel over the whole sequence; `step` runs the same weights
on one step, so both paths give the same numbers (tested).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from memrepro.errors import ConfigError
from memrepro.models.chrono import check_init, gate_biases
from memrepro.models.base import SequenceModel
from memrepro.tasks.base import check_positive

ACTIVATIONS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ConfigError(f"model.activation={name!r}: choose one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def check_dropout(dropout: float) -> None:
    if not 0 <= dropout < 1:
        raise ConfigError(f"model.dropout={dropout!r}: must be in [0, 1)")


class FFNN(SequenceModel):
    """Per-step MLP: y_t = f(x_t). ``hidden_sizes`` lists the hidden layers."""
    scans = False  # no Python time loop carries gradients (compile=true: nothing to compile)

    def __init__(self, input_size: int, output_size: int, hidden_sizes=(64,), activation: str = "sigmoid", dropout: float = 0.0):
        super().__init__(input_size, output_size)
        check_dropout(dropout)
        layers, last = [], input_size
        for i, h in enumerate(hidden_sizes):
            check_positive(f"model.hidden_sizes[{i}]", h)
            layers += [nn.Linear(last, h), make_activation(activation)]
            last = h
        layers += [nn.Dropout(dropout), nn.Linear(last, output_size)]
        self.net = nn.Sequential(*layers)

    def initial_state(self, batch_size: int):
        return ()

    def step(self, x_t: Tensor, state):
        return self.net(x_t), state

    def forward(self, x: Tensor, state=None, return_states: bool = False):
        y = self.net(x)
        return (y, [()] * x.shape[1]) if return_states else y


class _FusedRecurrent(SequenceModel):
    """Shared body of RNN/LSTM/GRU: a fused torch.nn recurrent layer plus a linear read-out."""
    scans = False  # no Python time loop carries gradients (compile=true: nothing to compile)

    cell: type[nn.RNNBase]
    has_cell_state = False

    def __init__(self, input_size: int, output_size: int, hidden_size: int = 128, num_layers: int = 1, dropout: float = 0.0, **cell_kwargs):
        super().__init__(input_size, output_size)
        check_positive("model.hidden_size", hidden_size)
        check_positive("model.num_layers", num_layers)
        check_dropout(dropout)
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.rnn = self.cell(input_size, hidden_size, num_layers, batch_first=True, **cell_kwargs)
        self.dropout = nn.Dropout(dropout)
        self.readout = nn.Linear(hidden_size, output_size)

    def initial_state(self, batch_size: int):
        h = torch.zeros(self.num_layers, batch_size, self.hidden_size, device=self.readout.weight.device)
        return (h, torch.zeros_like(h)) if self.has_cell_state else h

    def step(self, x_t: Tensor, state):
        out, state = self.rnn(x_t.unsqueeze(1), state)
        return self.readout(self.dropout(out[:, 0])), state

    def forward(self, x: Tensor, state=None, return_states: bool = False):
        if return_states:  # the per-step states are only exposed by the step loop
            return super().forward(x, state, return_states=True)
        if state is None:
            state = self.initial_state(x.shape[0])
        out, _ = self.rnn(x, state)
        return self.readout(self.dropout(out))

    def trace(self, state) -> dict[str, Tensor]:
        h = state[0] if self.has_cell_state else state
        return {"hidden": h[-1]}


class RNN(_FusedRecurrent):
    """Elman RNN with tanh units."""

    cell = nn.RNN

    def __init__(self, input_size: int, output_size: int, hidden_size: int = 128, num_layers: int = 1, dropout: float = 0.0):
        super().__init__(input_size, output_size, hidden_size, num_layers, dropout, nonlinearity="tanh")


class GRU(_FusedRecurrent):
    cell = nn.GRU


class LSTM(_FusedRecurrent):
    """LSTM with the gate-bias initialisation ``init`` (see `memrepro.models.chrono`):

    * ``standard`` — forget-gate bias ``forget_bias`` (1 = SMANN §2.1 / Table 1's "standard
      initialization", Jozefowicz et al. 2015), the other gate biases 0 (PyTorch's own default
      would be random biases);
    * ``chrono`` — SMANN eq. (4): b_f ~ log U([1, t_max − 1]), b_i = −b_f, the others 0.
    """

    cell = nn.LSTM
    has_cell_state = True

    def __init__(self, input_size: int, output_size: int, hidden_size: int = 128, num_layers: int = 1, dropout: float = 0.0,
                 forget_bias: float = 1.0, init: str = "standard", t_max: float | None = None):
        super().__init__(input_size, output_size, hidden_size, num_layers, dropout)
        check_init(init, t_max)
        H = hidden_size
        with torch.no_grad():
            for layer in range(num_layers):
                # PyTorch orders the gates (i, f, g, o) and adds bias_ih + bias_hh: set one, zero the other.
                b_i, b_f = gate_biases(init, H, t_max, forget_bias)
                bias = getattr(self.rnn, f"bias_ih_l{layer}")
                bias.zero_()
                bias[:H], bias[H : 2 * H] = b_i, b_f
                getattr(self.rnn, f"bias_hh_l{layer}").zero_()
