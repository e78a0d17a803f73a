"""k models of one architecture, each with its own parameters, run as one batched call.

Used by `memrepro.train.parallel` to train several seeds at once. The parameters are stacked
along a new leading seed axis with `torch.stack`, which is differentiable: the gradient of each
output flows back to the leaf parameters of the model it came from. Three ways to run the stack,
tried in this order at the first call; the first that works is kept (`StackedForward.strategy`)
and why the others did not is kept in `StackedForward.notes`:

* ``fold`` — the seed axis folded into the batch axis. The k batches are concatenated ([k·B, T, I],
  seed 0's rows first) and the model runs once on them with its parameters replaced by the
  stacked ones (`functional_call`), marked `SeedStacked` so that every `F.linear` / `nn.Linear`
  multiplies each seed's rows by that seed's weights (`torch.baddbmm`). Everything else in a
  memory model (addressing, reads, writes, allocation) works per sample already, so an update
  costs the operations of one run. For models whose parameters are all used through linear maps
  and whose buffers are equal across seeds (DNC; the NTM with a constant memory initialisation,
  not its default random one). At the first call the folded outputs are compared with the models' own, so a model that uses a
  parameter some other way, or mixes batch rows (a time-first layout), falls through to the next
  strategy instead of training wrongly.
* ``vmap`` — `torch.vmap` of `functional_call` over the stacked parameters: any model built of
  operations with batching rules (not PyTorch's fused LSTM/GRU kernels or `lstm_cell`, not
  Python control flow on tensor values). Randomness (dropout) is drawn per seed.
* ``loop`` — each model on its own batch, one after another: anything, without the speed-up.

Batches of different lengths (variable-length tasks, curricula) are padded at the end with
unscored zero steps; a causal model's outputs on the real steps do not change, and each model's
outputs are cut back to its own batch's length.

What a model's forward leaves on the module for its loss (`SequenceModel.forward_values`: Skip
RNN's update count for the budget loss) is handed to each seed's model after a stacked call: its
rows of the folded batch, or its slice of the vmapped outputs. Over padded steps such a value
counts the padding too (Skip RNN's budget: the updates on the zero steps), so on variable-length
tasks those lanes differ from separate runs by that much.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from memrepro.tasks.base import Batch


class SeedStacked(torch.Tensor):
    """A parameter stacked over seeds ([k, out, in] weight, [k, out] bias) that `F.linear` (and so
    `nn.Linear`) applies per seed: rows [s·B, (s+1)·B) of the input, any shape [k·B, ..., in],
    are multiplied by seed s's weight (`torch.baddbmm`). Any other use sees a plain stacked tensor;
    a model that uses its parameters otherwise either fails or fails the output check, and does
    not fold."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        with torch._C.DisableTorchFunctionSubclass():
            if func is not F.linear:
                return func(*args, **kwargs)
            x, weight, bias = (*args, *kwargs.values(), None)[:3]
            rows = x.reshape(weight.shape[0], -1, x.shape[-1])
            w = weight.transpose(1, 2)
            y = torch.bmm(rows, w) if bias is None else torch.baddbmm(bias.unsqueeze(1), rows, w)
            return y.view(*x.shape[:-1], -1)


class StackedForward:
    """Call with the k models and their k batches; returns the k models' outputs."""

    def __init__(self):
        self.strategy: str | None = None  # fold | vmap | loop, decided at the first call
        self.notes: dict[str, str] = {}  # strategy -> why it could not run this model

    def __call__(self, models: list[nn.Module], batches: list[Batch]) -> list[Tensor]:
        if self.strategy is not None:
            return getattr(self, f"_{self.strategy}")(models, batches)
        for strategy in ("fold", "vmap"):
            try:
                if strategy == "fold":
                    self._check_fold(models, batches)
                outputs = getattr(self, f"_{strategy}")(models, batches)
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
        if self.strategy is None:  # the models' buffers are used as they are: those of models[0]
            for name, buffer in models[0].named_buffers():
                if not all(torch.equal(buffer, dict(m.named_buffers())[name]) for m in models[1:]):
                    raise ValueError(f"buffer {name} differs between the seeds")
        params = {name: p.as_subclass(SeedStacked) for name, p in self._stacked(models).items()}
        outputs = functional_call(models[0], params, (Batch.cat(batches).inputs,))
        B = len(batches[0])
        values = forward_values(models[0])
        for i, model in enumerate(models):  # seed i's rows of what the forward left
            give(model, {name: v[i * B : (i + 1) * B] if isinstance(v, Tensor) else v for name, v in values.items()})
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
            y = functional_call(template, (params, buffers), (x,))
            return y, {name: v for name, v in forward_values(template).items() if isinstance(v, Tensor)}

        outputs, tensors = torch.vmap(one, randomness="different")(self._stacked(models), buffers, inputs)
        others = {name: v for name, v in forward_values(template).items() if not isinstance(v, Tensor)}
        for i, model in enumerate(models):  # seed i's slice; the template's own held vmap's batched values
            give(model, {**others, **{name: v[i] for name, v in tensors.items()}})
        return [y[:, : b.inputs.shape[1]] for y, b in zip(outputs, batches)]

    @staticmethod
    def _loop(models, batches) -> list[Tensor]:
        return [m(b.inputs) for m, b in zip(models, batches)]


def forward_values(model: nn.Module) -> dict:
    """What the latest forward left on ``model`` for its loss (`SequenceModel.forward_values`)."""
    return {name: getattr(model, name) for name in getattr(model, "forward_values", ())}


def give(model: nn.Module, values: dict) -> None:
    for name, value in values.items():
        setattr(model, name, value)
