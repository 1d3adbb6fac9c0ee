"""DistQ under Horovod's elastic mode: a run grows from 1 to 2 workers and shrinks back to 1
(``horovodrun --min-np 1 --max-np 2 --host-discovery-script``, Gloo: MPI has no elastic mode), on
this machine and across the namespace hosts of tests/cluster/hosts.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.cluster.hosts import Cluster, unavailable_reason
from tests.elastic.common import LOCAL_HOSTS, STEPS_PER_PHASE, host_lines
from tests.launch import HOROVODRUN, run_until

MODULES = {"torch": "tests.elastic.torch_train", "tensorflow": "tests.elastic.tensorflow_train"}
EXAMPLES = {"torch": "examples/pytorch_digits_elastic.py", "tensorflow": "examples/tensorflow2_digits_elastic.py"}
NO_CLUSTER = unavailable_reason()


def discovery_script(tmp_path: Path, hosts: Path, first_host: str) -> Path:
    """A discovery script printing the file ``hosts``, which starts with ``first_host`` alone."""
    hosts.write_text(host_lines((first_host,)))
    script = tmp_path / "discover.sh"
    script.write_text(f"#!/bin/sh\ncat {hosts}\n")
    script.chmod(0o755)
    return script


def elastic_horovodrun(tmp_path: Path, hosts: Path) -> list[str]:
    """``horovodrun`` in elastic mode on 1 to 2 workers of this machine, its discovery script printing ``hosts``."""
    return [
        str(HOROVODRUN), "-np", "1", "--min-np", "1", "--max-np", "2",
        "--host-discovery-script", str(discovery_script(tmp_path, hosts, LOCAL_HOSTS[0])),
        # One machine: Horovod finds no interface common to "two hosts" by itself.
        "--gloo", "--network-interface", "lo", sys.executable,
    ]


@pytest.mark.parametrize(("framework", "exchange"), [("torch", "auto"), ("tensorflow", "auto"), ("torch", "two_phase")])
def test_grow_and_shrink_mid_training(framework: str, exchange: str, tmp_path: Path) -> None:
    hosts, out = tmp_path / "hosts", tmp_path / "log.json"
    command = [*elastic_horovodrun(tmp_path, hosts), "-m", MODULES[framework], "--hosts-file", str(hosts),
               "--out", str(out), "--exchange", exchange]
    check_grow_and_shrink(framework, command, out, "one machine")


@pytest.mark.skipif(NO_CLUSTER is not None, reason=f"no multi-host cluster here: {NO_CLUSTER}")
@pytest.mark.parametrize("framework", list(MODULES))
def test_grow_and_shrink_across_hosts(framework: str, tmp_path: Path) -> None:
    hosts, out = tmp_path / "hosts", tmp_path / "log.json"
    with Cluster(2) as cluster:
        # The job starts on host2 and host1 joins: horovodrun runs on host1, and Horovod's elastic
        # driver takes a job whose only host is its own for a local one, whose interfaces it finds
        # by the address 127.0.0.1, which --network-interface eth0 rules out.
        names = [cluster.hosts[1].name, cluster.hosts[0].name]
        command = cluster.elastic_horovodrun_command(discovery_script(tmp_path, hosts, names[0]), [
            "--gloo", sys.executable, "-m", MODULES[framework], "--hosts-file", str(hosts), "--out", str(out),
            "--hosts", *names,
        ])
        check_grow_and_shrink(framework, command, out, "two hosts")


def check_grow_and_shrink(framework: str, command: list[str], out: Path, where: str) -> None:
    """Runs an elastic training script's ``command`` and checks its log: world sizes 1, 2, 1, the
    same parameters on every rank after every step, no step lost or repeated, the loss falling."""
    command, stdout, stderr, problem = run_until(command, timeout=120)
    assert problem is None and out.exists(), f"{' '.join(command)} {problem}:\n{(stdout + stderr)[-6000:]}"
    run = json.loads(out.read_text())
    log = run["log"]
    sizes = [entry["size"] for entry in log]
    phases = [size for index, size in enumerate(sizes) if index == 0 or size != sizes[index - 1]]
    assert phases == [1, 2, 1], sizes
    assert sizes.count(2) >= STEPS_PER_PHASE, sizes
    assert all(entry["identical"] for entry in log), "ranks held different parameters after a step"
    assert [entry["step"] for entry in log] == list(range(len(log))), "a step was lost or repeated"
    losses = [entry["loss"] for entry in log]
    assert sum(losses[-3:]) < 0.5 * sum(losses[:3]), losses
    # Seconds from asking for a new world size to the first step in it (shown with pytest -s).
    for asked, size in zip(run["asked"], (2, 1)):
        first = next(entry["time"] for entry in log if entry["time"] > asked and entry["size"] == size)
        print(f"{framework}, {where}: reset to {size} worker(s) after {first - asked:.1f} s")


@pytest.mark.parametrize("framework", list(EXAMPLES))
def test_elastic_example_runs(framework: str, tmp_path: Path) -> None:
    # The README's elastic examples, on one worker for two epochs (the resets are the tests above's).
    command = [*elastic_horovodrun(tmp_path, tmp_path / "hosts"), EXAMPLES[framework], "--epochs", "2"]
    command, stdout, stderr, problem = run_until(command, timeout=120)
    assert problem is None, f"{' '.join(command)} {problem}:\n{(stdout + stderr)[-6000:]}"
    assert "epoch 1: 1 worker(s)" in stdout, stdout[-3000:]
