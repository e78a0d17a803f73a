"""The NTM's training sequence as one native call forward and one backward (``compile=true`` on CPU).

`ntm_native.cpp` runs a whole sequence of `memrepro.models.ntm.NTM` with a one-layer LSTM
controller: the same equations (NTM eqs. 2-9) and activations, with the backward pass derived
by hand (docs/models/ntm.md, "Native kernel") and checked against autograd on the Python model
(tests/test_native_kernels.py). A step there is four matrix products and plain loops, where the
Python step is ~100 tensor operations whose dispatch, not their arithmetic, sets the speed of
these small models on CPU (docs/benchmarks.md has the figures).

Built at first use by `memrepro.models.native` (about 30 s, then cached); it needs a C++ compiler,
as TorchInductor does.
"""
from __future__ import annotations

import torch
from torch import Tensor

from memrepro.models.native import build, runs_eager


def extension():
    return build("ntm_native")


class NTMSequence(torch.autograd.Function):
    """y = NTM(x) over a whole sequence from a given initial state; gradients to the parameters
    and to the initial state (so a learned initial memory trains). The final state is returned
    without gradients."""

    @staticmethod
    def forward(ctx, x, h0, c0, memory0, reads0, weights0, Wc, bc, Wi, bi, Wo, bo, read_heads: int, shifts: int, clip: float, sharpen: bool):
        y, *final_and_saved = extension().forward(x, h0, c0, memory0, reads0, weights0, Wc, bc, Wi, bi, Wo, bo, read_heads, shifts, clip, sharpen)
        final, ctx.buffers = final_and_saved[:5], final_and_saved[5:]
        ctx.save_for_backward(Wc, Wi, Wo)
        ctx.sizes = (x.shape[-1], read_heads, shifts, clip, sharpen)
        ctx.mark_non_differentiable(*final)
        return (y, *final)

    @staticmethod
    def backward(ctx, dy, *_):
        grads = extension().backward(dy.contiguous(), ctx.buffers, *ctx.saved_tensors, *ctx.sizes)
        ctx.buffers = None
        return (None, *grads, None, None, None, None)


def run_steps(model, eager_run, x: Tensor, state=None, keep_states: bool = False):
    """`SequenceModel.run_steps` for training: the native sequence when gradients are on and the
    sequence starts from the model's initial state; the eager loop otherwise (evaluation,
    per-step states for plots and forcing, a carried state)."""
    if runs_eager(x, state, keep_states):
        return eager_run(x, state, keep_states)
    from memrepro.models.ntm import NTMState

    start = model.initial_state(x.shape[0])
    ((h0, c0),) = start.controller
    cell = model.controller.layers[0]
    y, hT, cT, memory, reads, weights = NTMSequence.apply(
        x.contiguous(), h0, c0, start.memory, start.reads, start.weights, cell.weight, cell.bias,
        model.interface.weight, model.interface.bias, model.output.weight, model.output.bias,
        model.read_heads, model.shifts, model.clip_value or 0.0, model.sharpening,
    )
    return y, [], NTMState(((hT, cT),), memory, reads, weights)
