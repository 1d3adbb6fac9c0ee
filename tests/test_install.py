"""Installing into an environment users already train in: a wheel built with
``pip wheel --no-build-isolation`` against that environment's frameworks, installed into a fresh
virtual environment that holds only torch and Horovod, runs a 2-worker job from outside the
source tree, and carries the torch library alone, with its build record beside it.

Slow (a fresh environment, torch installed into it, the torch library compiled): part of
``make test``, not of ``make check``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "horovod-distq"
# Horovod's own run-time requirements: its wheel is installed with --no-deps, as setup.sh does.
HOROVOD_RUNTIME = ["cloudpickle", "psutil", "pyyaml", "packaging"]


def _run(command: list[str | Path], cwd: Path, timeout: float) -> str:
    """Runs ``command``; fails the test with its output on a non-zero exit or after ``timeout`` s."""
    try:
        done = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"{' '.join(map(str, command))} timed out after {timeout:g} s:\n{expired.stdout}\n{expired.stderr}")
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(map(str, command))} exited {done.returncode}:\n{output[-6000:]}"
    return output


def _horovod_wheel() -> Path:
    """The Horovod wheel scripts/setup.sh built for this torch (and the checkout's TensorFlow)."""
    key = f"torch{torch.__version__}".replace("+", "_")
    wheels = sorted(CACHE.glob(f"wheels/horovod-*-{key}-*/horovod-*.whl"))
    if not wheels:
        pytest.fail(f"no Horovod wheel for {key} under {CACHE}/wheels: run scripts/setup.sh first")
    return wheels[-1]


def test_wheel_installs_into_an_existing_environment(tmp_path: Path) -> None:
    # The sources as a clean clone has them (tracked and new files, nothing ignored): no build
    # output of the checkout's own environment can slip into the wheel.
    listed = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], ROOT, 60)
    source = tmp_path / "source"
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)

    # A fresh environment as a cluster user has it: the interpreter the checkout's venv was made
    # from, torch and Horovod, nothing of TensorFlow.
    venv = tmp_path / "venv"
    _run([Path(sys.base_prefix) / "bin" / "python3", "-m", "venv", venv], tmp_path, 120)
    python = venv / "bin" / "python"
    local_wheels = ["--find-links", "/opt/wheels"] if Path("/opt/wheels").is_dir() else []
    _run([python, "-m", "pip", "install", "-q", *local_wheels, f"torch=={torch.__version__.split('+')[0]}",
          "numpy", "setuptools", "wheel", *HOROVOD_RUNTIME], tmp_path, 900)
    _run([python, "-m", "pip", "install", "-q", "--no-deps", _horovod_wheel()], tmp_path, 300)

    # README, "Install into your environment": a wheel built against the environment's torch.
    dist = tmp_path / "dist"
    _run([python, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps", source, "-w", dist], tmp_path, 1200)
    [wheel] = dist.glob("horovod_distq-*.whl")
    _run([python, "-m", "pip", "install", "-q", wheel], tmp_path, 300)
    metadata = _run([python, "-m", "pip", "show", "horovod-distq"], tmp_path, 60)
    assert "Requires: numpy" in metadata

    # From a folder outside the source tree, so that only the installed package can be imported.
    work = tmp_path / "work"
    work.mkdir()
    script = shutil.copy(ROOT / "tests" / "install" / "smoke_train.py", work / "smoke_train.py")
    output = _run([venv / "bin" / "horovodrun", "-np", "2", "-H", "localhost:2", "--gloo", python, script], work, 300)
    assert output.count("installed horovod_distq") == 2, output[-3000:]

    # The wheel carries the torch library and its record, and nothing of TensorFlow's.
    site = next((venv / "lib").glob("python3.*/site-packages/horovod_distq"))
    assert (site / "_torch_ops.build.json").is_file() and not list(site.glob("_tensorflow_ops*"))
