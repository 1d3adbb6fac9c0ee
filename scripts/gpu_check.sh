#!/usr/bin/env bash
# One command for a machine with an NVIDIA GPU (such as the device tool's: torch with CUDA and nvcc
# there, nothing fetched): builds the torch extension with its CUDA kernels, checks them against its
# CPU kernels on the GPU (every family, 1-3 stages, four dtypes, NaN/Inf, empty, 2^24 entries), that
# selecting leaves the counts on the device (no synchronising call), and times them against one
# read pass and torch.topk (BENCHMARKS rows). Under 8 minutes on an H200.
# Usage: scripts/gpu_check.sh [OUT]  (default runs/gpu); PYTHON picks the interpreter.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/runs/gpu}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# The toolkit holding nvcc and the runtime's headers (the nvcc on the PATH may be a wrapper elsewhere).
for candidate in "${CUDA_HOME:-}" /usr/local/cuda "$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")"; do
  if [ -n "$candidate" ] && [ -f "$candidate/include/cuda_runtime.h" ]; then export CUDA_HOME=$candidate; break; fi
done
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-$(nproc)}
echo "[gpu_check] building the CUDA extension (nvcc $("$CUDA_HOME/bin/nvcc" --version | tail -n1))"
# From a copy, so no build folder is left in the checkout.
(cd "$ROOT" && git ls-files -co --exclude-standard | tar -cf - -T -) | tar -xf - -C "$WORK"
mkdir "$WORK/wheel"
(cd "$WORK" && "$PY" -m pip wheel -q --no-build-isolation --no-deps . -w wheel)
(cd "$WORK/wheel" && "$PY" -m zipfile -e horovod_distq-*.whl unpacked)
LIBRARY=$(ls "$WORK"/wheel/unpacked/horovod_distq/_torch_ops*.so)

GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())")
if [ "$GPUS" -ge 2 ] && "$PY" -c "import horovod.torch" 2>/dev/null; then
  echo "[gpu_check] $GPUS GPUs and Horovod: a 2-process NCCL run is not part of this script yet"
else
  echo "[gpu_check] $GPUS GPU(s), Horovod $("$PY" -c "import horovod; print(horovod.__version__)" 2>/dev/null || echo "not installed"): no 2-process NCCL run"
fi
PYTHONUNBUFFERED=1 "$PY" "$ROOT/scripts/gpu_check.py" --library "$LIBRARY" --out "$OUT" | tee "$OUT/gpu_check.txt"
