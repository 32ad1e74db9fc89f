#!/usr/bin/env bash
# Run the raw Triton flash-attention kernels under the Triton interpreter on CPU.
#
# Why a separate venv: `jax_triton.triton_call` has no CPU lowering, but raw `@triton.jit`
# kernels run under TRITON_INTERPRET=1 on torch CPU tensors. A CPU-only torch wheel exists for
# Python 3.11 only (on 3.12 pip pulls the CUDA build and several GB of CUDA packages), so this
# script builds `.venv-triton` with Python 3.11, torch 2.13.0+cpu and triton 3.6.0 (the triton
# of the GPU machine's stack: jax 0.11.2, jax-triton 0.3.1), once, and reuses it afterwards.
# numpy < 2.3: triton 3.6's interpreter converts 1-element arrays to Python ints, which numpy
# 2.4 refuses ("only 0-dimensional arrays can be converted to Python scalars"). The tests never
# import jax; jax-triton itself cannot be imported without jax's CUDA plugin, so its part
# (scalars as np.float32, the shims) is tested in the main venv with stand-ins.
#
# The same venv is the torch interpreter of `make test-torch` (einops is installed for MPP).
#
# Usage: bash kernels/flash_attention/triton_interpret_env.sh [extra pytest args]
# Env:   PYTHON311=/path/to/python3.11 to choose the interpreter; VENV_TRITON to move the venv;
#        BUILD_ONLY=1 to build (or check) the venv and run no tests.
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV="${VENV_TRITON:-.venv-triton}"

find_python311() {
  local candidates=("${PYTHON311:-}" python3.11)
  local root
  root="$(pyenv root 2>/dev/null || true)"
  [ -n "$root" ] && candidates+=("$root"/versions/3.11*/bin/python3.11)
  candidates+=("$HOME"/.pyenv/versions/3.11*/bin/python3.11 /root/.pyenv/versions/3.11*/bin/python3.11
               /usr/local/bin/python3.11 /usr/bin/python3.11 python3)
  for p in "${candidates[@]}"; do
    [ -z "$p" ] && continue
    if "$p" -c 'import sys; assert sys.version_info[:2] == (3, 11)' >/dev/null 2>&1; then
      echo "$p"; return 0
    fi
  done
  return 1
}

if [ ! -f "$VENV/.installed" ]; then
  PY311="$(find_python311)" || {
    echo "error: no Python 3.11 found for $VENV (set PYTHON311=/path/to/python3.11)" >&2; exit 1; }
  echo "== building $VENV with $PY311 (CPU torch + triton, once)"
  rm -rf "$VENV"
  "$PY311" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  # Pinning the local version "+cpu" makes pip take the CPU wheel (found in the machine's wheel
  # directory) or fail loudly, instead of silently resolving the CUDA build of torch.
  "$VENV/bin/python" -m pip install -q "torch==2.13.0+cpu" "triton==3.6.0" "numpy<2.3" pytest einops
  if "$VENV/bin/python" -m pip list 2>/dev/null | grep -qi '^nvidia-'; then
    echo "error: CUDA packages were pulled into $VENV; expected the CPU build of torch" >&2; exit 1
  fi
  touch "$VENV/.installed"
fi

if [ "${BUILD_ONLY:-0}" = 1 ]; then
  "$VENV/bin/python" -c 'import einops' 2>/dev/null || "$VENV/bin/python" -m pip install -q einops
  echo "$VENV ready"; exit 0
fi

# --noconftest: tests/conftest.py configures jax, which this venv does not have (the modules
# guard themselves instead); -p no:cacheprovider keeps this venv out of the shared .pytest_cache.
# pyproject's pytest settings (pythonpath ".", registered markers) still apply.
# 1) numerics under the interpreter; 2) ahead-of-time sm_90 compilation (interpreter off).
status=0
TRITON_INTERPRET=1 "$VENV/bin/python" -m pytest tests/kernels/test_triton_interpret.py \
  --noconftest -p no:cacheprovider -q "$@" || status=$?
env -u TRITON_INTERPRET TRITON_DEFAULT_FP_FUSION=1 "$VENV/bin/python" -m pytest \
  tests/kernels/test_triton_compile.py --noconftest -p no:cacheprovider -q "$@" || status=$?
exit "$status"
