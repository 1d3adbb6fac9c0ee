"""The compiled libraries are checked against the framework imported, with a readable error."""

from __future__ import annotations

import importlib.util
import json
from importlib.machinery import ModuleSpec
from pathlib import Path

import pytest

from horovod_distq import _build


def test_a_library_built_for_another_version_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    library = tmp_path / "_torch_ops.so"
    library.write_bytes(b"")
    (tmp_path / "_torch_ops.build.json").write_text(json.dumps({"torch": "1.0.0"}))
    monkeypatch.setattr(_build.importlib.util, "find_spec", lambda name: ModuleSpec(name, None, origin=str(library)))
    with pytest.raises(ImportError, match=r"built against torch 1\.0\.0 but torch 2\.13\.0 is imported"):
        _build.compiled_library("_torch_ops", "torch", "2.13.0")
    assert _build.compiled_library("_torch_ops", "torch", "1.0.0") == str(library)


def test_each_library_records_its_own_framework_beside_it() -> None:
    """A build for an environment with one framework writes that library's record only, so it can
    never make another environment's other library look mismatched."""
    for module, framework in (("_torch_ops", "torch"), ("_tensorflow_ops", "tensorflow")):
        spec = importlib.util.find_spec(f"horovod_distq.{module}")
        assert spec is not None and spec.origin is not None
        recorded = json.loads(Path(spec.origin).with_name(f"{module}.build.json").read_text())
        assert list(recorded) == [framework]


def test_a_missing_library_says_how_to_build_it() -> None:
    with pytest.raises(ImportError, match=r"without its MXNet library.*pip install --no-build-isolation"):
        _build.compiled_library("_mxnet_ops", "MXNet", "1.9")
