# jaxfm — the targets a newcomer can guess. Every target builds .venv first if it is missing.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# A Python 3.12 interpreter, found without help on a fresh machine: $PYTHON if given, then
# python3.12 on PATH (pyenv shims that refuse to run are skipped), then pyenv's installed 3.12.
PYTHON ?= $(shell for p in python3.12 \
	$$(pyenv root 2>/dev/null)/versions/3.12*/bin/python3.12 \
	$$HOME/.pyenv/versions/3.12*/bin/python3.12 \
	/usr/local/bin/python3.12 /usr/bin/python3.12; do \
	  $$p -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1 && { echo $$p; break; }; \
	done)
VENV := .venv
PY := $(VENV)/bin/python
export JAX_PLATFORMS ?= cpu
export PYTHONUNBUFFERED := 1

.PHONY: help venv demo data test test-slow test-triton test-gpu test-torch test-jax011 test-lowering gpu-check \
	gpu-check-dry bench lint format clean

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@if [ -z "$(PYTHON)" ]; then \
	  echo "error: no Python 3.12 found (tried python3.12 on PATH and pyenv's versions); install one, e.g. 'pyenv install 3.12', or run 'make PYTHON=/path/to/python3.12'" >&2; exit 1; fi
	@echo "== building $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	@touch $@

venv: $(VENV)/.installed  ## create .venv with jaxfm installed editable (+ dev tools)

demo: venv  ## run the main job end to end on built-in data; prints where results and plots are
	$(PY) -m experiments.surrogate_transfer demo --workdir runs/demo

data: venv  ## generate the small multi-system PDE corpus (The Well layout) into runs/data
	$(PY) -m jaxfm.data.generate corpus --n-traj 16 --resolution 32 --out runs/data

test: venv  ## the CI test suite (8 simulated CPU devices, < 15 min on 2 cores)
	$(PY) -m pytest -n 2 -m "not slow and not gpu and not triton_interpret" -q --durations=15

test-slow: venv  ## heavier tests (longer learning and multi-process runs)
	$(PY) -m pytest -n 2 -m "slow and not gpu and not triton_interpret" -q --durations=15

test-triton:  ## Triton kernels under TRITON_INTERPRET=1 in a Python 3.11 venv with CPU torch
	bash kernels/flash_attention/triton_interpret_env.sh

# GPU targets: jax must see a CUDA GPU (`pip install -e ".[cuda]"` into .venv on that machine).
# JAX_PLATFORMS=cuda overrides the CPU default above; the check runs first so that a machine
# without a GPU gets one clear line instead of a backend traceback.
GPU_PROBE := JAX_PLATFORMS=cuda $(PY) -c 'import jax; assert jax.default_backend() == "gpu"' \
	>/dev/null 2>&1

test-gpu: venv  ## every `gpu`-marked test + tests/kernels/test_triton_jax.py (needs a CUDA GPU)
	@if ! $(GPU_PROBE); then \
	  echo "test-gpu: skipped, jax sees no CUDA GPU here (on a GPU machine: pip install -e '.[cuda]')"; \
	  exit 0; fi; \
	set -e; \
	JAX_PLATFORMS=cuda $(PY) -m pytest tests/kernels/test_triton_jax.py -m "not gpu" -q $(PYTEST_ARGS); \
	JAX_PLATFORMS=cuda $(PY) -m pytest tests -m gpu -q $(PYTEST_ARGS)

# The oldest jax jaxfm supports (and the GPU machine's): its own venv, the same fast suite.
VENV_JAX011 := .venv-jax011

$(VENV_JAX011)/.installed: pyproject.toml
	@if [ -z "$(PYTHON)" ]; then \
	  echo "error: no Python 3.12 found (see 'make venv')" >&2; exit 1; fi
	@echo "== building $(VENV_JAX011) with $(PYTHON) and jax 0.11.2"
	$(PYTHON) -m venv $(VENV_JAX011)
	$(VENV_JAX011)/bin/python -m pip install -q --upgrade pip
	$(VENV_JAX011)/bin/python -m pip install -q -e ".[dev]" "jax==0.11.2" "jaxlib==0.11.2"
	@touch $@

test-jax011: $(VENV_JAX011)/.installed  ## the fast suite on jax 0.11.2, the oldest supported jax
	$(VENV_JAX011)/bin/python -c 'import jax; assert jax.__version__ == "0.11.2", jax.__version__'
	$(VENV_JAX011)/bin/python -m pytest -n 2 -m "not slow and not gpu and not triton_interpret" -q \
	  --durations=15 $(PYTEST_ARGS)

# The GPU machine's stack without its GPU: jax 0.11.2 with jax's CUDA plugin (2.5 GB, a few
# minutes to install, hence not in CI), jax-triton 0.3.1, triton 3.6. With the plugin, cuDNN
# attention and jax-triton can be lowered for CUDA here, so every fused path is checked.
VENV_LOWERING := .venv-lowering

$(VENV_LOWERING)/.installed: pyproject.toml
	@if [ -z "$(PYTHON)" ]; then \
	  echo "error: no Python 3.12 found (see 'make venv')" >&2; exit 1; fi
	@echo "== building $(VENV_LOWERING) with $(PYTHON): jax 0.11.2 + CUDA plugin, jax-triton 0.3.1, triton 3.6"
	$(PYTHON) -m venv $(VENV_LOWERING)
	$(VENV_LOWERING)/bin/python -m pip install -q --upgrade pip
	$(VENV_LOWERING)/bin/python -m pip install -q -e ".[dev]" "jax[cuda12]==0.11.2" \
	  "jaxlib==0.11.2" "jax-triton==0.3.1" "triton==3.6.0"
	@touch $@

test-lowering: $(VENV_LOWERING)/.installed  ## every GPU path lowered for CUDA on this CPU (cuDNN, triton_call too)
	$(VENV_LOWERING)/bin/python -m pytest -m "not gpu" -q tests/kernels/test_cuda_lowering.py \
	  tests/kernels/test_triton_jax.py $(PYTEST_ARGS)

test-torch: venv  ## `torch`-marked tests (torch checkpoint reader; MPP parity with JAXFM_MPP_SRC), CPU torch
	@if [ ! -f "$${JAXFM_MPP_SRC:-}/models/avit.py" ]; then \
	  echo "note: JAXFM_MPP_SRC is not a checkout of github.com/PolymathicAI/multiple_physics_pretraining; the MPP parity test will skip"; fi
	BUILD_ONLY=1 bash kernels/flash_attention/triton_interpret_env.sh
	JAXFM_TORCH_PYTHON=$${VENV_TRITON:-.venv-triton}/bin/python $(PY) -m pytest tests -m torch -q \
	  $(PYTEST_ARGS)

gpu-check: venv  ## on a GPU machine: numerics, kernel + AViT + mixer benchmarks (< 8 min), runs/gpu_check
	PY=$(PY) bash kernels/gpu_check.sh

gpu-check-dry: venv  ## the gpu-check parts at CPU sizes (what CI runs), runs/gpu_check_dry
	PY=$(PY) OUT_DIR=runs/gpu_check_dry bash kernels/gpu_check.sh --dry-run

bench: venv  ## microbenchmarks (small sizes on CPU); JSON lands in runs/bench
	$(PY) -m kernels.bench --smoke --out runs/bench
	$(PY) -m jaxfm.data.bench --resolution 32 --n-traj 4 --out runs/bench/data.json

lint: venv  ## ruff lint + format check
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: venv  ## ruff format + autofix
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

clean:  ## remove the venv, caches and run directories
	rm -rf $(VENV) .pytest_cache .ruff_cache runs .jax_cache
