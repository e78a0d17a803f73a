#!/usr/bin/env python
"""Milliseconds per training update of every step-loop model at its paper table's size, beside
PyTorch's fused nn.LSTM of the same hidden size in the same process (`make bench`; docs/benchmarks.md).

    python scripts/bench_models.py                 every row, eager and compile=true
    python scripts/bench_models.py --only smann-3  the rows of one table
    python scripts/bench_models.py --save          also write the table into docs/benchmarks.md

An update is what the trainer runs (`Trainer._update`: sample a batch, forward, loss, backward,
clip, Adam step). Each row runs in a fresh subprocess: the model (eager, or with compile=true)
and the LSTM baseline are built side by side, warmed up, then timed in alternating rounds of
about ``--seconds`` each; a row reports the medians over ``--rounds`` rounds by the wall clock and
by CPU time (two independent clocks; on a loaded machine they part), and the median of the
rounds' model/LSTM ratios by CPU time, which a machine whose speed drifts by 2x within minutes
leaves intact. ``first_s`` is the first update: compiling (cached on disk by TorchInductor, so a
second process takes seconds) or building a native kernel.

The MNIST rows of SMANN Tables 1, 2 and 4 run the adding problem at length 784 instead: the same
model and sequence length, with an input of 2 instead of 1 (MNIST is not offline).
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import measure  # scripts/bench.py: a worker in a fresh subprocess

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "benchmarks.md"
BLOCK = re.compile(r"(<!-- bench:models -->\n)(.*?)(<!-- /bench:models -->)", re.S)

SMANN = ["trainer.batch_size=200", "trainer.optimizer.lr=1e-3"]


def adding(length: int) -> list[str]:
    return ["task=add", f"task.length={length}", *SMANN]


def lstm(hidden: int, layers: int) -> list[str]:
    return ["model=lstm", f"model.hidden_size={hidden}", f"model.num_layers={layers}"]


# (table, model, size, length, task, the model's overrides, the fused LSTM's): each model at the size
# and sequence length of the paper table that uses it; the 2x32 rows at 120 and 784 are the 1.5x target's.
STACK = ["experiment=slides_stack_rnn", "task.language=anbn"]  # lengths 2n+1 follow the curriculum
ROWS = [
    ("smann-3", "clstm", "2x32", 120, adding(120), ["model=clstm", "model.hidden_size=32", "model.num_layers=2", "model.t_max=120"], lstm(32, 2)),
    ("smann-3", "nc", "32-32", 120, adding(120), ["model=nc", "model.t_max=120"], lstm(32, 2)),
    ("smann-3", "janet", "2x32", 120, adding(120), ["model=janet", "model.t_max=120"], lstm(32, 2)),
    ("smann-3", "skip_lstm", "2x32", 120, adding(120), ["model=skip_lstm"], lstm(32, 2)),
    ("smann-3", "skip_gru", "2x32", 120, adding(120), ["model=skip_gru"], lstm(32, 2)),
    ("smann-2", "clstm", "2x32", 784, adding(784), ["model=clstm", "model.hidden_size=32", "model.num_layers=2", "model.t_max=784"], lstm(32, 2)),
    ("smann-2", "nc", "32-32", 784, adding(784), ["model=nc"], lstm(32, 2)),
    ("smann-2", "nc", "32-64", 784, adding(784), ["model=nc", "model.hidden_sizes=[32,64]"], lstm(64, 2)),
    ("smann-2", "janet", "2x32", 784, adding(784), ["model=janet"], lstm(32, 2)),
    ("smann-2", "skip_lstm", "2x32", 784, adding(784), ["model=skip_lstm"], lstm(32, 2)),
    ("smann-2", "skip_gru", "2x32", 784, adding(784), ["model=skip_gru"], lstm(32, 2)),
    ("smann-1", "clstm", "1x128", 784, adding(784), ["model=clstm", "model.hidden_size=128", "model.num_layers=1", "model.t_max=784"], lstm(128, 1)),
    ("smann-4", "smann", "32-32, 128x20", 784, adding(784), ["model=smann", "model.memory_slots=128", "model.memory_width=20"], lstm(32, 2)),
    ("smann-4", "ntm", "2x32, 128x20", 784, adding(784),
     ["model=ntm", "model.controller_size=32", "model.controller_layers=2", "model.memory_slots=128", "model.memory_width=20"], lstm(32, 2)),
    ("slides-stack-rnn", "stack_rnn", "40, 10 stacks", None, STACK, ["+experiment/slides/model=stack_rnn_40_10"], ["+experiment/slides/model=lstm_40"]),
]
MODES = ("eager", "compile")


# --- one row, in its own subprocess ------------------------------------------------------------------
def build_update(overrides: list[str], compile_: bool, steps: int | None = None):
    from memrepro.config import compose
    from memrepro.run import build
    from memrepro.train.compiled import compile_training_step

    task, model, trainer = build(compose([*overrides, "scale=smoke", "trainer.progress=false", "trainer.clip_norm=1"]), seed=0)
    path = compile_training_step(model, steps) if compile_ else "eager"
    trainer.start(model, task, Path(tempfile.mkdtemp()))
    return path, lambda: trainer._update(trainer._next_batch())


def clocked(update, n: int) -> tuple[float, float]:
    """ms per update over n updates, by the wall clock and by CPU time."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        update()
    return (time.perf_counter() - wall) * 1e3 / n, (time.process_time() - cpu) * 1e3 / n


def worker(spec: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    path, update = build_update(spec["overrides"], spec["mode"] == "compile", spec.get("compile_steps"))
    _, baseline = build_update(spec["baseline"], False)
    start = time.perf_counter()
    update()  # compiles or builds, if anything does
    first_s = time.perf_counter() - start
    update(), baseline(), baseline()
    n = max(1, round(spec["seconds"] * 1e3 / clocked(update, 1)[0]))
    model_wall, model_cpu, lstm_wall, lstm_cpu, ratios = [], [], [], [], []
    for _ in range(spec["rounds"]):
        wall, cpu = clocked(update, n)
        base_wall, base_cpu = clocked(baseline, n)
        model_wall.append(wall), model_cpu.append(cpu), lstm_wall.append(base_wall), lstm_cpu.append(base_cpu)
        ratios.append(cpu / base_cpu)
    med = statistics.median
    return {"path": path, "first_s": round(first_s, 1), "ms": round(med(model_wall), 1), "cpu_ms": round(med(model_cpu), 1),
            "lstm_ms": round(med(lstm_wall), 1), "lstm_cpu_ms": round(med(lstm_cpu), 1), "x_lstm": round(med(ratios), 2),
            "x_range": [round(min(ratios), 2), round(max(ratios), 2)], "updates": n * spec["rounds"]}


# --- the table -----------------------------------------------------------------------------------------
def markdown(results: list[dict]) -> str:
    lines = ["| table | model | size | T | eager ms (CPU ms) | × LSTM | compile=true ms (CPU ms) | × LSTM | first update s | "
             "fused LSTM ms | ms per step, eager / compiled |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        e, c = r.get("eager", {}), r.get("compile", {})

        def cell(m, key):
            return m.get("error", "")[:60] if "error" in m else (f"{m[key]} ({m['cpu_' + key]})" if key == "ms" else str(m.get(key, "")))

        per_step = " / ".join(f"{m['cpu_ms'] / r['length']:.3f}" for m in (e, c) if "cpu_ms" in m and r["length"])
        lines.append(f"| {r['table']} | {r['model']} | {r['size']} | {r['length'] or 'curriculum'} | {cell(e, 'ms')} | {cell(e, 'x_lstm')} | {cell(c, 'ms')} | "
                     f"{cell(c, 'x_lstm')} | {c.get('first_s', '')} | {(e or c).get('lstm_cpu_ms', '')} | {per_step} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", help="comma-separated tables (smann-1, smann-2, smann-3, smann-4) or models")
    p.add_argument("--modes", default=",".join(MODES), help="eager, compile or both")
    p.add_argument("--compile-steps", type=int, help="time steps per compiled graph (default: each model's own)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=1.0, help="length of one timed round of each of the two models")
    p.add_argument("--save", action="store_true", help="write the table into docs/benchmarks.md")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    only = set(args.only.split(",")) if args.only else None
    rows = [r for r in ROWS if only is None or r[0] in only or r[1] in only]
    results = []
    for table, model, size, length, task, overrides, baseline in rows:
        result = {"table": table, "model": model, "size": size, "length": length}
        for mode in args.modes.split(","):
            spec = {"overrides": [*task, *overrides], "baseline": [*task, *baseline], "mode": mode,
                    "compile_steps": args.compile_steps, "rounds": args.rounds, "seconds": args.seconds}
            result[mode] = measure(spec, __file__)
            m = result[mode]
            print(f"{table:8} {model:9} {size:14} T={length or 'var':<4} {mode:7} " +
                  (m["error"] if "error" in m else f"{m['cpu_ms']:8.1f} ms  x{m['x_lstm']:.2f} LSTM ({m['lstm_cpu_ms']} ms)  first {m['first_s']} s"),
                  flush=True)
        results.append(result)
    table = markdown(results)
    print("\n" + table)
    if args.save:
        stamp = f"`python scripts/bench_models.py --save`, {time.strftime('%Y-%m-%d')}, torch {__import__('torch').__version__}, one thread:\n\n"
        text = DOC.read_text()
        if not BLOCK.search(text):
            sys.exit("docs/benchmarks.md has no <!-- bench:models --> … <!-- /bench:models --> block to write into")
        DOC.write_text(BLOCK.sub(lambda m: m.group(1) + stamp + table + m.group(3), text))
        print(f"written into {DOC.relative_to(REPO)}")


if __name__ == "__main__":
    main()
