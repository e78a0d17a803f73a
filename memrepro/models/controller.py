"""The controller network shared by NTM and DNC: an LSTM, a GRU or a feed-forward stack, one step
at a time.

NTM §2 and §4 compare both kinds ("feedforward" and "LSTM" controllers); the DNC uses an LSTM;
the Memory Forcing paper (§4) drives its DNC with a 1-layer GRU of 64 units.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memrepro.errors import ConfigError
from memrepro.tasks.base import check_int, check_positive

CONTROLLERS = ("lstm", "gru", "feedforward")


class LSTMCell(nn.Module):
    """One LSTM step with a forget gate (Hochreiter & Schmidhuber 1997; Gers et al. 2000).

    Written out rather than `nn.LSTMCell` because PyTorch's fused ``lstm_cell`` has no vmap
    batching rule (parallel seeds vmap the model) and the written-out form is as fast on CPU.
    One weight matrix on [x; h] and one bias vector (as Graves' and DeepMind's LSTMs, where
    PyTorch keeps two); gates ordered (i, f, o, g) so that one sigmoid covers three of them.
    The forget-gate bias starts at ``forget_bias`` = 1 (Gers et al. 2000; Collier & Beel 2018's
    NTM uses forget_bias=1.0); the rest is uniform in ±1/√H, PyTorch's LSTM initialisation.
    """

    def __init__(self, input_size: int, hidden_size: int, forget_bias: float = 1.0):
        super().__init__()
        self.hidden_size = hidden_size
        bound = 1 / math.sqrt(hidden_size)
        self.weight = nn.Parameter(torch.empty(4 * hidden_size, input_size + hidden_size).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(4 * hidden_size).uniform_(-bound, bound))
        with torch.no_grad():
            self.bias[hidden_size : 2 * hidden_size] = forget_bias

    def forward(self, inputs: list[Tensor], state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        h, c = state
        gates = F.linear(torch.cat([*inputs, h], dim=-1), self.weight, self.bias)
        H = self.hidden_size
        i, f, o = torch.sigmoid(gates[..., : 3 * H]).chunk(3, dim=-1)
        c = torch.addcmul(f * c, i, torch.tanh(gates[..., 3 * H :]))
        return o * torch.tanh(c), c


class GRUCell(nn.Module):
    """One GRU step (Cho et al. 2014, PyTorch's formulation with the reset gate applied after the
    recurrent product), written out for vmap like `LSTMCell`. State: the tuple (h,)."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        bound = 1 / math.sqrt(hidden_size)
        self.weight_x = nn.Parameter(torch.empty(3 * hidden_size, input_size).uniform_(-bound, bound))
        self.weight_h = nn.Parameter(torch.empty(3 * hidden_size, hidden_size).uniform_(-bound, bound))
        self.bias_x = nn.Parameter(torch.empty(3 * hidden_size).uniform_(-bound, bound))
        self.bias_h = nn.Parameter(torch.empty(3 * hidden_size).uniform_(-bound, bound))

    @property
    def weight(self) -> Tensor:  # for the device/dtype of initial states
        return self.weight_x

    def forward(self, inputs: list[Tensor], state: tuple[Tensor]) -> tuple[Tensor]:
        (h,) = state
        gx = F.linear(torch.cat(inputs, dim=-1), self.weight_x, self.bias_x)
        gh = F.linear(h, self.weight_h, self.bias_h)
        H = self.hidden_size
        r, z = torch.sigmoid(gx[..., : 2 * H] + gh[..., : 2 * H]).chunk(2, dim=-1)
        n = torch.tanh(gx[..., 2 * H :] + r * gh[..., 2 * H :])
        return (torch.lerp(n, h, z),)


class Controller(nn.Module):
    """``layers`` LSTM or GRU cells or tanh layers of ``hidden_size`` units, fed the concatenation
    of a list of inputs (e.g. [x_t, previous reads]). State: a tuple with one entry per recurrent
    layer, (h, c) for an LSTM and (h,) for a GRU; empty for the feed-forward kind."""

    def __init__(self, input_size: int, hidden_size: int, layers: int = 1, kind: str = "lstm"):
        super().__init__()
        if kind not in CONTROLLERS:
            raise ConfigError(f"model.controller={kind!r}: choose one of {', '.join(CONTROLLERS)}")
        check_int("model.controller_size", hidden_size)
        check_int("model.controller_layers", layers)
        self.kind, self.hidden_size = kind, hidden_size
        sizes = [input_size] + [hidden_size] * layers
        layer = {"lstm": LSTMCell, "gru": GRUCell, "feedforward": nn.Linear}[kind]
        self.layers = nn.ModuleList(layer(i, hidden_size) for i in sizes[:-1])

    def initial_state(self, batch_size: int) -> tuple:
        if self.kind == "feedforward":
            return ()
        zeros = self.layers[0].weight.new_zeros(batch_size, self.hidden_size)
        per_layer = (zeros, zeros) if self.kind == "lstm" else (zeros,)
        return tuple(per_layer for _ in self.layers)

    def forward(self, inputs: list[Tensor], state: tuple) -> tuple[Tensor, tuple]:
        if self.kind == "feedforward":
            x = torch.cat(inputs, dim=-1)
            for layer in self.layers:
                x = torch.tanh(layer(x))
            return x, state
        new_state = []
        for cell, hc in zip(self.layers, state):
            hc = cell(inputs, hc)
            new_state.append(hc)
            inputs = [hc[0]]
        return inputs[0], tuple(new_state)


def check_clip(clip_value) -> None:
    if clip_value is not None:
        check_positive("model.clip_value", clip_value)


def clip(x: Tensor, value: float | None) -> Tensor:
    """Clip controller outputs to ±value (None: no clipping), as Collier & Beel 2018 and DeepMind's DNC."""
    return x if value is None else x.clamp(-value, value)
