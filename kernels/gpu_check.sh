#!/usr/bin/env bash
# `make gpu-check`: on a machine with a CUDA GPU, make jax see it (installing the `cuda` extra
# into the venv once if it does not), then run the parts of `python -m kernels.gpu_check`
# (numerics of every attention impl, kernel benchmark, AViT step per impl, mixer scaling),
# each under its own time limit, results in $OUT_DIR (default runs/gpu_check): summary.json,
# RESULTS.md and one log per part.
#
#   make gpu-check                 on the GPU machine
#   make gpu-check-dry             the same parts at CPU sizes (CI runs this)
#
# Env: PY (default .venv/bin/python), OUT_DIR, INSTALL_CUDA=0 to never pip install.
set -uo pipefail
cd "$(dirname "$0")/.."

PY="${PY:-.venv/bin/python}"
OUT_DIR="${OUT_DIR:-runs/gpu_check}"

if [ "${1:-}" = "--dry-run" ]; then
  exec "$PY" -m kernels.gpu_check --dry-run --out "$OUT_DIR" "${@:2}"
fi

probe() { JAX_PLATFORMS=cuda "$PY" -c 'import jax; assert jax.default_backend() == "gpu"; print(jax.devices()[0].device_kind)' 2>/dev/null; }

if ! kind="$(probe)"; then
  if [ "${INSTALL_CUDA:-1}" = 1 ] && command -v nvidia-smi >/dev/null 2>&1; then
    echo "== jax sees no GPU: installing the cuda extra into $(dirname "$(dirname "$PY")")"
    "$PY" -m pip install -q -e ".[dev,cuda]"
  fi
  if ! kind="$(probe)"; then
    echo "gpu-check: jax sees no CUDA GPU on this machine (nvidia-smi: $(command -v nvidia-smi || echo absent)); nothing run (make gpu-check-dry runs the parts on CPU)" >&2
    exit 1
  fi
fi
echo "== gpu-check on $kind"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
exec "$PY" -m kernels.gpu_check --out "$OUT_DIR" "$@"
