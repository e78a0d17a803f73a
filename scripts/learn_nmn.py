"""Learning check of the NMN paper's models through the real trainer (issue 4's numbers).

    python scripts/learn_nmn.py                 # every case, scale=paper for the data sets, ~15 min on 1 core
    python scripts/learn_nmn.py --only extended_recall --seeds 0 1 2
    python scripts/learn_nmn.py --only "γ=0.5"

Each case is one `memrepro` run (run folders under outputs/learn_nmn/); the table puts the
paper's figure beside ours. Cases:

* extended_recall (§IV.D, Fig. 10): NMN vs RNN, long-term and immediate test error, with the
  task's default (cued) and the delay-line reading (``task.cued=false``);
* sorted_classification (§IV.A, Fig. 7): NMN vs FFNN (NMN with memory off) vs RNN, test error;
* sinusoid (§I, Fig. 2): FFNN with the Gaussian memory vs the plain FFNN, relative error on the
  training sinusoid and on the sum of three.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from memrepro.config import compose  # noqa: E402
from memrepro.run import run  # noqa: E402

COMMON = ["trainer.progress=false", "plots=false", "threads=1"]

# (case, label, overrides, [(metric, paper value)])
CASES = [
    ("extended_recall", "NMN", ["model=nmn", "task=extended_recall", "scale=paper"],
     [("test_error_long", "≈0 (near perfect)"), ("test_error_immediate", "0")]),
    ("extended_recall", "RNN", ["model=rnn", "task=extended_recall", "scale=paper"],
     [("test_error_long", "0.66 (chance)"), ("test_error_immediate", "0")]),
    ("extended_recall", "NMN, write=nearest_neighbor, γ=0.5", ["model=nmn", "model.write=nearest_neighbor", "model.decay_train=0.5",
                                                            "task=extended_recall", "scale=paper"],
     [("test_error_long", "-")]),
    ("extended_recall", "NMN, γ=0.5", ["model=nmn", "model.decay_train=0.5", "task=extended_recall", "scale=paper"],
     [("test_error_long", "-")]),
    ("extended_recall", "NMN, delay line (cued=false)", ["model=nmn", "task=extended_recall", "task.cued=false", "scale=paper"],
     [("test_error_long", "-"), ("test_error_immediate", "-")]),
    ("extended_recall", "RNN, delay line (cued=false)", ["model=rnn", "task=extended_recall", "task.cued=false", "scale=paper"],
     [("test_error_long", "-"), ("test_error_immediate", "-")]),
    ("sorted_classification", "NMN", ["model=nmn", "task=sorted_classification", "scale=paper"], [("test_error", "0.007")]),
    ("sorted_classification", "NMN, write=nearest_neighbor, γ=0.5", ["model=nmn", "model.write=nearest_neighbor", "model.decay_train=0.5",
                                                                  "task=sorted_classification", "scale=paper"], [("test_error", "-")]),
    ("sorted_classification", "FFNN (NMN, memory=false)", ["model=nmn", "model.memory=false", "task=sorted_classification", "scale=paper"],
     [("test_error", "0.045")]),
    ("sorted_classification", "RNN", ["model=rnn", "task=sorted_classification", "scale=paper"], [("test_error", "0.018")]),
    ("sinusoid", "FFNN + Gaussian memory", ["model=ffnn_gaussian", "task=sinusoid", "scale=quick"],
     [("eval_relative_error", "≈0.10 (train)"), ("mix_relative_error", "≈0.15 (test)")]),
    ("sinusoid", "FFNN", ["model=ffnn", "task=sinusoid", "scale=quick"],
     [("eval_relative_error", "-"), ("mix_relative_error", "-"), ("mix_persistence_relative_error", "-")]),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="run the cases whose 'task: model' contains one of these strings")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0])
    parser.add_argument("--out", default="outputs/learn_nmn")
    args = parser.parse_args()
    torch.set_num_threads(1)
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    print(f"| task | model | metric | ours (mean over seeds {args.seeds}) | paper | seconds |")
    print("|---|---|---|---|---|---|")
    for number, (case, label, overrides, metrics) in enumerate(CASES):
        if args.only and not any(key in f"{case}: {label}" for key in args.only):
            continue
        finals, seconds = [], 0.0
        for seed in args.seeds:
            run_dir = Path(args.out) / stamp / f"{number}-{case}-seed{seed}"
            summary = run(compose([*overrides, *COMMON, f"seed={seed}"]), run_dir)
            finals.append(summary["final"])
            seconds += summary["train_seconds"]
        for metric, paper in metrics:
            values = [f[metric] for f in finals]
            spread = f" ± {statistics.stdev(values):.4f}" if len(values) > 1 else ""
            print(f"| {case} | {label} | {metric} | {statistics.mean(values):.4f}{spread} | {paper} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
