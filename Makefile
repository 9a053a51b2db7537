# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Both create/refresh .venv/ in the repo root first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast test-ray test-edge test-litert lint image-test wheel-test clean

install: $(STAMP)

# torch is pinned to the CPU wheel found locally; an unpinned torch would pull GBs of CUDA packages.
$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[export,plot,serve,triton,fp16,openvino,test,train]"
	touch $(STAMP)

demo: install
	$(BIN)/dirac-deploy demo

test: install
	$(BIN)/python -m pytest -q --durations=15

# The inner loop: everything but the `slow` tests (ImageNet-size models).
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not image and not wheel" --durations=10

# Scale-out on Ray Serve: adds the [ray] extra (about 0.5 GB) to .venv and runs the `ray` tests, which
# `make test` skips where Ray is not installed; DIRAC_REQUIRE_RAY=1 makes a missing Ray an error, not a skip.
RAY_STAMP := $(VENV)/.ray-installed

$(RAY_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[ray]"
	touch $(RAY_STAMP)

test-ray: $(RAY_STAMP)
	DIRAC_REQUIRE_RAY=1 $(BIN)/python -m pytest -q -rs -m ray --durations=10 tests/serve/test_serve_ray.py

# The edge: adds the [executorch] extra (ExecuTorch 1.5.1 pinned with torch 2.13.0, about 0.6 GB) to .venv and
# runs the `edge` tests, which `make test` skips where ExecuTorch is not installed; DIRAC_REQUIRE_EDGE=1 makes a
# missing ExecuTorch an error, not a skip.
EDGE_STAMP := $(VENV)/.edge-installed

$(EDGE_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[executorch]"
	touch $(EDGE_STAMP)

test-edge: $(EDGE_STAMP)
	DIRAC_REQUIRE_EDGE=1 $(BIN)/python -m pytest -q -rs -m edge --durations=10 tests/test_export_program.py

# The edge on Android's runtime: adds the [litert] extra (litert-torch 0.10.0, LiteRT's converter with jax, and
# ai-edge-litert 2.3.0 to run a .tflite; about 1.3 GB) to .venv and runs the `litert` tests, skipped by `make test`
# where it is not installed. Its converter pins xdsl 0.28, which caps typing-extensions below 4.13: pip moves
# pydantic back to 2.11 (FastAPI and Ray accept it), so CI runs this target after the others.
LITERT_STAMP := $(VENV)/.litert-installed

$(LITERT_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[litert]"
	touch $(LITERT_STAMP)

test-litert: $(LITERT_STAMP)
	DIRAC_REQUIRE_LITERT=1 $(BIN)/python -m pytest -q -rs -m litert --durations=10 tests/test_export_program.py

# Build the slim and full serving images with podman (or docker) and run them for real (tests/test_image.py);
# skips with the reason where no engine can run containers. Image sizes go to demo-out/images.json.
image-test: install
	mkdir -p demo-out
	DIRAC_IMAGE_REPORT=demo-out/images.json $(BIN)/python -m pytest -q -rs -m image tests/test_image.py

# A user's install: the built wheel in a fresh venv, plain (the demo must run) and with extras (the README
# walk-through must pass), tests/test_wheel.py.
wheel-test: install
	$(BIN)/python -m pytest -q -rs -m wheel tests/test_wheel.py

# Layers run one way (import-linter contracts in pyproject.toml), ruff's rule set, and mypy on the whole package.
lint: install
	$(BIN)/lint-imports --no-cache
	$(BIN)/ruff check dirac_deploy tests benchmarks scripts converters
	$(BIN)/mypy dirac_deploy

clean:
	rm -rf $(VENV) demo-out build *.egg-info
