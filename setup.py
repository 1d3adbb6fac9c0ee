"""Build of horovod_distq and its compiled core.

The torch extension is built against the torch already installed (pip's
``--no-build-isolation``): no isolated build environment downloads another torch, so a user's
own CUDA build of torch is used as it is. The torch version it was built with is recorded in
``horovod_distq/_build_info.json`` so a later mismatch fails with a readable message.
"""

import json
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
CORE_SOURCES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc" / "core").glob("*.cpp"))
# -Wno-psabi: the 32-byte vector helpers are always inlined, so the AVX argument-passing ABI note is moot.
CXX_FLAGS = ["-O3", "-std=c++17", "-fopenmp", "-Wall", "-Wextra", "-Wno-psabi"]


def torch_extensions():
    """The torch custom-op library, or nothing when torch is not installed."""
    try:
        import torch
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError:
        return [], {}
    (ROOT / "horovod_distq" / "_build_info.json").write_text(
        json.dumps({"torch": torch.__version__}, indent=2) + "\n"
    )
    sources = CORE_SOURCES + sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc" / "torch").glob("*.cpp"))
    extension = CppExtension(
        "horovod_distq._torch_ops",
        sources,
        extra_compile_args={"cxx": CXX_FLAGS},
        extra_link_args=["-fopenmp"],
    )
    return [extension], {"build_ext": BuildExtension.with_options(no_python_abi_suffix=False)}


extensions, cmdclass = torch_extensions()

setup(
    name="horovod-distq",
    version="0.1.0",
    description="Gradient sparsification by fitted-distribution thresholds for Horovod",
    packages=find_packages(include=["horovod_distq", "horovod_distq.*"]),
    package_data={"horovod_distq": ["_build_info.json"]},
    python_requires=">=3.9",
    install_requires=["numpy"],
    extras_require={
        "torch": ["torch>=2.1", "horovod>=0.28.1"],
        "test": ["pytest", "scipy", "scikit-learn", "mpi4py"],
    },
    ext_modules=extensions,
    cmdclass=cmdclass,
)
