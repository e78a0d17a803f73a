# memrepro — `make help` lists the targets.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SCALE  ?= quick
JOBS   ?= 1
TABLES := $(sort $(subst _,-,$(basename $(notdir $(wildcard memrepro/papers/*.yaml)))))
LAUNCHER = $(if $(filter-out 1,$(JOBS)),hydra/launcher=joblib hydra.launcher.n_jobs=$(JOBS))
SEEDS_PER_JOB ?= 1
ARGS   ?=
PARALLEL = $(if $(filter-out 1,$(SEEDS_PER_JOB)),trainer.parallel_seeds=$(SEEDS_PER_JOB))
# The main job of `make run`: the embedded default (NMN on extended recall; generated data, no
# download), under a minute on 2 CPU cores. Compare with `make run RUN_ARGS=model=rnn`.
RUN_ARGS ?= model=nmn task=extended_recall

.DEFAULT_GOAL := help
.PHONY: help install run test test-full bench tables report study-ntm-copy clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_%-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch is pinned to the CPU wheel first, so that nothing later pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev,sweep,slurm]'
	touch $@

install: $(VENV)/.installed ## Create .venv and install memrepro with its dev, sweep and slurm extras

run: install ## Set up and run the main job (NMN on extended recall, ~1 min on 2 cores); prints where its results are
	$(BIN)/memrepro $(RUN_ARGS)

test: install ## Set up and run the test suite (< 10 min on 2 cores)
	$(BIN)/python -m pytest -m "not slow"

test-full: install ## All tests, the slow learning tests included
	$(BIN)/python -m pytest

bench: install ## Throughput, parallel seeds, time-to-solve (BENCH_ARGS="--ref-ntm DIR --parallel"), then ms per update of every step-loop model beside fused nn.LSTM (MODELS_ARGS="--only smann-3"); docs/benchmarks.md
	$(BIN)/python scripts/bench.py $(BENCH_ARGS)
	$(BIN)/python scripts/bench_models.py $(MODELS_ARGS)

study-ntm-copy: install ## What makes the NTM's copy generalise: 6 choices x 3 seeds into outputs/study/ntm_copy (JOBS=2; re-running skips finished runs); docs/models/ntm.md
	BIN=$(BIN) bash scripts/study_ntm_copy.sh $(LAUNCHER)

table-%: install ## Reproduce one paper table into outputs/tables/<id>/<scale> and the results store results/<id>/<scale>: make table-nmn-fig10 SCALE=quick JOBS=2 SEEDS_PER_JOB=3 ARGS='<overrides>' (re-running skips finished jobs)
	@# the report is written even when a job failed; the target then fails with the sweep's status
	$(BIN)/memrepro -m experiment=$(subst -,_,$*) scale=$(SCALE) hydra.sweep.dir=outputs/tables/$*/$(SCALE)/runs resume=true trainer.progress=false $(LAUNCHER) $(PARALLEL) $(ARGS); \
	status=$$?; $(BIN)/memrepro-report outputs/tables/$*/$(SCALE)/runs --out outputs/tables/$*/$(SCALE) --store results/$*/$(SCALE) && exit $$status

tables: install ## Every paper table at SCALE, then `make report`
	@for t in $(TABLES); do $(MAKE) --no-print-directory table-$$t || echo "table-$$t did not finish"; done
	$(MAKE) --no-print-directory report

report: install ## Regenerate every stored table under results/ and docs/REPRODUCTION.md from the results store alone
	$(BIN)/memrepro-report --index results --doc docs/REPRODUCTION.md

clean: ## Remove the virtual environment and caches (outputs/ is kept)
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info
