"""Build of horovod_distq and its compiled core.

The one C++ core (``csrc/core``) is linked into two libraries, each with its framework's thin
bindings: the torch extension ``horovod_distq._torch_ops`` (``csrc/torch``) and the TensorFlow op
library ``horovod_distq._tensorflow_ops`` (``csrc/tensorflow``), compiled with TensorFlow's own
compile and link flags. The torch extension adds the device code (``csrc/core/cuda``) and its
CUDA kernels (``csrc/torch/*.cu``) where torch is a CUDA build and nvcc is found. Each is built
only when its framework is importable, and against the one installed (pip's
``--no-build-isolation``: no isolated build environment downloads another). The
framework version each library was built against is written beside it (``<library>.build.json``,
in the build's own output: an editable build's package folder, else the wheel's) so that a later
mismatch fails with a readable message instead of an undefined symbol, and building for one
environment never changes what another environment's build recorded.
"""

import json
import os
import sys
import sysconfig
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).parent
# -Wno-psabi: the 32-byte vector helpers are always inlined, so the AVX argument-passing ABI note is moot.
CXX_FLAGS = ["-O3", "-std=c++17", "-fopenmp", "-Wall", "-Wextra", "-Wno-psabi"]
# torch's headers need C++20 from torch 2.14 on (C++17 before); the core is written to C++17.
TORCH_CXX_FLAGS = [flag for flag in CXX_FLAGS if not flag.startswith("-std=")] + ["-std=c++20"]


def sources(folder: str, suffix: str = "cpp") -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc" / folder).glob(f"*.{suffix}"))


def builds_cuda(torch_module: object, cuda_home: str | None) -> bool:
    """Whether to compile the torch extension's CUDA kernels: a CUDA build of torch and the CUDA
    toolkit (torch finds it by ``CUDA_HOME``, else by where ``nvcc`` is: set ``CUDA_HOME`` where
    that is a wrapper outside the toolkit), unless ``DISTQ_WITHOUT_CUDA=1``."""
    if os.environ.get("DISTQ_WITHOUT_CUDA") == "1" or not torch_module.version.cuda or not cuda_home:
        return False
    toolkit = Path(cuda_home)
    if (toolkit / "bin" / "nvcc").is_file() and (toolkit / "include" / "cuda_runtime.h").is_file():
        return True
    print(f"horovod-distq: no CUDA toolkit at {toolkit} (CUDA_HOME): building without CUDA kernels", file=sys.stderr)
    return False


def recording_build_info(base: type) -> type:
    """``base`` (a ``build_ext``) writing each library's ``<library>.build.json`` next to it (in the
    build folder, and in the package folder for an editable install): the framework version its
    ``built_against`` attribute names."""

    def record(folder: Path, ext: Extension) -> None:
        info = folder / (ext.name.rsplit(".", 1)[-1] + ".build.json")
        info.write_text(json.dumps(ext.built_against, indent=2) + "\n")

    class BuildExtRecordingFrameworks(base):
        def finalize_options(self) -> None:
            super().finalize_options()
            # Always compile: a library left as an earlier build made it (distutils skips one newer
            # than its sources) would be recorded as built against the framework installed now.
            self.force = True

        def build_extension(self, ext: Extension) -> None:
            super().build_extension(ext)
            record(Path(self.get_ext_fullpath(ext.name)).parent, ext)

        def copy_extensions_to_source(self) -> None:
            super().copy_extensions_to_source()
            build_py = self.get_finalized_command("build_py")
            for ext in self.extensions:
                record(Path(build_py.get_package_dir(ext.name.rsplit(".", 1)[0])), ext)

    return BuildExtRecordingFrameworks


def cuda_library_headers(cuda_version: str) -> list[str]:
    """The headers of the CUDA libraries torch's own headers include (cuBLAS, cuSPARSE, ...) where
    they come from NVIDIA's wheels beside a CUDA build of torch rather than from the toolkit."""
    folder = Path(sysconfig.get_paths()["purelib"]) / "nvidia" / f"cu{cuda_version.split('.')[0]}" / "include"
    return [str(folder)] if folder.is_dir() else []


def torch_extension() -> tuple[list, type | None]:
    """The torch custom-op library and torch's ``build_ext``, or nothing when torch is not installed."""
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
    except ImportError:
        return [], None
    host_sources = sources("core") + sources("torch")
    if builds_cuda(torch, CUDA_HOME):
        # The device code and its torch kernels; TORCH_CUDA_ARCH_LIST picks the GPUs (torch's default otherwise).
        extension = CUDAExtension(
            "horovod_distq._torch_ops",
            host_sources + sources("core/cuda", "cu") + sources("torch", "cu"),
            include_dirs=cuda_library_headers(torch.version.cuda),
            extra_compile_args={"cxx": TORCH_CXX_FLAGS, "nvcc": ["-O3", "-std=c++20"]},
            extra_link_args=["-fopenmp"],
        )
        extension.built_against = {"torch": torch.__version__, "cuda": torch.version.cuda}
    else:
        extension = CppExtension(
            "horovod_distq._torch_ops", host_sources, extra_compile_args={"cxx": TORCH_CXX_FLAGS},
            extra_link_args=["-fopenmp"],
        )
        extension.built_against = {"torch": torch.__version__}
    return [extension], BuildExtension.with_options(no_python_abi_suffix=False)


def tensorflow_extension() -> list:
    """The TensorFlow op library, or nothing when TensorFlow is not installed."""
    try:
        import tensorflow as tf
    except ImportError:
        return []
    # TensorFlow's headers as system headers: their own warnings are not this project's.
    compile_flags = [f"-isystem{f[2:]}" if f.startswith("-I") else f for f in tf.sysconfig.get_compile_flags()]
    extension = Extension(
        "horovod_distq._tensorflow_ops",
        sources("core") + sources("tensorflow"),
        language="c++",
        extra_compile_args=compile_flags + CXX_FLAGS,
        extra_link_args=[*tf.sysconfig.get_link_flags(), "-fopenmp"],
    )
    extension.built_against = {"tensorflow": tf.__version__}
    return [extension]


extensions, torch_build_ext = torch_extension()
extensions += tensorflow_extension()

setup(
    name="horovod-distq",
    version="0.1.0",
    description="Gradient sparsification by fitted-distribution thresholds for Horovod",
    long_description=(ROOT / "README.md").read_text(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["horovod_distq", "horovod_distq.*"]),
    # Python 3.11 is the one the tests run on.
    python_requires=">=3.11",
    install_requires=["numpy"],
    extras_require={
        # torch.library.register_fake (the ops' fake kernels) came with torch 2.4. Horovod is a
        # source build: install it first, as its docs say, then this package with --no-build-isolation.
        "torch": ["torch>=2.4", "horovod>=0.28.1"],
        "tensorflow": ["tensorflow>=2.16", "horovod>=0.28.1"],
        "test": ["pytest", "scipy", "scikit-learn", "mpi4py", "ml_dtypes"],
        # The benchmarks (python -m benchmarks) and the examples' data set, outside the package.
        "bench": ["matplotlib", "scikit-learn", "tqdm"],
    },
    classifiers=[
        "Development Status :: 3 - Alpha",
        "Intended Audience :: Science/Research",
        "Operating System :: POSIX :: Linux",
        "Programming Language :: C++",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.11",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Topic :: System :: Distributed Computing",
    ],
    ext_modules=extensions,
    cmdclass={"build_ext": recording_build_info(torch_build_ext or build_ext)},
)
