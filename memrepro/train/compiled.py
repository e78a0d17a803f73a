"""``compile=true``: the model's training sequences as native code.

The NTM with a one-layer LSTM controller and the DNC with a one-layer LSTM or GRU controller on
CPU run their hand-written sequence kernels (`memrepro.models.ntm_native`, `dnc_native`: one
native call forward and one backward per sequence, 2-7x faster than TorchInductor's step;
docs/benchmarks.md); their sequences whose every state a forcing trainer keeps go through
TorchInductor, as below. Every other model with
a time loop runs its loops (`memrepro.models.scan`) through TorchInductor graphs of
``compile_steps`` consecutive steps: the stacks of custom cells (constrained LSTM, JANET, NC and
SMANN layer by layer) 8 steps per graph, whole-model steps (Skip RNN, stack-RNN, an NTM or DNC the
kernels do not cover) one, unless ``compile_steps`` says otherwise; a forward that keeps every
state (the forcing trainers') gets them from the compiled loop too. Models without a time loop of
their own (FFNN, the fused LSTM/GRU/RNN, NMN, whose loop carries no gradient) have nothing to
compile. Inductor on CPU needs a C++ compiler. Each call returns one line saying which path it
took, which the run prints.
"""
from __future__ import annotations

import functools
import os
import shutil
import sys

from memrepro.errors import ConfigError
from memrepro.models import dnc_native, ntm_native
from memrepro.models.native import CONTROLLERS as NATIVE_CONTROLLERS, applies as native_scope, first_line
from memrepro.models.base import SequenceModel
from memrepro.models.dnc import DNC
from memrepro.models.ntm import NTM

NATIVE_KERNELS = {NTM: ntm_native, DNC: dnc_native}  # hand-written sequence kernels (memrepro.models.native)


def compile_training_step(model: SequenceModel, steps: int | None = None, native: bool = True) -> str:
    """Run ``model``'s training sequences compiled: its native sequence kernel where it has one
    that applies (``native``), else its time loops through TorchInductor, ``steps`` time steps per
    graph (None: the model's `compile_steps`). Returns one line saying which path it took."""
    name = type(model).__name__
    if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 1):
        raise ConfigError(f"compile_steps={steps!r}: the number of time steps per compiled graph, an integer ≥ 1 (or null: the model's own)")
    if not model.scans:
        return f"compile=true: {name} has no time loop with gradients (batched or fused operators only); nothing to compile"
    compiler = os.environ.get("CXX", "g++")
    if not (shutil.which(compiler) or shutil.which("c++") or shutil.which("clang++")):
        raise ConfigError(f"compile=true needs a C++ compiler for torch.compile on CPU ({compiler} not found); install one or leave compile=false")
    steps = steps or model.compile_steps
    # Compiled lazily, at a first call with gradients: beside a native kernel, only the training
    # calls it leaves to the step loop (a forcing trainer's per-step states) compile.
    model.scan.compile(steps)
    inductor = f"TorchInductor, {steps} step(s) per graph"
    if native and use_native_kernel(model):
        return f"compile=true: {name} trains through its native C++ sequence kernel (sequences whose per-step states a forcing trainer keeps: {inductor})"
    path = f"compile=true: {name} trains through {inductor}"
    if native and type(model) in NATIVE_KERNELS and not native_scope(model):
        c, w = model.controller, model.output.weight
        kinds = " or ".join(k.upper() for k in NATIVE_CONTROLLERS[name])
        path += f" (the native kernel covers a 1-layer {kinds} controller in float32 on CPU; this one is {len(c.layers)}-layer {c.kind.upper()}, {w.dtype} on {w.device.type})"
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
