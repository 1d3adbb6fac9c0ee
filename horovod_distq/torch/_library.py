"""Loads the compiled custom-op library, with a readable error when it does not fit this torch."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

_BUILD_INFO = Path(__file__).resolve().parent.parent / "_build_info.json"


def _load() -> None:
    spec = importlib.util.find_spec("horovod_distq._torch_ops")
    if spec is None or spec.origin is None:
        raise ImportError(
            "horovod_distq was installed without its torch extension (was torch importable when it "
            "was built?). Rebuild it: pip install --no-build-isolation -e ."
        )
    built_with = json.loads(_BUILD_INFO.read_text())["torch"] if _BUILD_INFO.exists() else "unknown"
    if built_with != torch.__version__:
        raise ImportError(
            f"horovod_distq was built against torch {built_with} but torch {torch.__version__} is "
            "imported. Rebuild it against this torch: pip install --no-build-isolation -e ."
        )
    torch.ops.load_library(spec.origin)


_load()
