"""Build of horovod_distq and its compiled core.

The one C++ core (``csrc/core``) is linked into two libraries, each with its framework's thin
bindings: the torch extension ``horovod_distq._torch_ops`` (``csrc/torch``) and the TensorFlow op
library ``horovod_distq._tensorflow_ops`` (``csrc/tensorflow``), compiled with TensorFlow's own
compile and link flags. Each is built only when its framework is importable, and against the one
installed (pip's ``--no-build-isolation``: no isolated build environment downloads another). The
framework versions are recorded in ``horovod_distq/_build_info.json`` so a later mismatch fails
with a readable message instead of an undefined symbol.
"""

import json
from pathlib import Path

from setuptools import Extension, find_packages, setup

ROOT = Path(__file__).parent
# -Wno-psabi: the 32-byte vector helpers are always inlined, so the AVX argument-passing ABI note is moot.
CXX_FLAGS = ["-O3", "-std=c++17", "-fopenmp", "-Wall", "-Wextra", "-Wno-psabi"]


def sources(folder: str) -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc" / folder).glob("*.cpp"))


def torch_extension(build_info: dict) -> tuple[list, dict]:
    """The torch custom-op library, or nothing when torch is not installed."""
    try:
        import torch
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError:
        return [], {}
    build_info["torch"] = torch.__version__
    extension = CppExtension(
        "horovod_distq._torch_ops",
        sources("core") + sources("torch"),
        extra_compile_args={"cxx": CXX_FLAGS},
        extra_link_args=["-fopenmp"],
    )
    return [extension], {"build_ext": BuildExtension.with_options(no_python_abi_suffix=False)}


def tensorflow_extension(build_info: dict) -> list:
    """The TensorFlow op library, or nothing when TensorFlow is not installed."""
    try:
        import tensorflow as tf
    except ImportError:
        return []
    build_info["tensorflow"] = tf.__version__
    # TensorFlow's headers as system headers: their own warnings are not this project's.
    compile_flags = [f"-isystem{f[2:]}" if f.startswith("-I") else f for f in tf.sysconfig.get_compile_flags()]
    return [
        Extension(
            "horovod_distq._tensorflow_ops",
            sources("core") + sources("tensorflow"),
            language="c++",
            extra_compile_args=compile_flags + CXX_FLAGS,
            extra_link_args=tf.sysconfig.get_link_flags() + ["-fopenmp"],
        )
    ]


build_info: dict = {}
extensions, cmdclass = torch_extension(build_info)
extensions += tensorflow_extension(build_info)
(ROOT / "horovod_distq" / "_build_info.json").write_text(json.dumps(build_info, indent=2) + "\n")

setup(
    name="horovod-distq",
    version="0.1.0",
    description="Gradient sparsification by fitted-distribution thresholds for Horovod",
    packages=find_packages(include=["horovod_distq", "horovod_distq.*"]),
    package_data={"horovod_distq": ["_build_info.json"]},
    python_requires=">=3.9",
    install_requires=["numpy"],
    extras_require={
        # torch.library.register_fake (the ops' fake kernels) came with torch 2.4.
        "torch": ["torch>=2.4", "horovod>=0.28.1"],
        "tensorflow": ["tensorflow>=2.16", "horovod>=0.28.1"],
        "test": ["pytest", "scipy", "scikit-learn", "mpi4py", "ml_dtypes"],
        # The benchmarks (python -m benchmarks) and the examples' data set, outside the package.
        "bench": ["matplotlib", "scikit-learn", "tqdm"],
    },
    ext_modules=extensions,
    cmdclass=cmdclass,
)
