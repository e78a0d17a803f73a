"""k models of one architecture, each with its own parameters, run as one batched call.

Used by `memrepro.train.parallel` to train several seeds at once. The parameters are stacked
along a new leading seed axis with `torch.stack`, which is differentiable: the gradient of each
output flows back to the leaf parameters of the model it came from. Three ways to run the stack,
tried in this order at the first call; the first that works is kept (`StackedForward.strategy`)
and why the others did not is kept in `StackedForward.notes`:

* ``fold`` — the seed axis folded into the batch axis. The k batches are concatenated ([k·B, T, I],
  seed 0's rows first) and run through one copy of the model whose `nn.Linear` and `nn.LSTMCell`
  layers hold one weight per seed and multiply each seed's rows by its own (`torch.baddbmm`).
  Everything else in such a model (memory addressing, reads, writes) works per sample already, so
  a step costs the operations of one run. For models whose parameters all sit in such layers and
  whose buffers are equal across seeds (NTM, DNC). At the first call the folded outputs are
  compared with the models' own, so a model that mixes batch rows in some other way (a time-first
  layout, batch statistics) falls through to the next strategy instead of training wrongly.
* ``vmap`` — `torch.vmap` of `functional_call` over the stacked parameters: any model built of
  operations with batching rules (not PyTorch's fused LSTM/GRU kernels or `lstm_cell`, not
  Python control flow on tensor values). Randomness (dropout) is drawn per seed.
* ``loop`` — each model on its own batch, one after another: anything, without the speed-up.

Batches of different lengths (variable-length tasks, curricula) are padded at the end with
unscored zero steps; a causal model's outputs on the real steps do not change, and each model's
outputs are cut back to its own batch's length.
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.func import functional_call

from memrepro.tasks.base import Batch


class FoldedLinear(nn.Module):
    """`nn.Linear` with weight [k, out, in] and bias [k, out]: rows [s·B, (s+1)·B) of the input
    (any shape [k·B, ..., in]) belong to seed s."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.weight, self.bias = linear.weight, linear.bias

    def forward(self, x: Tensor) -> Tensor:
        k = self.weight.shape[0]
        rows = x.reshape(k, -1, x.shape[-1])
        w = self.weight.transpose(1, 2)
        y = torch.bmm(rows, w) if self.bias is None else torch.baddbmm(self.bias.unsqueeze(1), rows, w)
        return y.view(*x.shape[:-1], -1)


class FoldedLSTMCell(nn.Module):
    """`nn.LSTMCell` with one set of weights per seed; PyTorch's equations and gate order (i, f, g, o)."""

    def __init__(self, cell: nn.LSTMCell):
        super().__init__()
        self.hidden_size = cell.hidden_size
        self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh = cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh

    def forward(self, x: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        k = self.weight_ih.shape[0]
        if hx is None:
            zeros = x.new_zeros(x.shape[0], self.hidden_size)
            hx = (zeros, zeros)
        h, c = hx
        gates = torch.bmm(x.view(k, -1, x.shape[-1]), self.weight_ih.transpose(1, 2))
        gates = torch.baddbmm(gates, h.view(k, -1, self.hidden_size), self.weight_hh.transpose(1, 2))
        if self.bias_ih is not None:
            gates = gates + (self.bias_ih + self.bias_hh).unsqueeze(1)
        i, f, g, o = gates.view(x.shape[0], -1).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


FOLDABLE = {nn.Linear: FoldedLinear, nn.LSTMCell: FoldedLSTMCell}


def fold(models: list[nn.Module]) -> nn.Module:
    """A copy of ``models[0]`` with its foldable layers replaced, to be called through
    `functional_call` with the stacked parameters. Raises ValueError for parameters outside such
    layers, or buffers that differ between the models (e.g. a random memory initialisation)."""
    folded = copy.deepcopy(models[0])
    for module in list(folded.modules()):
        for name, child in module.named_children():
            if type(child) in FOLDABLE:
                setattr(module, name, FOLDABLE[type(child)](child))
    loose = [f"{path}.{name}".lstrip(".") for path, module in folded.named_modules() if type(module) not in FOLDABLE.values()
             for name, _ in module.named_parameters(recurse=False)]
    if loose:
        raise ValueError(f"parameters outside nn.Linear/nn.LSTMCell layers: {', '.join(loose[:3])}")
    for name, buffer in models[0].named_buffers():
        if not all(torch.equal(buffer, dict(m.named_buffers())[name]) for m in models[1:]):
            raise ValueError(f"buffer {name} differs between the seeds")
    return folded


class StackedForward:
    """Call with the k models and their k batches; returns the k models' outputs."""

    def __init__(self):
        self.strategy: str | None = None  # fold | vmap | loop, decided at the first call
        self.notes: dict[str, str] = {}  # strategy -> why it could not run this model
        self.folded: nn.Module | None = None

    def __call__(self, models: list[nn.Module], batches: list[Batch]) -> list[Tensor]:
        if self.strategy is not None:
            return getattr(self, f"_{self.strategy}")(models, batches)
        for strategy in ("fold", "vmap"):
            try:
                outputs = getattr(self, f"_{strategy}")(models, batches)
                if strategy == "fold":
                    self._check_fold(models, batches)
            except Exception as e:  # this strategy cannot run this model; try the next
                self.notes[strategy] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                continue
            self.strategy = strategy
            return outputs
        self.strategy = "loop"
        return self._loop(models, batches)

    @staticmethod
    def _stacked(models) -> dict[str, Tensor]:
        return {name: torch.stack(p) for name, *p in zip(dict(models[0].named_parameters()), *(m.parameters() for m in models))}

    def _fold(self, models, batches) -> list[Tensor]:
        if self.folded is None:
            self.folded = fold(models)
        self.folded.train(models[0].training)
        outputs = functional_call(self.folded, self._stacked(models), (Batch.cat(batches).inputs,))
        B = len(batches[0])
        return [outputs[i * B : (i + 1) * B, : b.inputs.shape[1]] for i, b in enumerate(batches)]

    def _check_fold(self, models, batches) -> None:
        """The folded outputs must equal the models' own (compared in eval mode: no dropout)."""
        training = models[0].training
        try:
            with torch.no_grad():
                for m in models:
                    m.eval()
                for own, folded in zip(self._loop(models, batches), self._fold(models, batches)):
                    if not torch.allclose(own, folded, rtol=1e-4, atol=1e-5):
                        raise ValueError(f"folded outputs differ from the models' own by {(own - folded).abs().max():.3g}")
        finally:
            for m in models:
                m.train(training)

    def _vmap(self, models, batches) -> list[Tensor]:
        template = models[0]
        inputs = Batch.cat(batches).inputs
        inputs = inputs.view(len(models), -1, *inputs.shape[1:])
        buffers = {name: torch.stack(b) for name, *b in zip(dict(template.named_buffers()), *(m.buffers() for m in models))}

        def one(params, buffers, x):
            return functional_call(template, (params, buffers), (x,))

        outputs = torch.vmap(one, randomness="different")(self._stacked(models), buffers, inputs)
        return [y[:, : b.inputs.shape[1]] for y, b in zip(outputs, batches)]

    @staticmethod
    def _loop(models, batches) -> list[Tensor]:
        return [m(b.inputs) for m, b in zip(models, batches)]
