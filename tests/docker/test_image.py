"""The CPU image (docker/cpu/Dockerfile), built from a clean copy of this checkout and run.

Slow: a cold build installs torch and TensorFlow and compiles Horovod (about 25 minutes on 2
cores), so these tests run only with DISTQ_TEST_DOCKER=1 (``make test-docker``, or
``DISTQ_TEST_DOCKER=1 make test``). They build with docker/build.sh (Docker where a daemon
answers, else buildah) and run commands in a container of the image (``docker exec``, or
``buildah run``). The base is a local Debian made by docker/local_base.sh from this machine's apt
mirror, so no registry is needed; DISTQ_TEST_BASE_IMAGE names another base.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.docker.images import (
    BUILDAH_RUN,
    SUMMARY_ROW,
    USE_DOCKER,
    Container,
    build,
    clean_copy,
    image_size,
    require_a_builder,
)

IMAGE = "horovod-distq:cpu-test"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("DISTQ_TEST_DOCKER") != "1",
        reason="builds the CPU container image (slow): set DISTQ_TEST_DOCKER=1 or run `make test-docker`",
    ),
]


@pytest.fixture(scope="module")
def context(tmp_path_factory) -> Path:
    require_a_builder()
    destination = tmp_path_factory.mktemp("context")
    clean_copy(destination)
    return destination


@pytest.fixture(scope="module")
def image(context: Path, tmp_path_factory) -> str:
    seconds = build(context, tmp_path_factory.mktemp("logs") / "build.log", "cpu", IMAGE)
    print(f"build of {IMAGE}: {seconds:.0f} s, image size {image_size(IMAGE)}")
    return IMAGE


@pytest.fixture(scope="module")
def container(image: str):
    running = Container(IMAGE)
    yield running
    running.remove()


def test_check_build_lists_both_frameworks_and_both_controllers(container: Container) -> None:
    output = container.run("horovodrun", "--check-build")
    print(output)
    for component in ("PyTorch", "TensorFlow", "MPI", "Gloo"):
        assert re.search(rf"\[X\] {component}\b", output), f"{component} missing:\n{output}"


def test_default_command_runs_the_demo(container: Container) -> None:
    command = container.default_command()
    assert command[0] == "horovodrun" and "examples/pytorch_digits.py" in command, command
    start = time.monotonic()
    output = container.run(*command)
    print(f"{' '.join(command)}  ({time.monotonic() - start:.0f} s)\n{output}")
    rows = {row[0]: row for row in SUMMARY_ROW.findall(output)}
    assert set(rows) == {"none", "distq"}, output
    assert float(rows["none"][1]) > 0.9 and float(rows["distq"][1]) > 0.9, output  # test accuracy
    assert float(rows["distq"][3].rstrip("%")) < 10, output  # bytes per step, % of dense
    summary = json.loads(container.run("cat", "runs/digits/summary.json"))
    assert [run["compression"] for run in summary["runs"]] == ["none", "distq"]


def test_mpi_is_horovodruns_default_and_works_as_root(container: Container) -> None:
    """`docker run IMAGE horovodrun -np 2 ...` as a user would type it: no --gloo, no
    --allow-run-as-root (the image sets Open MPI's variables for root)."""
    probe = "import horovod.torch as hvd; hvd.init(); print('controller', 'MPI' if hvd.mpi_enabled() else 'Gloo')"
    output = container.run("horovodrun", "-np", "2", "-H", "localhost:2", "python", "-c", probe)
    assert output.count("controller MPI") == 2, output
    output = container.run("horovodrun", "-np", "2", "-H", "localhost:2", "python", "examples/pytorch_digits.py",
                           "--compression", "distq", "--epochs", "1", "--out", "/tmp/mpi")
    assert [row[0] for row in SUMMARY_ROW.findall(output)] == ["distq"], output


def test_tensorflow_example_runs(container: Container) -> None:
    output = container.run("horovodrun", "-np", "2", "-H", "localhost:2", "--gloo", "python",
                           "examples/tensorflow2_digits.py", "--compression", "distq", "--epochs", "1",
                           "--out", "/tmp/tf")
    assert [row[0] for row in SUMMARY_ROW.findall(output)] == ["distq"], output


def run_isolated(script: str, volume: str) -> str:
    """Runs ``bash -c script`` in a new container of IMAGE with ``volume`` mounted, on a network of
    its own: Docker's default one, or (buildah, which shares the caller's network) a network
    namespace made here, so that an sshd started inside never listens on this machine's network."""
    if USE_DOCKER:
        command = ["docker", "run", "--rm", "-v", volume, IMAGE, "bash", "-c", script]
        result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    else:
        namespace = f"distq-test-{uuid.uuid4().hex[:8]}"
        subprocess.run(["ip", "netns", "add", namespace], check=True)
        name = subprocess.run(["buildah", "from", IMAGE], capture_output=True, text=True, check=True).stdout.strip()
        try:
            subprocess.run(["ip", "-n", namespace, "link", "set", "lo", "up"], check=True)
            command = ["ip", "netns", "exec", namespace, *BUILDAH_RUN, "-v", volume, name, "--", "bash", "-c", script]
            result = subprocess.run(command, capture_output=True, text=True, timeout=900)
        finally:
            subprocess.run(["buildah", "rm", name], capture_output=True)
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    return output


@pytest.mark.parametrize("controller", ["gloo", "mpi"])
def test_workers_on_another_host_start_over_ssh(image: str, controller: str, tmp_path) -> None:
    """docker/README.md's multi-host recipe in one container: distq-sshd on port 12345 with a
    mounted key pair, and horovodrun -p 12345 with a second "host", 127.0.0.2, which horovodrun does
    not count as local and so reaches over ssh (Gloo or MPI)."""
    keys = tmp_path / "ssh"
    keys.mkdir(mode=0o700)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "id_ed25519")], check=True)
    shutil.copy(keys / "id_ed25519.pub", keys / "authorized_keys")
    flag = "--gloo" if controller == "gloo" else "--mpi"
    script = f"""
        distq-sshd 12345 > /tmp/sshd.log 2>&1 &
        sleep 2
        horovodrun -np 2 -H localhost:1,127.0.0.2:1 -p 12345 {flag} \
            python examples/pytorch_digits.py --compression distq --epochs 1 --out /tmp/two-hosts
        status=$?
        cat /tmp/sshd.log
        kill %1
        exit $status
    """
    output = run_isolated(script, f"{keys}:/root/.ssh")
    assert [row[0] for row in SUMMARY_ROW.findall(output)] == ["distq"], output[-5000:]
    assert "Accepted publickey for root" in output, output[-5000:]


def test_rebuild_after_a_code_change_reuses_the_horovod_layer(image: str, context: Path, tmp_path_factory) -> None:
    """A change to the package's sources rebuilds only the package: torch, TensorFlow and Horovod
    come from the cached layer (setup.sh logs every install or build it does)."""
    init = context / "horovod_distq" / "__init__.py"
    init.write_text(init.read_text() + "\n# changed by tests/docker/test_image.py\n")
    log = tmp_path_factory.mktemp("logs") / "rebuild.log"
    seconds = build(context, log, "cpu", IMAGE)
    print(f"rebuild after a code change: {seconds:.0f} s")
    text = log.read_text()
    assert "[setup] building horovod_distq" in text, text[-5000:]
    for redone in ("[setup] installing torch", "[setup] installing tensorflow", "[setup] building Horovod",
                   "[setup] installing the cached Horovod wheel"):
        assert redone not in text, f"{redone!r} in a rebuild after a code change:\n{text[-5000:]}"
