"""Building the native sequence kernels (`ntm_native.cpp`, `dnc_native.cpp`) at first use.

`torch.utils.cpp_extension` compiles each source with `native_common.h` (~30 s, ninja and a C++
compiler) and caches the result under ~/.cache/torch_extensions. The extension's name carries a
hash of the source and the header, so an edited header rebuilds it (PyTorch hashes only the
listed sources), and the SIMD width PyTorch uses on this CPU, so builds for different widths
do not collide.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import torch

HERE = Path(__file__).parent
HEADER = HERE / "native_common.h"


@functools.cache
def build(stem: str):
    """The compiled extension of ``<stem>.cpp`` next to this file."""
    from torch.utils.cpp_extension import load

    source = HERE / f"{stem}.cpp"
    digest = hashlib.sha1(source.read_bytes() + HEADER.read_bytes()).hexdigest()[:10]
    # ATen's SIMD types (exp, tanh, masked tails) at the width PyTorch itself uses on this CPU.
    capability = torch.backends.cpu.get_cpu_capability()
    flags = ["-O3", "-march=native"] + ([f"-DCPU_CAPABILITY_{capability}"] if capability in ("AVX2", "AVX512") else [])
    return load(f"memrepro_{stem}_{capability.lower()}_{digest}", [str(source)], extra_cflags=flags, verbose=False)
