"""The compiled libraries are checked against the framework imported, with a readable error."""

from __future__ import annotations

import json

import pytest

from horovod_distq import _build


def test_a_library_built_for_another_version_is_refused(tmp_path, monkeypatch) -> None:
    info = tmp_path / "_build_info.json"
    info.write_text(json.dumps({"torch": "1.0.0", "tensorflow": "2.21.0"}))
    monkeypatch.setattr(_build, "_BUILD_INFO", info)
    with pytest.raises(ImportError, match=r"built against torch 1\.0\.0 but torch 2\.13\.0 is imported"):
        _build.compiled_library("_torch_ops", "torch", "2.13.0")
    assert _build.compiled_library("_tensorflow_ops", "TensorFlow", "2.21.0").endswith(".so")


def test_a_missing_library_says_how_to_build_it() -> None:
    with pytest.raises(ImportError, match=r"without its MXNet library.*pip install --no-build-isolation"):
        _build.compiled_library("_mxnet_ops", "MXNet", "1.9")
