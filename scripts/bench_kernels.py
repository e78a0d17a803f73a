#!/usr/bin/env python
"""Paired A/B of a native kernel: this working tree's build against a git revision's, one process.

    python scripts/bench_kernels.py dnc --against HEAD~1                 DNC, batch 32, 9 rounds
    python scripts/bench_kernels.py ntm --against main --batch 1 --rounds 15

Both builds (`memrepro/models/<model>_native.cpp` with its `native_common.h`) are loaded side by
side and timed in alternation: each round runs ~``--seconds`` of forward + backward through one
build, then through the other, on the same batch (issue 7's copy sizes, 41 steps). On a shared
machine whose speed drifts by up to 2x within minutes (docs/benchmarks.md), separate runs cannot
tell a 10 % change from noise; rounds seconds apart can. Prints each build's median time per
forward + backward and the median of the rounds' ratios with their range.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
from bench import LENGTH, build  # noqa: E402  (the bench's model sizes, one definition)

from memrepro.models import dnc_native, native, ntm_native  # noqa: E402
from memrepro.train.compiled import compile_training_step  # noqa: E402

KERNELS = {"ntm": ntm_native, "dnc": dnc_native}


def checkout(revision: str, stem: str, into: Path) -> Path:
    """The kernel's source and header at ``revision``, written into ``into``."""
    for name in (f"{stem}.cpp", native.HEADER.name):
        path = (native.HERE / name).relative_to(REPO).as_posix()
        shown = subprocess.run(["git", "show", f"{revision}:{path}"], cwd=REPO, capture_output=True, text=True)
        if shown.returncode != 0:
            raise SystemExit(f"bench_kernels: {path} is not in revision {revision!r} ({shown.stderr.strip()})")
        (into / name).write_text(shown.stdout)
    return into


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", choices=sorted(KERNELS))
    p.add_argument("--against", default="HEAD", help="the git revision to compare the working tree with")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--seconds", type=float, default=1.0, help="length of one build's turn in a round")
    p.add_argument("--threads", type=int, default=1, help="ATen threads; above 1 the clock is the wall clock, not CPU time")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.threads == 1 else time.perf_counter
    torch.manual_seed(0)

    kernel = KERNELS[args.model]
    stem = kernel.__name__.rsplit(".", 1)[1]
    extensions = {"working tree": kernel.extension(), args.against: native.build(stem, checkout(args.against, stem, Path(tempfile.mkdtemp())))}
    task, model, _ = build(args.model, args.batch)
    compile_training_step(model, native=True)
    x = task.sample(args.batch, torch.Generator().manual_seed(0)).inputs

    def update() -> None:
        model(x).sum().backward()

    seconds = {name: [] for name in extensions}
    for round_ in range(args.rounds + 1):  # round 0 warms up and sizes the turns
        for name, extension in extensions.items():
            kernel.extension = lambda extension=extension: extension
            n = 3 if round_ == 0 else max(1, round(args.seconds / seconds[name][0]))
            start = clock()
            for _ in range(n):
                update()
            seconds[name].append((clock() - start) / n)
    times = {name: s[1:] for name, s in seconds.items()}
    (a, ta), (b, tb) = times.items()
    ratios = [y / z for y, z in zip(tb, ta)]
    clock_name = "CPU time" if args.threads == 1 else f"wall clock, {args.threads} threads"
    print(f"{args.model}, batch {args.batch}, {LENGTH * 2 + 1} steps, forward + backward, {clock_name}, {args.rounds} rounds:")
    for name, t in times.items():
        print(f"  {name:14s} {statistics.median(t) * 1e3:8.2f} ms  (range {min(t) * 1e3:.2f}-{max(t) * 1e3:.2f})")
    print(f"  {b} / {a}: {statistics.median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f}); above 1: the working tree is faster")


if __name__ == "__main__":
    main()
