"""The controller network shared by NTM and DNC: an LSTM or a feed-forward stack, one step at a time.

NTM §2 and §4 compare both kinds ("feedforward" and "LSTM" controllers); the DNC uses an LSTM.
The LSTM's forget-gate bias starts at 1 (Gers et al. 2000; Collier & Beel 2018's NTM uses
forget_bias=1.0), set on one of PyTorch's two summed bias vectors only.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from memrepro.errors import ConfigError
from memrepro.tasks.base import check_positive

CONTROLLERS = ("lstm", "feedforward")


class Controller(nn.Module):
    """``layers`` LSTM cells or tanh layers of ``hidden_size`` units. State: a tuple of
    (h, c) pairs, one per LSTM layer; empty for the feed-forward kind."""

    def __init__(self, input_size: int, hidden_size: int, layers: int = 1, kind: str = "lstm"):
        super().__init__()
        if kind not in CONTROLLERS:
            raise ConfigError(f"model.controller={kind!r}: choose one of {', '.join(CONTROLLERS)}")
        check_positive("model.controller_size", hidden_size)
        check_positive("model.controller_layers", layers)
        self.kind, self.hidden_size = kind, hidden_size
        sizes = [input_size] + [hidden_size] * layers
        if kind == "lstm":
            self.cells = nn.ModuleList(nn.LSTMCell(i, hidden_size) for i in sizes[:-1])
            with torch.no_grad():
                for cell in self.cells:
                    cell.bias_ih[hidden_size : 2 * hidden_size].fill_(1.0)
                    cell.bias_hh[hidden_size : 2 * hidden_size].zero_()
        else:
            self.cells = nn.ModuleList(nn.Linear(i, hidden_size) for i in sizes[:-1])

    def initial_state(self, batch_size: int) -> tuple:
        if self.kind != "lstm":
            return ()
        zeros = self.cells[0].weight_hh.new_zeros(batch_size, self.hidden_size)
        return tuple((zeros, zeros) for _ in self.cells)

    def forward(self, x: Tensor, state: tuple) -> tuple[Tensor, tuple]:
        if self.kind != "lstm":
            for layer in self.cells:
                x = torch.tanh(layer(x))
            return x, state
        new_state = []
        for cell, hc in zip(self.cells, state):
            h, c = cell(x, hc)
            new_state.append((h, c))
            x = h
        return x, tuple(new_state)


def check_clip(clip_value) -> None:
    if clip_value is not None:
        check_positive("model.clip_value", clip_value)


def clip(x: Tensor, value: float | None) -> Tensor:
    """Clip controller outputs to ±value (None: no clipping), as Collier & Beel 2018 and DeepMind's DNC."""
    return x if value is None else x.clamp(-value, value)
