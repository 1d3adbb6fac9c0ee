"""Finds a compiled library of this package and checks it was built for the framework imported."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

_REBUILD = ("Rebuild it against this one: pip install --no-build-isolation . (into your environment), or "
            "pip install --no-build-isolation -e . in a checkout (scripts/setup.sh does).")


def compiled_library(module: str, framework: str, version: str) -> str:
    """The path of ``horovod_distq.<module>``, built against ``framework`` ``version``.

    Raises:
        ImportError: the library was not built, or was built against another version, with what to do.
    """
    spec = importlib.util.find_spec(f"horovod_distq.{module}")
    if spec is None or spec.origin is None:
        raise ImportError(
            f"horovod_distq was installed without its {framework} library (was {framework} importable when "
            f"it was built?). {_REBUILD}"
        )
    # setup.py writes it beside the library it built, so it describes that library and no other.
    build_info = Path(spec.origin).with_name(f"{module}.build.json")
    built = json.loads(build_info.read_text()) if build_info.exists() else {}
    built_with = built.get(framework.lower(), "unknown")
    if built_with != version:
        raise ImportError(
            f"horovod_distq was built against {framework} {built_with} but {framework} {version} is imported. "
            f"{_REBUILD}"
        )
    return spec.origin
