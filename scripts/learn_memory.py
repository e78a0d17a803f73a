"""Learning benchmarks of the memory models (issue: external-memory models, "Must show").

Each experiment trains through the project's own `run()` (same trainer, run folders, early
stop) and prints sequences and wall time to the target, the final metrics, and, for copy, the
generalisation to lengths 30/40/60 beside an LSTM of about the same size. The run folders get
the usual figures (curves, memory trace of one evaluation sequence, error against length), and
copy a length figure of both models.

    python scripts/learn_memory.py ntm-copy            # NTM on copy, then the LSTM baseline
    python scripts/learn_memory.py stack-anbn --seeds 0 1 2
    python scripts/learn_memory.py --list

Uses one thread (small models; the machine is shared). Budgets are in updates of batch 32.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from memrepro.config import compose
from memrepro.results.memory_plots import plot_length_generalization
from memrepro.run import run

COMMON = ["scale=paper", "plots=true", "trainer.progress=false", "threads=1", "trainer.batch_size=32"]
COPY_LENGTHS = [10, 20, 30, 40, 60]
# Copy: Adam 1e-3 with the trainer's clip (global norm 10), Collier & Beel's optimizer. NTM runs vary
# a lot from seed to seed (loudinthecloud: "other seeds ... should converge in less than 30K
# iterations" at batch 1); the early stop ends a run at its first evaluation below 0.1 bit errors.
COPY = ["task=copy", f"task.eval_lengths={COPY_LENGTHS}", "task.eval_size=100", "trainer.optimizer.lr=1e-3"]
STOP_BITS = "trainer.early_stop={metric:eval_bit_errors,value:0.1}"
STACK = ["model=stack_rnn", "task=formal_language", "model.rounding=true", "trainer.optimizer.lr=0.01",
         "task.seq_len=100", "trainer.curriculum={every:100}", "trainer.early_stop={metric:n2_60_unsolved,value:0.0}"]

EXPERIMENTS = {
    # NTM copy: the paper's sizes (LSTM 100, 128 x 20, one read and one write head).
    "ntm-copy": [*COPY, "model=ntm", STOP_BITS, "trainer.steps=8000", "trainer.eval_every=100"],
    # LSTM of about the NTM's 62.3K parameters (hidden 119: 62.8K), same task and budget.
    "lstm-copy": [*COPY, "model=lstm", "model.hidden_size=119", STOP_BITS, "trainer.steps=8000", "trainer.eval_every=100"],
    # DNC: DeepMind's defaults, with 32 slots so that a 20-vector sequence fits in memory.
    "dnc-copy": [*COPY, "model=dnc", "model.memory_slots=32", STOP_BITS, "trainer.steps=6000", "trainer.eval_every=100"],
    "dnc-repeat-copy": ["task=repeat_copy", "task.eval_size=100", "trainer.optimizer.lr=1e-3", "model=dnc", STOP_BITS, "trainer.steps=6000", "trainer.eval_every=200"],
    # ... with a curriculum: L and R up to 3, 5, 7, 9, 10 (task.num_lessons=5), the next lesson
    # once the training average is ≤ 0.5 bit errors per sequence; evaluated at the full ranges.
    "dnc-repeat-copy-curriculum": ["task=repeat_copy", "task.eval_size=100", "trainer.optimizer.lr=1e-3", "model=dnc", "task.num_lessons=5",
                                   "trainer.curriculum={metric:bit_errors,value:0.5}", STOP_BITS, "trainer.steps=8000", "trainer.eval_every=200"],
    # ... at deepmind/dnc's own repeat-copy defaults (train.py flags: 4 bits, length and repeats
    # 1-2, batch 16), Adam 1e-3 instead of their RMSProp 1e-4 for a shorter budget.
    "dnc-repeat-copy-small": ["task=repeat_copy", "task.bits=4", "task.length=[1,2]", "task.repeats=[1,2]", "task.eval_cases=[[4,2],[2,4]]",
                              "task.eval_size=100", "trainer.batch_size=16", "trainer.optimizer.lr=1e-3", "model=dnc", STOP_BITS,
                              "trainer.steps=20000", "trainer.eval_every=200"],
    "stack-anbn": [*STACK, "task.language=anbn", "trainer.steps=4000", "trainer.eval_every=100"],
    "stack-anbncn": [*STACK, "task.language=anbncn", "trainer.steps=4000", "trainer.eval_every=100"],
}
BASELINE = {"ntm-copy": "lstm-copy"}


def train(name: str, seed: int, out: Path, extra: list[str]) -> dict:
    overrides = [*COMMON, *EXPERIMENTS[name], f"seed={seed}", *extra]
    cfg = compose(overrides)
    run_dir = out / f"{name}_seed{seed}"
    started = time.time()
    summary = run(cfg, run_dir, {"model": cfg.model._target_.rsplit(".", 1)[-1], "task": name})
    summary["wall_seconds"] = round(time.time() - started, 1)
    return summary


def report(name: str, summary: dict) -> dict:
    final = summary["final"]
    row = {
        "experiment": name,
        "seed": summary["seed"],
        "parameters": summary["parameters"],
        "solved_at": summary.get("solved_at"),
        "steps": summary["steps"],
        "sequences": summary["sequences"],
        "wall_seconds": summary["wall_seconds"],
        "final": {k: round(v, 4) for k, v in final.items() if isinstance(v, float) and not k.startswith("train_") and not k.endswith("_loss")},
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiments", nargs="*", help=", ".join(EXPERIMENTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/learn_memory"))
    parser.add_argument("--list", action="store_true", help="print the experiments and their overrides")
    parser.add_argument("--override", action="append", default=[], help="an extra Hydra override (repeatable)")
    args = parser.parse_args()
    if args.list or not args.experiments:
        for name, overrides in EXPERIMENTS.items():
            print(f"{name}: {' '.join(overrides)}")
        return
    torch.set_num_threads(1)
    extra = args.override
    for name in args.experiments:
        for seed in args.seeds:
            rows = {name: report(name, train(name, seed, args.out, extra))}
            if name in BASELINE:
                base = BASELINE[name]
                rows[base] = report(base, train(base, seed, args.out, extra))
            if "copy" in name and "repeat" not in name:
                errors = {r["experiment"]: [r["final"].get(f"len{n}_bit_errors") for n in COPY_LENGTHS] for r in rows.values()}
                plot_length_generalization(args.out / f"{name}_seed{seed}" / "length_generalization.png", COPY_LENGTHS, errors, (1, 20), title="copy: bit errors per sequence")


if __name__ == "__main__":
    main()
