#!/usr/bin/env python
"""Training throughput, memory, parallel seeds and time-to-solve (`make bench`; docs/benchmarks.md).

    python scripts/bench.py                              throughput of every model on main, batch 1 and 32
    python scripts/bench.py --ref-ntm DIR --ref-dnc DIR  ... and the reference checkouts beside ours, with ratios
    python scripts/bench.py --ref-ntm DIR --ref-dnc DIR --paired 7   ... and native kernel vs reference timed in alternation
    python scripts/bench.py --compile                    ... and NTM, DNC through TorchInductor (a minute of compiling each)
    python scripts/bench.py --compile --compile-steps 1,8   ... one step and 8-step chunks per compiled graph
    python scripts/bench.py --parallel                   5 seeds in lockstep vs 5 sequential runs
    python scripts/bench.py --solve                      NTM copy, seeds 0-2: sequences and seconds to < 0.1 bit errors/seq
    python scripts/bench.py --save                       write the figures into docs/benchmarks.md

The sizes are issue 7's: copy task, length 20 (41 steps), LSTM controller of 100 units, memory
128 x 20, one read and one write head. Throughput is sequences per second of whole training
updates (sample, forward, backward, clip, optimizer step), the median of ``--repeats`` timed
repeats after a warm-up. Peak memory is the growth of the process's peak RSS while training.
The NTM and the DNC are also measured with their native sequence kernels (``+native``: what
compile=true runs for them; each builds in ~30 s the first time). Every measurement runs in a
fresh subprocess, one at a time, so that models do not share allocator caches or threads and a
slow reference cannot disturb ours.

The reference checkouts (loudinthecloud/pytorch-ntm, ixaxaar/pytorch-dnc) are imported from
the given folders, never copied here; each is driven the way its own copy-task training loop
drives it (see `ref_ntm_update` and `ref_dnc_update`).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "benchmarks.md"
BLOCK = re.compile(r"(<!-- bench:figures -->\n```json\n)(.*?)(\n```)", re.S)

LENGTH = 20  # copy length: 20 input vectors, the delimiter, 20 outputs = 41 steps
# Each model at the issue's sizes (the configs' own defaults where they match).
MODELS = {
    "lstm": ["model.hidden_size=100"],
    "ntm": ["model.controller_size=100", "model.memory_slots=128", "model.memory_width=20", "model.read_heads=1", "model.write_heads=1"],
    "dnc": ["model.controller_size=100", "model.memory_slots=128", "model.memory_width=20", "model.read_heads=1"],
    "smann": ["model.memory_slots=128", "model.memory_width=20"],
}
REFERENCES = {"ntm": "ref_ntm", "dnc": "ref_dnc"}
STEP_LOOP = ("ntm", "dnc")  # models whose forward loops over step: what --compile runs through TorchInductor
NATIVE = ("ntm", "dnc")  # models with a native sequence kernel: what compile=true runs for them
PARALLEL_SEEDS = 5
# NTM copy training as scripts/learn_memory.py runs it (batch 32, Adam 1e-3, gradient norm clipped
# at 1), evaluated every 100 updates on 100 sequences of the training lengths.
SOLVE = ["trainer.batch_size=32", "trainer.optimizer.lr=1e-3", "trainer.clip_norm=1", "task.eval_size=100", "task.eval_lengths=[]",
         "trainer.steps=8000", "trainer.eval_every=100", "trainer.checkpoint_every=1000"]
SOLVE_LIMIT_S = 1200


# --- measurements, each in its own subprocess ----------------------------------------------------
def timed(update, batch: int, repeats: int, seconds: float) -> dict:
    """Median sequences/s of ``update`` over ``repeats`` repeats of about ``seconds`` each, by the
    wall clock (``seq_s``) and by this process's CPU time (``cpu_seq_s``: with one thread, what
    the wall clock would show on an idle machine; steadier on a shared one)."""
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n, first_s = calibrated(update, seconds)
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            update()
        wall.append(n * batch / (time.perf_counter() - start))
        cpu.append(n * batch / (time.process_time() - start_cpu))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seq_s": statistics.median(wall), "cpu_seq_s": statistics.median(cpu), "spread": (max(cpu) - min(cpu)) / statistics.median(cpu),
            "updates": n, "peak_mb": (peak - rss_before) / 1024, "first_update_s": first_s}


def calibrated(update, seconds: float) -> tuple[int, float]:
    """Warm ``update`` up; how many calls take about ``seconds``, and how long the first took."""
    start = time.perf_counter()
    update()  # warm-up: first-call allocations, lazy initialisation, compilation (compile=true)
    first_s = time.perf_counter() - start
    update()
    start = time.perf_counter()
    update()
    return max(1, round(seconds / (time.perf_counter() - start))), first_s


def build(model: str, batch: int, extra=(), seed: int = 0):
    from memrepro.config import compose
    from memrepro.run import build as build_run

    cfg = compose([f"model={model}", "task=copy", f"task.lengths=[{LENGTH},{LENGTH}]", "task.eval_lengths=[]", "task.eval_size=32",
                   f"trainer.batch_size={batch}", "trainer.progress=false", *MODELS[model], *extra])
    return build_run(cfg, seed=seed)


def our_update(spec: dict):
    """(model, update): one training update of ours as the trainer runs it (`Trainer._update`)."""
    from memrepro.train.compiled import compile_training_step

    task, model, trainer = build(spec["model"], spec["batch"], spec.get("overrides", ()))
    if spec.get("compile"):
        compile_training_step(model, spec.get("compile_steps", 1), native=spec.get("native", False))
    trainer.start(model, task, Path(tempfile.mkdtemp()))
    return model, lambda: trainer._update(trainer._next_batch())


def ours(spec: dict) -> dict:
    model, update = our_update(spec)
    return {**timed(update, spec["batch"], spec["repeats"], spec["seconds"]), "parameters": model.num_parameters()}


def ref_ntm_update(root: str, batch: int):
    """loudinthecloud/pytorch-ntm: EncapsulatedNTM with its copy-task defaults (RMSprop, BCELoss,
    gradients clamped to ±10), one step as its train.py `train_batch` takes it, sequence-first."""
    import torch
    from torch import nn

    sys.path.insert(0, root)
    from ntm.aio import EncapsulatedNTM

    net = EncapsulatedNTM(9, 8, 100, 1, 1, 128, 20)
    optimizer = torch.optim.RMSprop(net.parameters(), momentum=0.9, alpha=0.95, lr=1e-4)
    criterion = nn.BCELoss()

    def update():
        bits = torch.randint(0, 2, (LENGTH, batch, 8)).float()
        x = torch.zeros(LENGTH + 1, batch, 9)
        x[:LENGTH, :, :8], x[LENGTH, :, 8] = bits, 1.0
        optimizer.zero_grad()
        net.init_sequence(batch)
        for t in range(LENGTH + 1):
            net(x[t])
        y = torch.zeros(bits.shape)
        for t in range(LENGTH):
            y[t], _ = net()
        loss = criterion(y, bits)
        loss.backward()
        for p in net.parameters():
            if p.grad is not None:
                p.grad.data.clamp_(-10, 10)
        optimizer.step()
        binary = y.clone().data
        binary.apply_(lambda v: 0 if v < 0.5 else 1)
        return loss.item(), torch.sum(torch.abs(binary - bits)).item() / batch

    return net, update


def ref_dnc_update(root: str, batch: int):
    """ixaxaar/pytorch-dnc: DNC with one LSTM layer of 100, 128 x 20 memory, one read head, as its
    tasks/copy_task.py trains it (Adam, BCE with logits, gradient norm clipped to 50)."""
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, root)
    from dnc import DNC

    rnn = DNC(input_size=9, hidden_size=100, rnn_type="lstm", num_layers=1, num_hidden_layers=1, nr_cells=128, cell_size=20,
              read_heads=1, batch_first=True, independent_linears=True, device=torch.device("cpu"))
    optimizer = torch.optim.Adam(rnn.parameters(), lr=1e-4, eps=1e-9, betas=(0.9, 0.98))

    def update():
        bits = torch.randint(0, 2, (batch, LENGTH, 8)).float()
        x, target = torch.zeros(batch, 2 * LENGTH + 1, 9), torch.zeros(batch, 2 * LENGTH + 1, 9)
        x[:, :LENGTH, :8], x[:, LENGTH, 8], target[:, LENGTH + 1 :, :8] = bits, 1.0, bits
        optimizer.zero_grad()
        output, _ = rnn(x, (None, None, None), reset_experience=True, pass_through_memory=True)
        # its outputs come time-first even with batch_first=True (so its own copy task only runs
        # when batch size = sequence length); one transpose lines them up with the targets
        loss = F.binary_cross_entropy_with_logits(output.transpose(0, 1), target)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(rnn.parameters(), 50)
        optimizer.step()
        return loss.item()

    return rnn, update


def paired(spec: dict) -> dict:
    """Our native kernel (compile=true) and the reference in one process, timed in alternation:
    each round ~``seconds`` of ours then ~``seconds`` of the reference, by CPU time. Each round's
    ratio compares two measurements seconds apart, so the drift of a shared machine's speed
    (up to 2x within minutes here) mostly cancels; the median over rounds is the figure."""
    updates = (our_update({**spec, "compile": True, "native": True})[1], reference_update(spec)[1])
    counts = [calibrated(update, spec["seconds"])[0] for update in updates]
    rates = ([], [])
    for _ in range(spec["rounds"]):
        for update, n, rate in zip(updates, counts, rates):
            start = time.process_time()
            for _ in range(n):
                update()
            rate.append(n * spec["batch"] / (time.process_time() - start))
    ratios = [a / b for a, b in zip(*rates)]
    return {"x_ref": statistics.median(ratios), "x_ref_min": min(ratios), "x_ref_max": max(ratios),
            "cpu_seq_s": statistics.median(rates[0]), "ref_cpu_seq_s": statistics.median(rates[1])}


def reference_update(spec: dict):
    """(network, update) of the reference checkout at ``spec["root"]``."""
    return globals()[REFERENCES[spec["model"]] + "_update"](spec["root"], spec["batch"])


def reference(spec: dict) -> dict:
    net, update = reference_update(spec)
    result = timed(update, spec["batch"], spec["repeats"], spec["seconds"])
    return {**result, "parameters": sum(p.numel() for p in net.parameters())}


def parallel(spec: dict) -> dict:
    """``PARALLEL_SEEDS`` seeds trained for ``steps`` updates (evaluated at the end): one after
    another, then in lockstep; the speed-up by wall clock and by CPU time, and the largest
    difference between their metrics."""
    import pandas as pd

    from memrepro.results import io
    from memrepro.train.parallel import Lane, fit_parallel

    steps, seeds = spec["steps"], range(PARALLEL_SEEDS)
    extra = [f"trainer.steps={steps}", f"trainer.eval_every={steps}", f"trainer.checkpoint_every={steps}"]
    root = Path(tempfile.mkdtemp())
    runs = {s: build(spec["model"], spec["batch"], extra, seed=s) for s in seeds}
    start, start_cpu = time.perf_counter(), time.process_time()
    for s, (task, model, trainer) in runs.items():
        (root / f"seq{s}").mkdir()
        trainer.fit(model, task, root / f"seq{s}", seed=s)
    sequential_s, sequential_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    lanes = []
    for s in seeds:
        task, model, trainer = build(spec["model"], spec["batch"], extra, seed=s)
        (root / f"par{s}").mkdir()
        lanes.append(Lane(trainer, model, task, root / f"par{s}", s))
    start, start_cpu = time.perf_counter(), time.process_time()
    forward = fit_parallel(lanes, progress=False)
    parallel_s, parallel_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    diff = max((pd.read_csv(root / f"seq{s}" / io.METRICS) - pd.read_csv(root / f"par{s}" / io.METRICS)).abs().max().max() for s in seeds)
    return {"sequential_s": sequential_s, "parallel_s": parallel_s, "speedup": sequential_s / parallel_s, "cpu_speedup": sequential_cpu / parallel_cpu, "max_diff": float(diff),
            "strategy": forward.strategy}


def solve(spec: dict) -> dict:
    """`memrepro model=ntm task=copy` (lengths 1-20) until the evaluation's bit errors per
    sequence fall below 0.1, with ``SOLVE`` and then the given overrides."""
    run_dir = Path(tempfile.mkdtemp()) / "solve"
    args = [sys.executable, "-m", "memrepro", "model=ntm", "task=copy", "scale=paper", *SOLVE, *spec["overrides"],
            "trainer.early_stop={metric:eval_bit_errors,value:0.1}", "trainer.progress=false", "plots=false", "threads=1", f"run_dir={run_dir}"]
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=SOLVE_LIMIT_S, env={**os.environ, "PYTHONPATH": str(REPO)})
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    summary = json.loads((run_dir / "summary.json").read_text())
    solved = summary.get("solved_at")
    return {"solved": solved is not None, "sequences": (solved or summary)["sequences"], "seconds": (solved or {}).get("seconds", summary["train_seconds"]),
            "wall_s": time.perf_counter() - start, "final_bit_errors": summary["final"]["eval_bit_errors"]}


WORKERS = {"ours": ours, "reference": reference, "paired": paired, "parallel": parallel, "solve": solve}


def worker(spec: dict) -> None:
    import torch

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    print(json.dumps(WORKERS[spec["kind"]](spec)))


def measure(spec: dict, script: str = __file__) -> dict:
    """``script --worker spec`` in a fresh process: its last line of output, as JSON."""
    proc = subprocess.run([sys.executable, script, "--worker", json.dumps(spec)], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- the run: what to measure, the table, the stored figures ---------------------------------------
def available(model: str) -> bool:
    return (REPO / "conf" / "model" / f"{model}.yaml").exists()


def load_previous() -> dict:
    match = BLOCK.search(DOC.read_text()) if DOC.exists() else None
    return json.loads(match.group(2)) if match else {}


def save(figures: dict, machine: dict) -> None:
    text = DOC.read_text()
    rounded = {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in figures.items()}
    # one line per model, so that the block stays a screenful in the page
    per_model = itertools.groupby(sorted(rounded), key=lambda k: k.split("/")[0])
    lines = ["  " + ", ".join(f"{json.dumps(k)}: {json.dumps(rounded[k])}" for k in keys) for _, keys in per_model]
    block = '{\n "figures": {\n' + ",\n".join(lines) + '\n },\n "machine": ' + json.dumps(machine, sort_keys=True) + "\n}"
    if not BLOCK.search(text):
        raise SystemExit(f"{DOC} has no '<!-- bench:figures -->' block to rewrite")
    DOC.write_text(BLOCK.sub(lambda m: m.group(1) + block + m.group(3), text))


def machine_info(threads: int) -> dict:
    import torch

    return {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "threads": threads, "load_1min": round(os.getloadavg()[0], 2),
            "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="ntm,dnc,lstm,smann", help="comma-separated; models without a config on this branch are skipped")
    p.add_argument("--batches", default="1,32")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seconds", type=float, default=2.0, help="length of one timed repeat")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is fastest for these small models)")
    p.add_argument("--ref-ntm", metavar="DIR", help="a checkout of loudinthecloud/pytorch-ntm, measured in the same invocation")
    p.add_argument("--ref-dnc", metavar="DIR", help="a checkout of ixaxaar/pytorch-dnc")
    p.add_argument("--paired", type=int, default=0, metavar="ROUNDS",
                   help="also time the native kernels and the references in alternation in one process, ROUNDS rounds (the steadiest ratio)")
    p.add_argument("--compile", action="store_true", help="also measure NTM and DNC through TorchInductor (about a minute of compiling each)")
    p.add_argument("--compile-steps", default="1", help="comma-separated compile_steps to measure with --compile (time steps per compiled graph)")
    p.add_argument("--parallel", action="store_true", help=f"{PARALLEL_SEEDS} seeds in lockstep vs one after another")
    p.add_argument("--parallel-model", default="ntm")
    p.add_argument("--parallel-steps", type=int, default=30)
    p.add_argument("--solve", action="store_true", help="NTM copy time-to-solve (minutes)")
    p.add_argument("--solve-overrides", default="", help="space-separated overrides for the solve runs, e.g. compile=true")
    p.add_argument("--solve-seeds", default="0,1,2", help="one solve run per seed")
    p.add_argument("--save", action="store_true", help="store these figures in docs/benchmarks.md (the 'previous' of the next run)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(json.loads(args.worker))

    previous = load_previous().get("figures", {})
    figures, notes = {}, []
    base = {"repeats": args.repeats, "seconds": args.seconds, "threads": args.threads}
    refs = {"ntm": args.ref_ntm, "dnc": args.ref_dnc}
    print(f"# bench: load average {os.getloadavg()[0]:.2f} at start, {os.cpu_count()} CPUs, {args.threads} thread(s)", flush=True)
    for model in args.models.split(","):
        if not available(model):
            notes.append(f"{model}: skipped (no conf/model/{model}.yaml on this branch)")
        for batch in map(int, args.batches.split(",")):
            ours_ = {}
            if available(model):
                ours_[model] = measure({**base, "kind": "ours", "model": model, "batch": batch})
                report_line(figures, previous, f"{model}/b{batch}", ours_[model])
                if model in NATIVE:  # compile=true's path for this model: its native sequence kernel
                    ours_[f"{model}+native"] = measure({**base, "kind": "ours", "model": model, "batch": batch, "compile": True, "native": True})
                    report_line(figures, previous, f"{model}+native/b{batch}", ours_[f"{model}+native"], keys=("cpu_seq_s", "seq_s", "peak_mb", "first_update_s"))
                for steps in map(int, args.compile_steps.split(",")) if args.compile and model in STEP_LOOP else ():
                    name = f"{model}+compile" + (f"{steps}" if steps > 1 else "")
                    ours_[name] = measure({**base, "kind": "ours", "model": model, "batch": batch, "compile": True, "compile_steps": steps})
                    report_line(figures, previous, f"{name}/b{batch}", ours_[name], keys=("cpu_seq_s", "seq_s", "peak_mb", "first_update_s"))
            if refs.get(model):
                ref = measure({**base, "kind": "reference", "model": model, "batch": batch, "root": str(Path(refs[model]).resolve())})
                report_line(figures, previous, f"ref-{model}/b{batch}", ref)
                for name, r in ours_.items():
                    if "error" not in r and "error" not in ref:
                        figures[f"{name}/b{batch}/x_ref"] = r["cpu_seq_s"] / ref["cpu_seq_s"]
                        print(f"  {name} batch {batch}: {r['cpu_seq_s'] / ref['cpu_seq_s']:.1f}x the reference (CPU time; wall clock {r['seq_s'] / ref['seq_s']:.1f}x)", flush=True)
                if args.paired and model in NATIVE:
                    r = measure({**base, "kind": "paired", "model": model, "batch": batch, "rounds": args.paired,
                                 "root": str(Path(refs[model]).resolve())})
                    report_line(figures, previous, f"{model}+native/b{batch}/paired", r, keys=("x_ref", "x_ref_min", "x_ref_max", "cpu_seq_s", "ref_cpu_seq_s"))
    if args.parallel:
        model = args.parallel_model if available(args.parallel_model) else "lstm"
        for batch in map(int, args.batches.split(",")):
            r = measure({**base, "kind": "parallel", "model": model, "batch": batch, "steps": args.parallel_steps})
            report_line(figures, previous, f"parallel/{model}/b{batch}", r, keys=("cpu_speedup", "speedup", "max_diff", "sequential_s", "parallel_s"))
    if args.solve:
        if available("ntm"):
            for seed in map(int, args.solve_seeds.split(",")):  # NTM training is erratic: one seed says little
                r = measure({**base, "kind": "solve", "overrides": [*args.solve_overrides.split(), f"seed={seed}"]})
                report_line(figures, previous, f"solve/ntm/seed{seed}", r, keys=("solved", "seconds", "sequences", "final_bit_errors"))
        else:
            notes.append("solve: skipped (no NTM on this branch)")
    for note in notes:
        print(f"  note: {note}")
    print(f"# load average {os.getloadavg()[0]:.2f} at the end")
    if args.save:
        save({**previous, **figures}, machine_info(args.threads))
        print(f"saved to {DOC.relative_to(REPO)}")


def report_line(figures: dict, previous: dict, name: str, result: dict, keys=("cpu_seq_s", "seq_s", "peak_mb")) -> None:
    """Print one measurement beside the stored previous figures, and keep it."""
    if "error" in result:
        print(f"{name:24s} failed: {result['error']}", flush=True)
        return
    cells = []
    for key in keys:
        value, before = result[key], previous.get(f"{name}/{key}")
        figures[f"{name}/{key}"] = value
        was = f" (was {before:.4g}, {value / before:.2f}x)" if before and not isinstance(value, bool) else ""
        cells.append(f"{key} {value}" if isinstance(value, bool) else f"{key} {value:.4g}{was}")
    extra = f"  params {result['parameters']:,}" if "parameters" in result else ""
    extra += f"  spread {result['spread']:.0%}" if "spread" in result else ""
    extra += f"  strategy {result['strategy']}" if "strategy" in result else ""
    print(f"{name:24s} " + "  ".join(cells) + extra, flush=True)


if __name__ == "__main__":
    main()
