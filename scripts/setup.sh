#!/usr/bin/env bash
# One-shot, idempotent set-up of a fresh Debian machine (as root) for horovod-distq:
#   Debian's Open MPI, a virtual environment in the checkout (.venv) with torch, TensorFlow (CPU)
#   and the test tools, Horovod 0.28.1 built from PyPI's sdist for both frameworks (docs/design.md,
#   section 6) and cached as a wheel, and this package with its two compiled libraries (a torch
#   extension and a TensorFlow op library), built against the frameworks already installed.
# A second run on a set-up machine only checks and returns in seconds.
#
# Usage: setup.sh [STEP...]  with STEP among system venv python horovod distq (default: these, in
# that order) and docker (buildah, podman and debootstrap where no Docker daemon answers, for
# `make test-docker`). The Docker images (docker/) run the steps in two layers, so that a change to this
# package's sources does not rebuild Horovod.
# Environment (defaults: what `make setup` installs): DISTQ_VENV, DISTQ_TORCH_VERSION,
# DISTQ_TORCH_INDEX_URL (an extra pip index for torch, e.g. PyTorch's CPU or CUDA wheels),
# DISTQ_TENSORFLOW_VERSION, DISTQ_TENSORFLOW_PACKAGE (tensorflow-cpu, or tensorflow for GPUs),
# DISTQ_HOROVOD_VERSION, DISTQ_FRAMEWORKS ("torch tensorflow", or one of them).
# GPU variant: HOROVOD_GPU_OPERATIONS=NCCL builds Horovod with NCCL, from the CUDA toolkit's nvcc
# (HOROVOD_CUDA_HOME, else the one on the PATH) and the NCCL of NVIDIA's wheel beside a CUDA build
# of torch (HOROVOD_NCCL_HOME to use another), for HOROVOD_BUILD_CUDA_CC_LIST (default 90: H100,
# H200); for example, torch only:
#   DISTQ_VENV=.venv-gpu DISTQ_TORCH_VERSION=2.14.1 DISTQ_FRAMEWORKS=torch HOROVOD_GPU_OPERATIONS=NCCL \
#     scripts/setup.sh venv python horovod
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${DISTQ_VENV:-$ROOT/.venv}
PY=$VENV/bin/python
TORCH_VERSION=${DISTQ_TORCH_VERSION:-2.13.0}
TORCH_INDEX_URL=${DISTQ_TORCH_INDEX_URL:-}
TENSORFLOW_VERSION=${DISTQ_TENSORFLOW_VERSION:-2.21.0}
TENSORFLOW_PACKAGE=${DISTQ_TENSORFLOW_PACKAGE:-tensorflow-cpu}
HOROVOD_VERSION=${DISTQ_HOROVOD_VERSION:-0.28.1}
CCCL_VERSION=13.0.85  # CUDA 13.0's, the nvcc on these machines
# Where no toolkit is installed, the GPU variant takes nvcc from NVIDIA's wheels: CUDA 13.0's, the
# CUDA of torch 2.14's wheel on PyPI.
NVCC_WHEEL_CUDA=13.0
NVCC_WHEEL_VERSION=13.0.88
FRAMEWORKS=${DISTQ_FRAMEWORKS:-torch tensorflow}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/horovod-distq
WHEELS=$CACHE/wheels

log() { printf '[setup] %s\n' "$*"; }
# The CUDA toolkit's folder: CUDA_HOME, /usr/local/cuda, the one holding the nvcc on the PATH
# (which may be a wrapper script elsewhere), or the venv's of NVIDIA's wheels (install_cuda_wheels);
# nothing where none has nvcc and the runtime's headers.
cuda_toolkit() {
  local candidate nvcc
  nvcc=$(command -v nvcc 2>/dev/null || true)
  for candidate in "${CUDA_HOME:-}" /usr/local/cuda ${nvcc:+"$(dirname "$(dirname "$(readlink -f "$nvcc")")")"} \
                   "$VENV/cuda"; do
    if [ -n "$candidate" ] && [ -x "$candidate/bin/nvcc" ] && [ -f "$candidate/include/cuda_runtime.h" ]; then
      echo "$candidate"
      return
    fi
  done
}
uses() { [[ " $FRAMEWORKS " == *" $1 "* ]]; }
# The Python modules the chosen frameworks' Horovod (horovod.X) and this package (horovod_distq.X) provide.
modules() { local m=(); uses torch && m+=("$1.torch"); uses tensorflow && m+=("$1.tensorflow"); local IFS=,; echo "${m[*]}"; }

install_debian_packages() {
  local missing=()
  command -v mpirun >/dev/null 2>&1 || missing+=(openmpi-bin)
  [ -e /usr/include/x86_64-linux-gnu/openmpi/mpi.h ] || [ -n "$(find /usr/include /usr/lib -name mpi.h -path '*openmpi*' 2>/dev/null | head -n1)" ] \
    || missing+=(libopenmpi-dev)
  command -v cmake >/dev/null 2>&1 || missing+=(cmake)
  command -v g++ >/dev/null 2>&1 || missing+=(g++)
  command -v make >/dev/null 2>&1 || missing+=(make)
  # Multi-host runs: horovodrun reaches other hosts by ssh (the cluster tests run sshd in network
  # namespaces, shaped by tc).
  [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
  command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
  command -v tc >/dev/null 2>&1 || missing+=(iproute2)
  # A bare Debian or Ubuntu (the Docker images' bases) lacks Python, its venv module, or the
  # headers that Horovod's build and this package's extensions compile against.
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
  python3 -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    >/dev/null 2>&1 || missing+=(python3-dev)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

create_venv() {
  if [ ! -x "$PY" ]; then
    log "creating virtual environment $VENV"
    python3 -m venv "$VENV"
    "$PY" -m pip install -q --upgrade pip setuptools wheel
  fi
}

install_python_packages() {
  # The frameworks are pinned here, for the demo and the tests, not by the package itself.
  if ! "$PY" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
    log "installing torch $TORCH_VERSION"
    # This machine image keeps the CPU wheel on disk; elsewhere pip takes PyPI's.
    local local_wheels=()
    [ -d /opt/wheels ] && local_wheels=(--find-links /opt/wheels)
    # A wheel on disk wins; otherwise the extra index (if any) offers a build (+cpu, +cu128) that
    # pip prefers to PyPI's plain one of the same version.
    if [ -n "$TORCH_INDEX_URL" ] && ! ls /opt/wheels/torch-"$TORCH_VERSION"[+-]*.whl >/dev/null 2>&1; then
      local_wheels+=(--extra-index-url "$TORCH_INDEX_URL")
    fi
    "$PY" -m pip install -q "${local_wheels[@]}" "torch==$TORCH_VERSION"
  fi
  if uses tensorflow && ! "$PY" -c "import tensorflow as tf, sys; sys.exit(tf.__version__ != '$TENSORFLOW_VERSION')" 2>/dev/null; then
    log "installing $TENSORFLOW_PACKAGE $TENSORFLOW_VERSION"
    "$PY" -m pip install -q "$TENSORFLOW_PACKAGE==$TENSORFLOW_VERSION"
  fi
  if [ -n "${HOROVOD_GPU_OPERATIONS:-}" ] && [ -z "$(cuda_toolkit)" ]; then install_cuda_wheels; fi
  # The device code's OpenMP test build (tests/device) compiles against CCCL's headers (Thrust,
  # CUB): the CUDA toolkit's where one is installed, else NVIDIA's wheel of them, in the venv.
  if [ ! -f "${CUDA_HOME:-/usr/local/cuda}/include/cccl/thrust/version.h" ] \
    && ! ls "$VENV"/lib/python3*/site-packages/nvidia/cu13/include/cccl/thrust/version.h >/dev/null 2>&1; then
    log "installing CCCL's headers (nvidia-cuda-cccl)"
    "$PY" -m pip install -q "nvidia-cuda-cccl==$CCCL_VERSION"
  fi
  local stamp=$VENV/.requirements-dev.sha256
  local wanted
  wanted=$(sha256sum "$ROOT/requirements-dev.txt" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    "$PY" -m pip install -q -r "$ROOT/requirements-dev.txt"
    echo "$wanted" > "$stamp"
  fi
}

# A GPU build on a machine without the CUDA toolkit (the GPU image): nvcc, its headers and NVVM from
# NVIDIA's wheels, which install into the nvidia/cu13 folder where torch's wheel keeps the CUDA
# runtime. nvcc links with lib64/ and the unversioned libcudart.so, which the wheels lack: two
# links add them. $VENV/cuda names the folder as the toolkit (cuda_toolkit).
install_cuda_wheels() {
  local cuda
  cuda=$("$PY" -c "import torch; print(torch.version.cuda or 'none')")
  if [ "$cuda" != "$NVCC_WHEEL_CUDA" ]; then
    echo "setup.sh: no CUDA toolkit found (set CUDA_HOME), and NVIDIA's nvcc wheels here are CUDA" \
         "$NVCC_WHEEL_CUDA's, while torch $TORCH_VERSION is built for CUDA $cuda" >&2
    exit 1
  fi
  log "installing CUDA $cuda's nvcc from NVIDIA's wheels (no CUDA toolkit found)"
  "$PY" -m pip install -q "nvidia-cuda-nvcc==$NVCC_WHEEL_VERSION" "nvidia-cuda-crt==$NVCC_WHEEL_VERSION" \
    "nvidia-nvvm==$NVCC_WHEEL_VERSION" "nvidia-cuda-cccl==$CCCL_VERSION"
  local toolkit
  toolkit=$(ls -d "$VENV"/lib/python3*/site-packages/nvidia/cu13 | head -n1)
  ln -sfn lib "$toolkit/lib64"
  ln -sf libcudart.so.13 "$toolkit/lib/libcudart.so"
  ln -sfn "$toolkit" "$VENV/cuda"
}

build_horovod_wheel() {
  local key
  # Horovod's framework libraries are tied to the exact framework builds they compiled against.
  uses torch && key+=torch$("$PY" -c "import torch; print(torch.__version__.replace('+', '_'))")
  uses tensorflow && key+=${key:+-}tf$("$PY" -c "import tensorflow as tf; print(tf.__version__)" 2>/dev/null)
  key+=${HOROVOD_GPU_OPERATIONS:+-gpu$HOROVOD_GPU_OPERATIONS}
  local wheel_dir=$WHEELS/horovod-$HOROVOD_VERSION-$key
  if ! ls "$wheel_dir"/horovod-*.whl >/dev/null 2>&1; then
    log "building Horovod $HOROVOD_VERSION against $key (several minutes, once per machine)"
    local work
    work=$(mktemp -d)
    "$PY" -m pip download -q --no-deps --no-binary :all: "horovod==$HOROVOD_VERSION" -d "$work"
    tar xzf "$work/horovod-$HOROVOD_VERSION.tar.gz" -C "$work"
    local src=$work/horovod-$HOROVOD_VERSION
    # torch 2.x headers need C++17; upstream made this change after the 0.28.1 release.
    sed -i 's/set(CMAKE_CXX_STANDARD 14)/set(CMAKE_CXX_STANDARD 17)/' \
      "$src/CMakeLists.txt" "$src/horovod/torch/CMakeLists.txt"
    # TF 2.20+ headers lack highwayhash, which the XLA MPI ops include; this project does not use
    # them (opt-in at run time with HOROVOD_ENABLE_XLA_OPS), on CPUs or GPUs.
    sed -i '/xla_mpi_ops.cc/d' "$src/horovod/tensorflow/CMakeLists.txt"
    # torch 2.14's headers need C++20.
    if "$PY" -c "import torch, sys; sys.exit(tuple(map(int, torch.__version__.split('.')[:2])) < (2, 14))" 2>/dev/null; then
      sed -i 's/set(CMAKE_CXX_STANDARD 17)/set(CMAKE_CXX_STANDARD 20)/' "$src/horovod/torch/CMakeLists.txt"
    fi
    mkdir -p "$wheel_dir"
    (
      cd "$src"
      export CMAKE_POLICY_VERSION_MINIMUM=3.5 MAKEFLAGS="-j$(nproc)" HOROVOD_WITHOUT_MXNET=1 \
        HOROVOD_WITH_MPI=1 HOROVOD_WITH_GLOO=1
      if uses torch; then export HOROVOD_WITH_PYTORCH=1; else export HOROVOD_WITHOUT_PYTORCH=1; fi
      if uses tensorflow; then export HOROVOD_WITH_TENSORFLOW=1; else export HOROVOD_WITHOUT_TENSORFLOW=1; fi
      [ -n "${HOROVOD_GPU_OPERATIONS:-}" ] && configure_gpu_build "$src"
      "$PY" -m pip wheel -q --no-build-isolation --no-deps . -w "$wheel_dir"
    )
    rm -rf "$work"
  fi
  if ! "$PY" -c "import $(modules horovod)" 2>/dev/null; then
    log "installing the cached Horovod wheel"
    "$PY" -m pip install -q --no-deps --force-reinstall "$wheel_dir"/horovod-*.whl
  fi
}

# Horovod's GPU build (HOROVOD_GPU_OPERATIONS=NCCL) with CUDA 13: the toolkit's nvcc, NCCL from
# NVIDIA's wheel (a folder of its own, since the wheel's library has no unversioned name), Hopper
# by default, and its CUDA kernels in C++17 (its CMake asks for C++11, which CUDA 13 dropped).
configure_gpu_build() {
  local src=$1
  export HOROVOD_CUDA_HOME=${HOROVOD_CUDA_HOME:-$(cuda_toolkit)}
  [ -n "$HOROVOD_CUDA_HOME" ] || { echo "setup.sh: no CUDA toolkit found (set HOROVOD_CUDA_HOME)" >&2; exit 1; }
  # Horovod's CMake asks torch's extension builder for the toolkit too, which reads CUDA_HOME.
  export CUDA_HOME=${CUDA_HOME:-$HOROVOD_CUDA_HOME}
  export HOROVOD_BUILD_CUDA_CC_LIST=${HOROVOD_BUILD_CUDA_CC_LIST:-90}
  if [ -z "${HOROVOD_NCCL_HOME:-}" ]; then
    local wheel_nccl
    wheel_nccl=$("$PY" -c "import nvidia.nccl; print(list(nvidia.nccl.__path__)[0])")
    export HOROVOD_NCCL_HOME=$CACHE/nccl
    mkdir -p "$HOROVOD_NCCL_HOME/lib"
    ln -sfn "$wheel_nccl/include" "$HOROVOD_NCCL_HOME/include"
    ln -sf "$wheel_nccl/lib/libnccl.so.2" "$HOROVOD_NCCL_HOME/lib/libnccl.so.2"
    ln -sf "$wheel_nccl/lib/libnccl.so.2" "$HOROVOD_NCCL_HOME/lib/libnccl.so"
  fi
  sed -i 's/set(CMAKE_CUDA_STANDARD 11)/set(CMAKE_CUDA_STANDARD 17)/' "$src/horovod/common/ops/cuda/CMakeLists.txt"
  log "GPU build: nvcc of $HOROVOD_CUDA_HOME, NCCL of $HOROVOD_NCCL_HOME, compute capability $HOROVOD_BUILD_CUDA_CC_LIST"
}

install_distq() {
  # Rebuilt only when its sources change, so a second run takes seconds.
  local stamp=$VENV/.horovod_distq.sources
  local sources
  sources=$(cd "$ROOT" && cat setup.py pyproject.toml $(find csrc -type f | sort) | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" = "$sources" ] && "$PY" -c "import $(modules horovod_distq)" 2>/dev/null; then
    return
  fi
  # --no-build-isolation: build against the torch in this environment, never download another.
  log "building horovod_distq"
  # A CUDA build of torch gets the CUDA kernels (setup.py) where the toolkit is found.
  if [ -z "${CUDA_HOME:-}" ] && [ -n "$(cuda_toolkit)" ]; then export CUDA_HOME=$(cuda_toolkit); fi
  "$PY" -m pip install -q --no-build-isolation --no-deps -e "$ROOT"
  echo "$sources" > "$stamp"
}

install_image_builders() {
  # make test-docker: with no Docker daemon, images are built by buildah from a Debian base that
  # debootstrap makes and podman imports (docker/local_base.sh): no daemon or registry needed.
  docker info >/dev/null 2>&1 && return
  local missing=()
  command -v buildah >/dev/null 2>&1 || missing+=(buildah)
  command -v podman >/dev/null 2>&1 || missing+=(podman)
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

declare -A STEP_FUNCTIONS=(
  [system]=install_debian_packages [venv]=create_venv [python]=install_python_packages
  [horovod]=build_horovod_wheel [distq]=install_distq [docker]=install_image_builders
)
STEPS=("$@")
[ ${#STEPS[@]} -gt 0 ] || STEPS=(system venv python horovod distq)
for step in "${STEPS[@]}"; do
  if [ -z "${STEP_FUNCTIONS[$step]:-}" ]; then
    echo "setup.sh: unknown step '$step' (steps: system venv python horovod distq docker)" >&2
    exit 2
  fi
done
for step in "${STEPS[@]}"; do
  "${STEP_FUNCTIONS[$step]}"
done
log "ready: $VENV"
