"""``compile=true``: the model's training step through `torch.compile` (TorchInductor).

For step-loop models (NTM, DNC: `forward` is `SequenceModel.forward`, a Python loop over `step`)
per-operation overhead dominates on CPU; inductor fuses a step's elementwise operations into a
few generated C++ kernels and its backward likewise. Measured on 2 cores (docs/benchmarks.md):
about 2-3x the eager throughput, after 35-70 s of compilation at the first update, so it pays
off for runs of more than a few minutes and not for short ones (it is off by default).

Only steps taken with gradients are compiled: evaluation (no gradients, other batch sizes) runs
the eager step, so it adds no recompilation. Models with their own fused `forward` (the LSTM/GRU
baselines, SMANN) are refused: compiling a whole sequence would recompile for every length.
Inductor on CPU needs a C++ compiler.
"""
from __future__ import annotations

import os
import shutil

import torch

from memrepro.errors import ConfigError
from memrepro.models.base import SequenceModel


def compile_training_step(model: SequenceModel) -> None:
    """Replace ``model.step`` by one that runs a compiled step when gradients are enabled."""
    if type(model).forward is not SequenceModel.forward:
        raise ConfigError(f"compile=true: {type(model).__name__} runs its own fused forward, not a loop over step; leave compile=false")
    compiler = os.environ.get("CXX", "g++")
    if not (shutil.which(compiler) or shutil.which("c++") or shutil.which("clang++")):
        raise ConfigError(f"compile=true needs a C++ compiler for torch.compile on CPU ({compiler} not found); install one or leave compile=false")
    eager = model.step
    compiled = torch.compile(eager)

    def step(x_t, state):
        return compiled(x_t, state) if torch.is_grad_enabled() else eager(x_t, state)

    model.step = step
