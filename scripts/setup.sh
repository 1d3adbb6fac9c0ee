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
# DISTQ_HOROVOD_VERSION; HOROVOD_GPU_OPERATIONS=NCCL builds Horovod for GPUs.
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
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/horovod-distq
WHEELS=$CACHE/wheels

log() { printf '[setup] %s\n' "$*"; }

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
  if ! "$PY" -c "import tensorflow as tf, sys; sys.exit(tf.__version__ != '$TENSORFLOW_VERSION')" 2>/dev/null; then
    log "installing $TENSORFLOW_PACKAGE $TENSORFLOW_VERSION"
    "$PY" -m pip install -q "$TENSORFLOW_PACKAGE==$TENSORFLOW_VERSION"
  fi
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

build_horovod_wheel() {
  local key
  # Horovod's framework libraries are tied to the exact framework builds they compiled against.
  key=$("$PY" -c "import torch, tensorflow as tf; print(f'torch{torch.__version__}-tf{tf.__version__}'.replace('+', '_'))" 2>/dev/null)
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
    mkdir -p "$wheel_dir"
    (
      cd "$src"
      export CMAKE_POLICY_VERSION_MINIMUM=3.5 MAKEFLAGS="-j$(nproc)" \
        HOROVOD_WITH_PYTORCH=1 HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITHOUT_MXNET=1 \
        HOROVOD_WITH_MPI=1 HOROVOD_WITH_GLOO=1
      "$PY" -m pip wheel -q --no-build-isolation --no-deps . -w "$wheel_dir"
    )
    rm -rf "$work"
  fi
  if ! "$PY" -c "import horovod.torch, horovod.tensorflow" 2>/dev/null; then
    log "installing the cached Horovod wheel"
    "$PY" -m pip install -q --no-deps --force-reinstall "$wheel_dir"/horovod-*.whl
  fi
}

install_distq() {
  # Rebuilt only when its sources change, so a second run takes seconds.
  local stamp=$VENV/.horovod_distq.sources
  local sources
  sources=$(cd "$ROOT" && cat setup.py pyproject.toml $(find csrc -type f | sort) | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" = "$sources" ] && "$PY" -c "import horovod_distq.torch, horovod_distq.tensorflow" 2>/dev/null; then
    return
  fi
  # --no-build-isolation: build against the torch in this environment, never download another.
  log "building horovod_distq"
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
