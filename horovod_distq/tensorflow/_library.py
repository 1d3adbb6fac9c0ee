"""Loads the compiled op library, with a readable error when it does not fit this TensorFlow."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import tensorflow as tf

_BUILD_INFO = Path(__file__).resolve().parent.parent / "_build_info.json"


def _load() -> ModuleType:
    spec = importlib.util.find_spec("horovod_distq._tensorflow_ops")
    if spec is None or spec.origin is None:
        raise ImportError(
            "horovod_distq was installed without its TensorFlow op library (was TensorFlow importable "
            "when it was built?). Rebuild it: pip install --no-build-isolation -e ."
        )
    built_with = json.loads(_BUILD_INFO.read_text()).get("tensorflow", "unknown") if _BUILD_INFO.exists() else "unknown"
    if built_with != tf.__version__:
        raise ImportError(
            f"horovod_distq was built against TensorFlow {built_with} but TensorFlow {tf.__version__} is "
            "imported. Rebuild it against this TensorFlow: pip install --no-build-isolation -e ."
        )
    return tf.load_op_library(spec.origin)


ops = _load()
