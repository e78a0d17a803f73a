"""The DNC's training sequence as one native call forward and one backward (``compile=true`` on CPU).

`dnc_native.cpp` runs a whole sequence of `memrepro.models.dnc.DNC` with a one-layer LSTM or GRU
controller from its (all-zero) initial state: the same equations (Methods) with the backward
pass derived by hand (docs/models/dnc.md, "Native kernel") and checked against autograd on the
Python model (tests/test_native_kernels.py). Built at first use by `memrepro.models.native`.
"""
from __future__ import annotations

import torch
from torch import Tensor

from memrepro.models.native import build, runs_eager


def extension():
    return build("dnc_native")


class DNCSequence(torch.autograd.Function):
    """y = DNC(x) over a whole sequence from the zero initial state; gradients to the weights:
    the controller's (an LSTM's weight and bias, or a GRU's weight_x, bias_x, weight_h, bias_h),
    then the interface's and the output layer's."""

    @staticmethod
    def forward(ctx, x, sizes: tuple, clip: float, *weights):
        *controller, Wi, bi, Wo, bo = weights
        y, *saved = extension().forward(x, controller, Wi, bi, Wo, bo, *sizes, clip)
        ctx.buffers = saved
        ctx.save_for_backward(Wi, Wo, *controller)
        ctx.sizes = (x.shape[-1], sizes[-1], clip)
        return y, saved

    @staticmethod
    def backward(ctx, dy, *_):
        Wi, Wo, *controller = ctx.saved_tensors
        grads = extension().backward(dy.contiguous(), ctx.buffers, controller, Wi, Wo, *ctx.sizes)
        ctx.buffers = None
        return (None, None, None, *grads)


def run_steps(model, eager_run, x: Tensor, state=None, keep_states: bool = False):
    """`SequenceModel.run_steps` for training: the native sequence when gradients are on and the
    sequence starts from the initial state; the eager loop otherwise."""
    if runs_eager(x, state, keep_states):
        return eager_run(x, state, keep_states)
    from memrepro.models.dnc import DNCState

    cell, gru = model.controller.layers[0], model.controller.kind == "gru"
    controller = (cell.weight_x, cell.bias_x, cell.weight_h, cell.bias_h) if gru else (cell.weight, cell.bias)
    sizes = (model.controller.hidden_size, model.slots, model.width, model.read_heads)
    y, saved = DNCSequence.apply(x.contiguous(), sizes, model.clip_value or 0.0, *controller, model.interface.weight,
                                 model.interface.bias, model.output.weight, model.output.bias)
    T, B, C, R, W = x.shape[1], x.shape[0], sizes[0], model.read_heads, model.width
    # copies: the buffers are reused once released; memory is [W, N] inside the kernel
    read_weights, write_weights, usage, precedence = (saved[k][T].clone() for k in (24, 16, 8, 18))
    link = saved[17][T // 2 if T % 2 == 0 else -1].clone()  # even steps' links are kept, the last odd one at the end
    memory, hr = saved[6][T].transpose(1, 2).contiguous(), saved[25][T - 1].clone()
    h = hr[:, :C]
    controller_state = ((h,),) if gru else ((h, saved[2][T].clone()),)
    return y, [], DNCState(controller_state, memory, hr[:, C:].reshape(B, R, W), read_weights, write_weights, usage, link, precedence)
