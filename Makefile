# laimco — every target installs what it needs into .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SCENARIO ?= scenarios/minilm-phone.toml

.PHONY: demo test test-fast bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch is pinned here, before anything can ask for it loosely (a CPU build, no CUDA)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[models,test,study,serve]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/laimco optimize $(SCENARIO)
	$(BIN)/laimco compare $(SCENARIO)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 -p no:cacheprovider

# the analytic core only (no torch models, servers or sweeps): the loop to run while editing
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 -p no:cacheprovider -m "not slow"

# every benchmark, one after the other (about 40 minutes); RESULTS.md is their output
bench: $(STAMP)
	{ echo '<!-- produced by: make bench (benchmarks/bench_*.py, one after the other) -->'; \
	  $(BIN)/python benchmarks/bench_optimizer.py; echo; \
	  $(BIN)/python benchmarks/bench_models.py; echo; \
	  $(BIN)/python benchmarks/bench_analyze.py; echo; \
	  $(BIN)/python benchmarks/bench_sweep.py; echo; \
	  $(BIN)/python benchmarks/bench_runtime.py; echo; \
	  $(BIN)/python benchmarks/bench_evaluate.py; echo; \
	  $(BIN)/python benchmarks/bench_alternating.py; echo; \
	  $(BIN)/python benchmarks/bench_sparse_kernels.py; } | tee benchmarks/RESULTS.md

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
