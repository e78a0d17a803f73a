"""SMANN's memory access rate during training, through the real trainer (issue 4's numbers).

    python scripts/learn_smann.py                          # SMANN on add (length 50), ξ = 1e-6, quick scale
    python scripts/learn_smann.py --xi 0 1e-6 1e-3 --model nc --eval-every 10

Prints, per evaluation, the validation MSE, the number of mask-on steps and the access rate that
`SMANN.diagnostics()` logs into metrics.csv (and the final one into summary.json), so one sees
the mask thin out from all ones (m′ = 0) as training and the L1 term (eq. 8) act.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from memrepro.config import compose  # noqa: E402
from memrepro.run import run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smann", choices=["smann", "nc"])
    parser.add_argument("--task", default="add")
    parser.add_argument("--length", type=int, default=50)
    parser.add_argument("--xi", nargs="*", type=float, default=[1e-6])
    parser.add_argument("--scale", default="quick")
    parser.add_argument("--eval-every", type=int, default=25, help="updates between evaluations (each logs the access rate)")
    parser.add_argument("--out", default="outputs/learn_smann")
    args = parser.parse_args()
    torch.set_num_threads(1)
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    for xi in args.xi:
        overrides = [f"model={args.model}", f"task={args.task}", f"task.length={args.length}", f"model.mask_length={args.length}",
                     f"model.t_max={args.length}", f"model.xi={xi}", f"scale={args.scale}", f"trainer.eval_every={args.eval_every}",
                     "trainer.progress=false", "plots=false", "threads=1"]
        run_dir = Path(args.out) / stamp / f"{args.model}-xi{xi:g}"
        summary = run(compose(overrides), run_dir)
        print(f"\n{args.model} on {args.task} (length {args.length}), ξ = {xi:g}: {' '.join(overrides[:-3])}")
        print("| step | val_loss | mask_on | access_rate |\n|---|---|---|---|")
        print(f"| 0 | – | {args.length} | 1.000 |")  # m′ = 0: every step on
        with open(run_dir / "metrics.csv") as f:
            for row in csv.DictReader(f):
                print(f"| {row['step']} | {float(row['val_loss']):.4g} | {float(row['mask_on']):.0f} | {float(row['access_rate']):.3f} |")
        final = json.loads((run_dir / "summary.json").read_text())["final"]
        print(f"summary.json: test_loss {final['test_loss']:.4g}, access_rate {final['access_rate']:.3f}, "
              f"{summary['train_seconds']:.0f} s of training")


if __name__ == "__main__":
    main()
