# The README's two commands. Each sets up whatever this machine lacks (scripts/setup.sh is
# idempotent: seconds on a set-up machine) and then does its job.
PYTHON := .venv/bin/python
HOROVODRUN := .venv/bin/horovodrun
LINTED := horovod_distq tests examples benchmarks scripts setup.py

# `make check` is the quick loop for daily work (lint, unit tests, the 2-worker Gloo checks); `make test`
# runs everything, as CI does.
.PHONY: setup demo test check lint bench-kernels bench-e2e bench-quality bench-tracing bench-scaling bench-convergence bench-time-to-accuracy docker-cpu docker-gpu test-docker test-docker-gpu test-cuda-build

setup:
	bash scripts/setup.sh

# horovodrun checks its build by importing horovod.tensorflow, whose C++ start-up logs would fill a
# torch run's output: quiet them for the launcher (and the workers, which do not load TensorFlow).
demo: setup
	TF_CPP_MIN_LOG_LEVEL=3 TF_ENABLE_ONEDNN_OPTS=0 $(HOROVODRUN) -np 2 -H localhost:2 --gloo $(PYTHON) examples/pytorch_digits.py --compression none distq --exchange sparse --out runs/digits

test: setup
	$(PYTHON) -m ruff check $(LINTED)
	bash scripts/check_cuda.sh
	$(PYTHON) -m pytest tests

check: setup
	$(PYTHON) -m ruff check $(LINTED)
	$(PYTHON) -m pytest -q tests/unit tests/device tests/test_parallel_torch.py tests/test_parallel_tensorflow.py -k "not mpi"

lint: setup
	$(PYTHON) -m ruff check $(LINTED)

# Benchmark suites (BENCHMARKS.md): each writes bench_results/<suite>.json and .png.
bench-kernels: setup
	$(PYTHON) -m benchmarks --out bench_results kernels

bench-e2e: setup
	$(PYTHON) -m benchmarks --out bench_results e2e

bench-quality: setup
	$(PYTHON) -m benchmarks --out bench_results quality

bench-tracing: setup
	$(PYTHON) -m benchmarks --out bench_results tracing

bench-scaling: setup
	$(PYTHON) -m benchmarks --out bench_results scaling

bench-convergence: setup
	$(PYTHON) -m benchmarks --out bench_results convergence

bench-time-to-accuracy: setup
	$(PYTHON) -m benchmarks --out bench_results time_to_accuracy

# Container images (docker/README.md), built with Docker where a daemon answers, else buildah or
# podman. Build arguments come from make's command line, e.g. BASE_IMAGE=localhost/debian:bookworm
# (a local Debian base, made on first use, for machines without a registry) or TORCH_VERSION=...
docker-cpu:
	bash docker/build.sh cpu

docker-gpu:
	bash docker/build.sh gpu

# Builds the CPU image from a clean copy of the checkout and runs its checks inside it: slow (a
# cold build compiles Horovod), so `make test` runs it only when DISTQ_TEST_DOCKER=1 is set.
test-docker: setup
	bash scripts/setup.sh docker
	DISTQ_TEST_DOCKER=1 $(PYTHON) -m pytest -v -rA tests/docker/test_image.py

# Builds the GPU image the same way (torch's CUDA wheel, nvcc from NVIDIA's wheels, Horovod with NCCL)
# and checks its build without a GPU: slower and larger (about 10 GB), DISTQ_TEST_DOCKER_GPU=1.
test-docker-gpu: setup
	bash scripts/setup.sh docker
	DISTQ_TEST_DOCKER_GPU=1 $(PYTHON) -m pytest -v -rA tests/docker/test_gpu_image.py

# Builds the torch extension with its CUDA kernels against a CUDA build of torch (a venv of its own,
# 5.5 GB, made once) and checks they are registered; nothing runs on a GPU here (scripts/gpu_check.sh).
test-cuda-build: setup
	DISTQ_TEST_CUDA_BUILD=1 $(PYTHON) -m pytest -v -rA tests/test_cuda_build.py
