"""DistQ across hosts: real multi-host ``horovodrun`` over ssh (Gloo and MPI), one rank per host, on the
network namespaces of tests/cluster/hosts.py; every check compares against an independent dense
computation, as on one machine."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from tests.cluster.hosts import Cluster, unavailable_reason
from tests.launch import CONTROLLERS, pytest_on_every_rank

UNAVAILABLE = unavailable_reason()
pytestmark = [
    pytest.mark.skipif(UNAVAILABLE is not None, reason=f"no multi-host cluster here: {UNAVAILABLE}"),
    pytest.mark.parametrize("controller", ["gloo", "mpi"]),
]
# How long a job may take to fail once one of its hosts is gone.
LOST_HOST_SECONDS = 60


@pytest.fixture(params=[2, 3], ids=lambda hosts: f"{hosts}hosts")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    with Cluster(request.param) as made:
        yield made


def test_torch_optimizer_matches_dense_reference_across_hosts(cluster: Cluster, controller: str) -> None:
    # The whole single-machine check: averages, encodings, error feedback, momentum correction,
    # local Adam, checkpoints, misuse.
    pytest_on_every_rank("tests/parallel/torch_optimizer_check.py", controller, passed=24, timeout=600,
                         cluster=cluster)


def test_tensorflow_tape_matches_dense_reference_across_hosts(cluster: Cluster, controller: str) -> None:
    # In tf.function: 8 averages, 1 empty selection, 2 error feedback, 1 rank-0 checkpoint resumed.
    pytest_on_every_rank("tests/parallel/tensorflow_tape_check.py", controller, passed=12, timeout=600,
                         cluster=cluster, select="function and (average or empty or error_feedback or checkpoint)")


@pytest.mark.parametrize("failure", ["killed", "cut"])
def test_a_lost_host_ends_the_job_with_an_error(controller: str, failure: str) -> None:
    """A host whose processes die (the peers' sockets close) or that vanishes from the network (its
    switch port down: no FIN, no RST, a silent peer) ends the job with an error within
    LOST_HOST_SECONDS, on every controller, with the timeouts README's "Failure behaviour" gives."""
    with Cluster(2) as cluster:
        job = cluster.popen(cluster.horovodrun_command(
            [*CONTROLLERS[controller], sys.executable, "-m", "tests.cluster.train_until_killed"]))
        output: list[str] = []
        threading.Thread(target=lambda: output.extend(job.stdout), daemon=True).start()
        try:
            deadline = time.monotonic() + 120
            while not _both_ranks_stepped("".join(output)):
                assert job.poll() is None, f"the job ended before training:\n{''.join(output)[-3000:]}"
                assert time.monotonic() < deadline, f"no training steps after 120 s:\n{''.join(output)[-3000:]}"
                time.sleep(0.2)
            if failure == "killed":
                cluster.kill_host(1)
            else:
                cluster.cut_host(1)
            lost = time.monotonic()
            try:
                code = job.wait(timeout=LOST_HOST_SECONDS)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the job still ran {LOST_HOST_SECONDS} s after its second host was {failure}:\n"
                            f"{''.join(output)[-3000:]}")
            ended = time.monotonic() - lost
        finally:
            cluster.stop(job)
        assert code != 0, f"the job exited 0 although a host was {failure}:\n{''.join(output)[-3000:]}"
        print(f"{controller}: the job ended ({code}) {ended:.1f} s after host2 was {failure}")


def _both_ranks_stepped(output: str) -> bool:
    return {rank for rank in re.findall(r"\[(?:\d+,)?(\d+)\]<stdout>:step [3-9]", output)} == {"0", "1"}
