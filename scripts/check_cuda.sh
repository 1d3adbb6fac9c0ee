#!/usr/bin/env bash
# Compiles the device code (csrc/core/cuda/*.cu) with this machine's nvcc, compile only, so syntax
# and template errors in the CUDA build show without a GPU (the same sources' OpenMP build runs in
# tests/device). Skipped, with a message, where nvcc is missing.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
NVCC=${NVCC:-$(command -v nvcc || true)}
if [ -z "$NVCC" ]; then
  echo "[check_cuda] nvcc not found: CUDA kernels not compiled"
  exit 0
fi
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
# sm_90: the H100/H200 the project's GPU runs use. One nvcc per source, as many at once as cores.
export NVCC OUT
ls "$ROOT"/csrc/core/cuda/*.cu | xargs -P "$(nproc)" -I{} sh -c \
  '"$NVCC" -std=c++17 -O3 -arch=sm_90 --Werror all-warnings -Xcompiler -Wall,-Wextra -c "$1" -o "$OUT/$(basename "$1" .cu).o"' _ {}
echo "[check_cuda] compiled $(ls "$ROOT"/csrc/core/cuda/*.cu | wc -l) CUDA sources with $("$NVCC" --version | tail -n1)"
