"""The time loop of every step-loop model, eager or compiled in chunks of steps (``compile=true``).

``Scan.__call__(step, inputs, state)`` runs ``step(*inputs_t, state) -> (output_t, state)`` for
t = 0 … T−1 along the time axis (dim 1) of each tensor in ``inputs`` and returns the outputs
stacked [B, T, ...] (an output that is a tuple of tensors, such as a state, stacked leaf by leaf)
and the last state. ``step`` is a stable callable (a bound method), so that
its compiled graphs are built once per model.

Eager (the default), it is a Python loop over ``unbind(1)``; not ``x[:, t]``, whose backward writes a
full-size gradient per step (O(T²)). On CPU these models are bound by per-operator dispatch: a
step is 10-30 operators of [B, H] tensors, each with its autograd node. ``Scan.compile(steps)``
sends training sequences (with gradients) through TorchInductor graphs of ``steps`` consecutive
steps: one call into generated C++ per chunk, forward and backward, with a step's elementwise
work fused into a loop or two. The last T mod ``steps`` steps run through a one-step graph, so
any length works with two graphs. Evaluation (no gradients, other batch sizes) stays eager and
adds no recompilation. Inductor caches its generated code on disk (its FX-graph cache), so a
later process with the same model and shapes skips most of the compiling. Measured in
docs/benchmarks.md ("Step-loop models").
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from torch.utils._pytree import tree_map

# Inductor's C++ wrapper calls the generated kernels from C++ instead of Python: a step is tens of
# tiny kernels, and the Python calls between them were half of the step's time.
OPTIONS = {"cpp_wrapper": True}


def eager(step: Callable, inputs: tuple[Tensor, ...], state):
    """The Python loop: outputs stacked on dim 1, and the last state."""
    outputs = []
    for inputs_t in zip(*(x.unbind(1) for x in inputs)):
        output, state = step(*inputs_t, state)
        outputs.append(output)
    return tree_map(lambda *steps: torch.stack(steps, dim=1), *outputs), state


class Scan:
    """One model's time loops: eager until `compile` is called, then compiled for training."""

    def __init__(self):
        self.steps = 0  # time steps per compiled graph; 0: eager
        self.graphs: dict = {}  # step -> its compiled loop (one graph per input shape: the chunk, one step)

    def compile(self, steps: int) -> None:
        self.steps, self.graphs = steps, {}
        # Dynamo keeps one cache per code object, and every step's loop shares `__call__`'s lambda:
        # each step function × input shape (a chunk, one step) is an entry. Its default limit of 8
        # entries would silently send a third model in one process (tests, benchmarks) back to eager.
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)

    @property
    def compiling(self) -> bool:
        """Whether a call now runs the compiled graphs: compiled, and training (gradients on)."""
        return bool(self.steps) and torch.is_grad_enabled()

    def __call__(self, step: Callable, inputs: tuple[Tensor, ...], state):
        if not self.compiling:
            return eager(step, inputs, state)
        if step not in self.graphs:
            self.graphs[step] = torch.compile(lambda inputs, state: eager(step, inputs, state), options=OPTIONS)
        graph, outputs = self.graphs[step], []
        # split, not slices: one backward for all chunks (a slice's writes a full-size gradient)
        for chunk in zip(*(x.split(self.steps, dim=1) for x in inputs)):
            pieces = [chunk] if chunk[0].shape[1] == self.steps else zip(*(x.split(1, dim=1) for x in chunk))
            for piece in pieces:  # whole chunks, then the last T mod steps steps one by one: two graphs
                output, state = graph(piece, state)
                outputs.append(output)
        return tree_map(lambda *chunks: torch.cat(chunks, dim=1), *outputs), state

    def held(self, step: Callable, inputs_on: tuple[Tensor, ...], state, on: Tensor, initial: Tensor):
        """The loop over the steps where the mask ``on`` [T] is set only (``inputs_on`` holds those
        steps), for a step that leaves its state as it is where the mask is off: every step's
        output [B, T, ...], each that of the latest mask-on step ≤ t (``initial`` before the
        first), and the last state."""
        held = initial.unsqueeze(1)
        if on.any():
            outputs, state = self(step, inputs_on, state)
            held = torch.cat([held, outputs], dim=1)
        return held[:, on.cumsum(0)], state
