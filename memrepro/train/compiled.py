"""``compile=true``: the model's training step as native code.

The NTM and the DNC with a one-layer LSTM controller on CPU run their hand-written sequence
kernels (`memrepro.models.ntm_native`, `dnc_native`: one native call forward and one backward
per sequence, 2-7x faster than TorchInductor's step; docs/benchmarks.md). Every other
step-loop model goes through `torch.compile` (TorchInductor), as follows.

For step-loop models (NTM, DNC: `forward` is `SequenceModel.forward`, a Python loop over `step`)
per-operation overhead dominates on CPU; inductor fuses a step's elementwise operations into a
few generated C++ kernels and its backward likewise. Measured on 2 cores (docs/benchmarks.md):
about 2-3x the eager throughput, after 35-70 s of compilation at the first update, so it pays
off for runs of more than a few minutes and not for short ones (it is off by default).

``compile_steps=k`` compiles k consecutive steps as one graph: fewer calls into compiled code and
fusion across steps, for a longer compilation (docs/benchmarks.md has the trade-off measured).

Only steps taken with gradients are compiled: evaluation (no gradients, other batch sizes) runs
the eager step, so it adds no recompilation. Models with their own fused `forward` (the LSTM/GRU
baselines, SMANN) are refused: compiling a whole sequence would recompile for every length.
Inductor on CPU needs a C++ compiler.
"""
from __future__ import annotations

import functools
import os
import shutil
import sys

import torch

from memrepro.errors import ConfigError
from memrepro.models import dnc_native, ntm_native
from memrepro.models.native import applies as native_scope, first_line
from memrepro.models.base import SequenceModel
from memrepro.models.dnc import DNC
from memrepro.models.ntm import NTM

# Inductor's C++ wrapper calls the generated kernels from C++ instead of Python: at batch 1 a
# step is ~50 tiny kernels, and the Python calls between them were half of its time.
OPTIONS = {"cpp_wrapper": True}
NATIVE_KERNELS = {NTM: ntm_native, DNC: dnc_native}  # hand-written sequence kernels (memrepro.models.native)


def compile_training_step(model: SequenceModel, steps: int = 1, native: bool = True) -> str:
    """Run ``model``'s training steps compiled: its native sequence kernel where it has one that
    applies (``native``), else TorchInductor with ``steps`` time steps per compiled graph.
    Returns one line saying which path it took, and why not the native kernel.

    ``steps`` = 1 compiles `step`. ``steps`` = k > 1 compiles a chunk of k consecutive steps as one
    graph (fewer graph calls, and inductor fuses across steps); the last T mod k steps of a
    sequence of length T run through the one-step graph, so any length works with two graphs."""
    if type(model).forward is not SequenceModel.forward:
        raise ConfigError(f"compile=true: {type(model).__name__} runs its own fused forward, not a loop over step; leave compile=false")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ConfigError(f"compile_steps={steps!r}: the number of time steps per compiled graph, an integer ≥ 1")
    compiler = os.environ.get("CXX", "g++")
    if not (shutil.which(compiler) or shutil.which("c++") or shutil.which("clang++")):
        raise ConfigError(f"compile=true needs a C++ compiler for torch.compile on CPU ({compiler} not found); install one or leave compile=false")
    name = type(model).__name__
    if native and use_native_kernel(model):
        return f"compile=true: {name} trains through its native C++ sequence kernel"
    path = f"compile=true: {name} trains through TorchInductor, {steps} step(s) per graph"
    if native and type(model) in NATIVE_KERNELS and not native_scope(model):
        c, w = model.controller, model.output.weight
        path += f" (the native kernel covers a 1-layer LSTM controller in float32 on CPU; this one is {len(c.layers)}-layer {c.kind.upper()}, {w.dtype} on {w.device.type})"
    eager_step, eager_run = model.step, model.run_steps
    compiled_step = torch.compile(eager_step, options=OPTIONS)

    def step(x_t, state):
        return compiled_step(x_t, state) if torch.is_grad_enabled() else eager_step(x_t, state)

    model.step = step
    if steps == 1:
        return path

    def chunk(x, state):  # x [B, steps, I]: the loop is unrolled into one graph
        outputs = []
        for t in range(steps):
            y, state = eager_step(x[:, t], state)
            outputs.append(y)
        return torch.stack(outputs, dim=1), state

    compiled_chunk = torch.compile(chunk, options=OPTIONS)

    def run_steps(x, state=None, keep_states=False):
        if keep_states or not torch.is_grad_enabled():  # per-step states wanted, or evaluation
            return eager_run(x, state, keep_states)
        if state is None:
            state = model.initial_state(x.shape[0])
        length = x.shape[1]
        whole = length - length % steps
        outputs = []
        for t in range(0, whole, steps):
            y, state = compiled_chunk(x[:, t : t + steps], state)
            outputs.append(y)
        for t in range(whole, length):
            y, state = compiled_step(x[:, t], state)
            outputs.append(y.unsqueeze(1))
        return torch.cat(outputs, dim=1), [], state

    model.run_steps = run_steps
    return path


def use_native_kernel(model: SequenceModel) -> bool:
    """Route ``model``'s training sequences through its native kernel, if it has one that applies
    and the kernel builds; a failed build falls back to TorchInductor with a one-line warning."""
    kernel = NATIVE_KERNELS.get(type(model))
    if kernel is None or not native_scope(model):
        return False
    try:
        kernel.extension()
    except Exception as e:
        print(f"memrepro: warning: compile=true: the native {type(model).__name__} kernel did not build ({first_line(e)}); using TorchInductor",
              file=sys.stderr)
        return False
    model.run_steps = functools.partial(kernel.run_steps, model, model.run_steps)
    return True
