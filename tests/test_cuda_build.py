"""Opt-in (``DISTQ_TEST_CUDA_BUILD=1``, ``make test-cuda-build``): the torch extension built with its
CUDA kernels, on a machine without a GPU.

It builds this package's wheel against a CUDA build of torch in a virtual environment of its own
(``~/.cache/horovod-distq/venv-cuda-torch<version>``, made on first use: about 5.5 GB, from this
machine's disk where the wheels lie there), with the machine's nvcc, whose CUDA version must be
torch's, and checks that the library loads and registers CUDA kernels of ``distq.sparsify`` and
``distq.sparsify_padded`` beside the CPU ones. Nothing of it can run without a GPU:
``scripts/gpu_check.sh`` runs it on one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CUDA_TORCH_VERSION = "2.14.1"
VENV = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "horovod-distq" / \
    f"venv-cuda-torch{CUDA_TORCH_VERSION}"

pytestmark = pytest.mark.skipif(os.environ.get("DISTQ_TEST_CUDA_BUILD") != "1",
                                reason="builds the CUDA extension (minutes, 5.5 GB): DISTQ_TEST_CUDA_BUILD=1")


def run(*command: str, **kwargs) -> str:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def cuda_python() -> Path:
    """The Python of an environment holding the CUDA build of torch, made where missing."""
    python = VENV / "bin" / "python"
    if not python.exists():
        run(sys.executable, "-m", "venv", str(VENV))
    probe = subprocess.run([str(python), "-c", "import torch; print(torch.version.cuda)"], capture_output=True,
                           text=True)
    if probe.returncode != 0 or probe.stdout.strip() in ("", "None"):
        run(str(python), "-m", "pip", "install", "-q", f"torch=={CUDA_TORCH_VERSION}", "numpy", "setuptools", "wheel")
    return python


def cuda_home() -> Path:
    """The CUDA toolkit, as scripts/setup.sh finds it (the nvcc on the PATH may be a wrapper elsewhere)."""
    nvcc = shutil.which("nvcc")
    candidates = [os.environ.get("CUDA_HOME"), "/usr/local/cuda", nvcc and Path(os.path.realpath(nvcc)).parents[1]]
    for candidate in filter(None, candidates):
        if (Path(candidate) / "bin" / "nvcc").is_file() and (Path(candidate) / "include" / "cuda_runtime.h").is_file():
            return Path(candidate)
    pytest.fail(f"no CUDA toolkit (nvcc and cuda_runtime.h) in {candidates}: the CUDA build needs one")


def test_the_torch_extension_builds_with_cuda_kernels(cuda_python: Path, tmp_path: Path) -> None:
    torch_cuda = run(str(cuda_python), "-c", "import torch; print(torch.version.cuda)").strip()
    nvcc_release = run(str(cuda_home() / "bin" / "nvcc"), "--version").split("release ")[1].split(",")[0]
    # torch's extension builder refuses an nvcc of another major version; a minor one would link
    # against another runtime than torch's.
    assert nvcc_release == torch_cuda, f"nvcc is CUDA {nvcc_release}, torch {CUDA_TORCH_VERSION}'s {torch_cuda}"
    source = tmp_path / "source"
    files = run("git", "ls-files", "-co", "--exclude-standard", cwd=ROOT).split()
    for name in files:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    env = {**os.environ, "CUDA_HOME": str(cuda_home()), "TORCH_CUDA_ARCH_LIST": "9.0",
           "MAX_JOBS": str(os.cpu_count() or 2)}
    run(str(cuda_python), "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps", str(source),
        "-w", str(tmp_path / "wheel"), cwd=tmp_path, env=env)
    (wheel,) = (tmp_path / "wheel").glob("horovod_distq-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (library,) = [n for n in names if n.startswith("horovod_distq/_torch_ops") and n.endswith(".so")]
        archive.extractall(tmp_path / "unpacked", [library, "horovod_distq/_torch_ops.build.json"])
    built = (tmp_path / "unpacked" / "horovod_distq" / "_torch_ops.build.json").read_text()
    assert f'"cuda": "{torch_cuda}"' in built, built
    check = (
        "import sys, torch\n"
        "torch.ops.load_library(sys.argv[1])\n"
        "has = torch._C._dispatch_has_kernel_for_dispatch_key\n"
        "for op in ('distq::sparsify', 'distq::sparsify_padded'):\n"
        "    assert has(op, 'CUDA') and has(op, 'CPU'), op\n"
        "x = torch.randn(10_000)\n"
        "assert torch.ops.distq.sparsify_padded(x, 0.01, 'auto', 0.0, 4096, 3, -1)[2] > 0\n"
        "print('ok')\n"
    )
    assert run(str(cuda_python), "-c", check, str(tmp_path / "unpacked" / library), cwd=tmp_path).strip() == "ok"


def test_horovod_builds_with_nccl(cuda_python: Path) -> None:
    """setup.sh's GPU variant: Horovod built with NCCL (from NVIDIA's wheel beside torch) and the
    toolkit's nvcc, for torch, in the CUDA environment; its launcher lists NCCL among its ops."""
    env = {**os.environ, "DISTQ_VENV": str(VENV), "DISTQ_TORCH_VERSION": CUDA_TORCH_VERSION,
           "DISTQ_FRAMEWORKS": "torch", "HOROVOD_GPU_OPERATIONS": "NCCL"}
    run("bash", str(ROOT / "scripts" / "setup.sh"), "venv", "python", "horovod", env=env)
    build = run(str(VENV / "bin" / "horovodrun"), "--check-build")
    lines = {line.strip() for line in build.splitlines()}
    assert {"[X] PyTorch", "[X] NCCL", "[X] Gloo", "[X] MPI"} <= lines, build
