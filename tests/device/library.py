"""Builds and loads the test library of tests/device/backends.cpp: the CPU core and the device
code (csrc/core/cuda/*.cu) compiled by the host compiler for Thrust's OpenMP backend, the same
sources nvcc compiles for CUDA (scripts/check_cuda.sh).

The library is cached by a hash of its sources and flags in ``~/.cache/horovod-distq/device-test``,
so only the first test run after a change compiles (about a minute on 2 cores).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import sysconfig
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "csrc" / "core"
# The CPU core's flags are setup.py's; the device sources add Thrust's OpenMP system.
CPU_FLAGS = ["-O3", "-std=c++17", "-fopenmp", "-fPIC", "-Wall", "-Wextra", "-Wno-psabi"]
DEVICE_FLAGS = ["-x", "c++", "-O2", "-std=c++17", "-fopenmp", "-fPIC", "-Wall", "-Wextra",
                "-DTHRUST_DEVICE_SYSTEM=THRUST_DEVICE_SYSTEM_OMP"]


def cccl_include() -> Path:
    """The folder holding CCCL's ``thrust/``, ``cub/`` and ``cuda/`` headers.

    ``DISTQ_CCCL_INCLUDE`` if set, else the CUDA toolkit's ``include/cccl``, else the one the
    ``nvidia-cuda-cccl`` wheel puts in this environment (scripts/setup.sh installs it where no
    toolkit is).

    Raises:
        FileNotFoundError: no CCCL headers were found.
    """
    candidates = [os.environ.get("DISTQ_CCCL_INCLUDE"), os.environ.get("CUDA_HOME") and
                  f"{os.environ['CUDA_HOME']}/include/cccl", "/usr/local/cuda/include/cccl",
                  f"{sysconfig.get_paths()['purelib']}/nvidia/cu13/include/cccl"]
    for candidate in filter(None, candidates):
        if (Path(candidate) / "thrust" / "version.h").is_file():
            return Path(candidate)
    raise FileNotFoundError("CCCL's headers (thrust/version.h) not found in any of "
                            f"{[c for c in candidates if c]}: run scripts/setup.sh, or set DISTQ_CCCL_INCLUDE")


def _sources() -> list[tuple[Path, list[str]]]:
    cpu = [(p, CPU_FLAGS) for p in sorted(CORE.glob("*.cpp"))]
    device = [(p, DEVICE_FLAGS) for p in sorted((CORE / "cuda").glob("*.cu"))]
    return [*cpu, *device, (Path(__file__).with_name("backends.cpp"), DEVICE_FLAGS)]


def _compile(source: Path, flags: list[str], include: Path, output: Path) -> None:
    command = ["g++", *flags, f"-I{include}", "-c", str(source), "-o", str(output)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"compiling {source} failed:\n{' '.join(command)}\n{result.stderr}")


def build() -> Path:
    """Compiles the library where no build of the same sources exists; returns its path."""
    include = cccl_include()
    sources = _sources()
    digest = hashlib.sha256(str(include).encode())
    for header in sorted(CORE.rglob("*.h")):
        digest.update(header.read_bytes())
    for source, flags in sources:
        digest.update(" ".join(flags).encode() + source.read_bytes())
    cache_root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "horovod-distq" / "device-test"
    folder = cache_root / digest.hexdigest()[:16]
    library = folder / "libdistq_device_test.so"
    if library.is_file():
        return library
    folder.mkdir(parents=True, exist_ok=True)
    objects = [folder / f"{source.parent.name}_{source.name}.o" for source, _ in sources]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(pool.map(lambda job: _compile(*job[0], include, job[1]), zip(sources, objects)))
    partial = folder / "partial.so"
    subprocess.run(["g++", "-shared", "-fopenmp", *map(str, objects), "-o", str(partial)], check=True)
    partial.rename(library)
    return library


@cache
def load() -> ctypes.CDLL:
    """The built library, with its functions' signatures declared."""
    library = ctypes.CDLL(str(build()))
    pointer, i64, f64 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double
    library.distq_test_sparsify.argtypes = [ctypes.c_int, pointer, i64, ctypes.c_int, ctypes.c_char_p, f64, f64, i64,
                                            i64, pointer, i64, pointer, pointer, pointer, pointer, ctypes.c_char_p,
                                            i64]
    library.distq_test_sparsify.restype = ctypes.c_int
    library.distq_test_update_loop.argtypes = [pointer, pointer, i64, f64]
    library.distq_test_update_loop.restype = None
    library.distq_test_outstanding_allocations.restype = i64
    library.distq_test_total_allocations.restype = i64
    return library
