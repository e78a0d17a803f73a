"""`CellStack`: a stack of custom recurrent cells with a linear read-out, run layer by layer.

A cell (`Cell`) has ``input`` (the nn.Linear giving W x + b, applied to a whole sequence at once),
``zero_state(batch_size)``, ``forward(wx_t, state) -> state`` and ``hidden(state) -> h``. Running
the stack layer by layer leaves one small recurrent matmul per step in the time loop
(`memrepro.models.scan`, compiled under compile=true).
"""
from __future__ import annotations

from torch import Tensor, nn

from memrepro.models.base import SequenceModel
from memrepro.models.recurrent import check_dropout
from memrepro.tasks.base import check_positive


class Cell(nn.Module):
    """One recurrent layer of a `CellStack`; subclasses define input, zero_state, forward, hidden."""

    def scan_step(self, wx_t: Tensor, state):
        """One step for `Scan`: (h', state')."""
        state = self(wx_t, state)
        return self.hidden(state), state


class CellStack(SequenceModel):
    compile_steps = 8  # compile=true: 8 steps of a layer per graph (docs/benchmarks.md, "Step-loop models")
    def __init__(self, input_size: int, output_size: int, hidden_size: int, num_layers: int, dropout: float, make_cell):
        super().__init__(input_size, output_size)
        check_positive("model.hidden_size", hidden_size)
        check_positive("model.num_layers", num_layers)
        check_dropout(dropout)
        sizes = [input_size] + [hidden_size] * num_layers
        self.cells = nn.ModuleList(make_cell(a, b) for a, b in zip(sizes, sizes[1:]))
        self.dropout = nn.Dropout(dropout)
        self.readout = nn.Linear(hidden_size, output_size)

    def initial_state(self, batch_size: int):
        return tuple(cell.zero_state(batch_size) for cell in self.cells)

    def step(self, x_t: Tensor, state):
        new = []
        for cell, layer_state in zip(self.cells, state):
            layer_state = cell(cell.input(x_t), layer_state)
            x_t = cell.hidden(layer_state)
            new.append(layer_state)
        return self.readout(self.dropout(x_t)), tuple(new)

    def forward(self, x: Tensor, state=None, return_states: bool = False):
        if return_states:
            return super().forward(x, state, return_states=True)
        if state is None:
            state = self.initial_state(x.shape[0])
        for cell, layer_state in zip(self.cells, state):
            x, _ = self.scan(cell.scan_step, (cell.input(x),), layer_state)
        return self.readout(self.dropout(x))

    def trace(self, state) -> dict[str, Tensor]:
        return {"hidden": self.cells[-1].hidden(state[-1])}
