"""Building the native sequence kernels (`ntm_native.cpp`, `dnc_native.cpp`) at first use.

`torch.utils.cpp_extension` compiles each source with `native_common.h` (~30 s, ninja and a C++
compiler) and caches the result under ~/.cache/torch_extensions. The extension's name carries a
hash of the source, the header and the compiler flags, so an edited header rebuilds it (PyTorch
hashes only the listed sources), and the SIMD width PyTorch uses on this CPU, so builds for
different widths do not collide. The kernels spread a batch's sequences over ATen's threads
(`threads=`), which needs OpenMP in their own build.
"""
from __future__ import annotations

import functools
import hashlib
import sys
from pathlib import Path

import torch

HERE = Path(__file__).parent
HEADER = HERE / "native_common.h"


CONTROLLERS = {"NTM": ("lstm",), "DNC": ("lstm", "gru")}  # the controller kinds each kernel computes


def applies(model) -> bool:
    """Whether a kernel computes `model` (an NTM or a DNC): a one-layer controller of a kind its
    kernel covers (`CONTROLLERS`), float32 on CPU."""
    weight = model.output.weight
    return (model.controller.kind in CONTROLLERS[type(model).__name__] and len(model.controller.layers) == 1
            and weight.device.type == "cpu" and weight.dtype == torch.float32)


def runs_eager(x, state, keep_states: bool) -> bool:
    """Whether a `run_steps` call is one for the Python step loop: evaluation (no gradients),
    per-step states (plots, forcing trainers), a carried state, inputs that want gradients (the
    kernels compute none for x), or not float32."""
    return keep_states or state is not None or not torch.is_grad_enabled() or x.requires_grad or x.dtype != torch.float32


@functools.cache
def build(stem: str, folder: Path = HERE):
    """The compiled extension of ``<stem>.cpp`` with its ``native_common.h`` in ``folder`` (this
    package's own by default; scripts/bench_kernels.py builds another revision's beside it).

    at::parallel_for is a header template: under PyTorch's OpenMP backend its threads exist only
    if the kernel itself is compiled with OpenMP (without, it silently runs on one thread). A
    compiler that has no OpenMP (Apple's clang) still gets a kernel, for one thread, with a warning.
    """
    openmp = "parallel backend: OpenMP" in torch.__config__.parallel_info()
    try:
        return compile_kernel(stem, folder, openmp)
    except Exception as e:
        if not openmp:
            raise
        print(f"memrepro: warning: the native {kind(stem)} kernel did not build with OpenMP ({first_line(e)}); building it for one thread",
              file=sys.stderr, flush=True)
        return compile_kernel(stem, folder, openmp=False)


def compile_kernel(stem: str, folder: Path, openmp: bool):
    """`torch.utils.cpp_extension.load` of the kernel, cached under a name of its source and flags."""
    from torch.utils.cpp_extension import load

    source, header = folder / f"{stem}.cpp", folder / HEADER.name
    # ATen's SIMD types (exp, tanh, masked tails) at the width PyTorch itself uses on this CPU.
    capability = torch.backends.cpu.get_cpu_capability()
    flags = ["-O3", "-march=native"] + ([f"-DCPU_CAPABILITY_{capability}"] if capability in ("AVX2", "AVX512") else [])
    threads = ["-fopenmp"] if openmp else []
    digest = hashlib.sha1(source.read_bytes() + header.read_bytes() + " ".join(flags + threads).encode()).hexdigest()[:10]
    name = f"memrepro_{stem}_{capability.lower()}_{digest}"
    if not built(name):
        print(f"memrepro: building the native {kind(stem)} kernel (once, ~30 s)", file=sys.stderr, flush=True)
    return load(name, [str(source)], extra_cflags=flags + threads, extra_ldflags=threads, extra_include_paths=[str(folder)], verbose=False)


def kind(stem: str) -> str:
    """The model a kernel serves, for messages: "ntm_native" -> "NTM"."""
    return stem.split("_")[0].upper()


def first_line(error: Exception) -> str:
    """A failed build's reason: the compiler's message runs to many lines, its first says why."""
    return next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)


def built(name: str) -> bool:
    """Whether PyTorch's extension cache already holds ``name`` (then loading takes a moment)."""
    try:
        from torch.utils.cpp_extension import _get_build_directory  # private: only a progress hint depends on it

        return (Path(_get_build_directory(name, False)) / f"{name}.so").exists()
    except Exception:
        return False
