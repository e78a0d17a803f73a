#!/usr/bin/env bash
# What makes the NTM's copy generalise (docs/models/ntm.md, "What makes copy generalise"):
# NTM copy trained on lengths 1-20 for 20,000 updates, bit errors per sequence at lengths
# 20-120, 3 seeds per choice, one choice changed from the defaults at a time. Every run goes
# into one sweep folder, whose table.md and length_generalization.png compare the choices.
#   bash scripts/study_ntm_copy.sh [extra hydra overrides, e.g. hydra/launcher=joblib hydra.launcher.n_jobs=2]
# Re-running skips finished runs (resume=true); ≈ 6 min per run on one core (the native kernel).
set -euo pipefail
BIN=${BIN:-.venv/bin}
OUT=${OUT:-outputs/study/ntm_copy}
common=(model=ntm task=copy compile=true seed=0,1,2 trainer.steps=20000 trainer.eval_every=2000
        'task.eval_lengths=[20,40,60,80,120]' task.eval_size=100 trainer.progress=false resume=true
        "hydra.sweep.dir=$OUT")
variants=(
  "model.memory_init=random,constant,learned"                      # Collier & Beel's three schemes
  "model.shift_range=2"                                            # shifts -2..+2 instead of -1..+1
  "model.sharpening=false"                                         # γ = 1: no eq. (9)
  "model.controller_size=50"                                       # half the paper's 100 units
  "task.num_lessons=4 trainer.curriculum={metric:bit_errors,value:0.5}"  # max length 5, 10, 15, 20
  "model.memory_slots=64"                                          # fewer slots than lengths 80, 120
)
for variant in "${variants[@]}"; do
  # shellcheck disable=SC2086  # a variant is several overrides
  "$BIN/memrepro" -m "${common[@]}" $variant "$@"
done
"$BIN/memrepro-report" "$OUT"
