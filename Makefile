# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Both create/refresh .venv/ in the repo root first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast lint clean

install: $(STAMP)

# torch is pinned to the CPU wheel found locally; an unpinned torch would pull GBs of CUDA packages.
$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[export,plot,serve,triton,fp16,test,train]"
	touch $(STAMP)

demo: install
	$(BIN)/dirac-deploy demo

test: install
	$(BIN)/python -m pytest -q --durations=15

# The inner loop: everything but the `slow` tests (ImageNet-size models).
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow" --durations=10

# Layers run one way (import-linter contracts in pyproject.toml) and a small ruff rule set.
lint: install
	$(BIN)/lint-imports --no-cache
	$(BIN)/ruff check dirac_deploy tests benchmarks scripts converters

clean:
	rm -rf $(VENV) demo-out build *.egg-info
