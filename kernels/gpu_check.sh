#!/usr/bin/env bash
# The one prepared script to run on a machine with a CUDA GPU: `make gpu-check`.
#
#   1. checks that jax sees a GPU (installs the `cuda` extra into the venv once if it does not);
#   2. `make test-gpu`: every `gpu`-marked test + tests/kernels/test_triton_jax.py;
#   3. the kernel microbenchmark (`python -m kernels.bench`) at GPU sizes.
#
# Output, all under $OUT_DIR (default runs/gpu_check): test_gpu.log, bench/bench.jsonl,
# bench.md, bench.png, and summary.json (device, exit status of each step). Runs every step even
# when an earlier one fails; exits non-zero if any failed.
#
# Env: PY (default .venv/bin/python), OUT_DIR, BENCH_ARGS (default: a sweep that fits in a few
# minutes; BENCH_ARGS="" runs kernels.bench's full sweep), INSTALL_CUDA=0 to never pip install.
set -uo pipefail
cd "$(dirname "$0")/.."

PY="${PY:-.venv/bin/python}"
OUT_DIR="${OUT_DIR:-runs/gpu_check}"
BENCH_ARGS="${BENCH_ARGS---seq-lens 1024 4096 8192 --head-dims 64 128 --repeats 10}"
mkdir -p "$OUT_DIR"
export JAX_PLATFORMS=cuda

probe() { "$PY" -c 'import jax; assert jax.default_backend() == "gpu"; print(jax.devices()[0].device_kind)' 2>/dev/null; }

if ! kind="$(probe)"; then
  if [ "${INSTALL_CUDA:-1}" = 1 ] && command -v nvidia-smi >/dev/null 2>&1; then
    echo "== jax sees no GPU: installing the cuda extra into $(dirname "$(dirname "$PY")")"
    "$PY" -m pip install -q -e ".[dev,cuda]"
  fi
  if ! kind="$(probe)"; then
    echo "gpu-check: jax sees no CUDA GPU on this machine (nvidia-smi: $(command -v nvidia-smi || echo absent)); nothing run" >&2
    exit 1
  fi
fi
echo "== gpu-check on $kind"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true

make --no-print-directory test-gpu VENV="$(dirname "$(dirname "$PY")")" PYTEST_ARGS=-rA \
  2>&1 | tee "$OUT_DIR/test_gpu.log"
tests_rc=${PIPESTATUS[0]}

bench_rc=0
# shellcheck disable=SC2086  # BENCH_ARGS is a list of words
"$PY" -m kernels.bench --out "$OUT_DIR/bench" $BENCH_ARGS || bench_rc=$?

"$PY" - "$OUT_DIR" "$kind" "$tests_rc" "$bench_rc" <<'PY'
import json, os, sys
out, kind, tests_rc, bench_rc = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
summary = {"device_kind": kind, "test_gpu_rc": tests_rc, "bench_rc": bench_rc,
           "test_log": os.path.join(out, "test_gpu.log"),
           "bench_jsonl": os.path.join(out, "bench", "bench.jsonl")}
with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
print(json.dumps(summary))
PY
[ "$tests_rc" = 0 ] && [ "$bench_rc" = 0 ]
