"""What the image checks share: building an image with docker/build.sh from a clean copy of the
checkout, and running commands in a container of it (``docker exec``, or ``buildah run`` where no
Docker daemon answers)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = os.environ.get("DISTQ_TEST_BASE_IMAGE", "localhost/debian:bookworm")
# One row of the examples' summary table, after horovodrun's "[rank]<stdout>:" prefix: compression,
# test acc, bytes/step, vs dense ("-" without a dense run).
SUMMARY_ROW = re.compile(r"^(?:\[[0-9,]+\]<stdout>:)?(none|fp16|distq)\s+([0-9.]+)\s+([0-9]+)\s+(-|[0-9.]+%)",
                         re.MULTILINE)


def docker_daemon() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


USE_DOCKER = docker_daemon()


def clean_copy(destination: Path) -> None:
    """What a fresh clone would hold, plus uncommitted work: git's tracked and not-ignored files,
    so no environment or build output of this checkout reaches the image."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is left out
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)


def build(context: Path, log: Path, flavour: str, image: str) -> float:
    """Builds ``image`` from docker/<flavour>/Dockerfile in ``context`` with the project's build
    script; returns the seconds taken."""
    environment = {**os.environ, "IMAGE": image, "BASE_IMAGE": BASE_IMAGE}
    start = time.monotonic()
    with log.open("w") as out:
        result = subprocess.run(["bash", "docker/build.sh", flavour], cwd=context, env=environment,
                                stdout=out, stderr=subprocess.STDOUT, timeout=3 * 3600)
    seconds = time.monotonic() - start
    assert result.returncode == 0, f"image build failed (log {log}):\n{log.read_text()[-5000:]}"
    return seconds


def image_size(image: str) -> str:
    if USE_DOCKER:
        size = subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", image],
                              capture_output=True, text=True, check=True).stdout
        return f"{int(size) / 1e9:.2f} GB"
    return subprocess.run(["buildah", "images", "--format", "{{.Size}}", image],
                          capture_output=True, text=True, check=True).stdout.strip()


# As docker/build.sh builds. The host's UTS namespace: a buildah container's own host name (its ID)
# is missing from its /etc/hosts, and Gloo must resolve the worker's host name (Docker maps it).
BUILDAH_RUN = ["buildah", "run", "--isolation", os.environ.get("BUILDAH_ISOLATION", "chroot"), "--uts", "host"]


class Container:
    """One container of ``image`` in which several commands run, as ``docker exec`` or ``buildah run``
    would (the image's working directory and environment)."""

    def __init__(self, image: str) -> None:
        self.image = image
        if USE_DOCKER:
            self.name = f"distq-test-{uuid.uuid4().hex[:8]}"
            subprocess.run(["docker", "run", "-d", "--name", self.name, image, "sleep", "infinity"],
                           capture_output=True, check=True)
        else:
            self.name = subprocess.run(["buildah", "from", image], capture_output=True, text=True,
                                       check=True).stdout.strip()

    def default_command(self) -> list[str]:
        """The image's CMD, what a bare ``docker run IMAGE`` runs."""
        if USE_DOCKER:
            inspect = ["docker", "image", "inspect", "-f", "{{json .Config.Cmd}}", self.image]
            return json.loads(subprocess.run(inspect, capture_output=True, text=True, check=True).stdout)
        inspect = ["buildah", "inspect", "--type", "image", self.image]
        config = json.loads(subprocess.run(inspect, capture_output=True, text=True, check=True).stdout)
        return config["OCIv1"]["config"]["Cmd"]

    def run(self, *command: str, timeout: float = 900) -> str:
        prefix = ["docker", "exec", self.name] if USE_DOCKER else [*BUILDAH_RUN, self.name, "--"]
        result = subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=timeout)
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"{' '.join(command)} failed in the container:\n{output[-5000:]}"
        return output

    def remove(self) -> None:
        remove = ["docker", "rm", "-f", self.name] if USE_DOCKER else ["buildah", "rm", self.name]
        subprocess.run(remove, capture_output=True)


def require_a_builder() -> None:
    if not USE_DOCKER and shutil.which("buildah") is None:
        raise RuntimeError("no Docker daemon and no buildah: on Debian, apt-get install buildah podman debootstrap")
