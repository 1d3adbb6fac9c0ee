"""Runs a script, or a pytest file on every rank, under ``horovodrun -np 2`` on this machine, with Gloo or MPI,
across the hosts of a cluster (tests/cluster/hosts.py), or under ``torchrun --nproc_per_node 2``."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.cluster.hosts import Cluster

ROOT = Path(__file__).resolve().parents[1]
HOROVODRUN = Path(sys.executable).with_name("horovodrun")
RANKS = 2
# Open MPI's daemons notice a host gone silent (off the network: no FIN, no RST) by TCP keepalives on
# their own connections: after 10 s idle, a probe every 5 s, 3 missed, about 25 s in all, against 8
# minutes by default; the job then ends with an error. README, "Failure behaviour".
MPI_KEEPALIVE = "--mca oob_tcp_keepalive_time 10 --mca oob_tcp_keepalive_intvl 5 --mca oob_tcp_keepalive_probes 3"
CONTROLLERS = {
    "gloo": ["--gloo"],
    # Open MPI refuses root without the flag; CI runs as root on 2 cores.
    "mpi": ["--mpi", f"--mpi-args=--allow-run-as-root --oversubscribe {MPI_KEEPALIVE}"],
}
# What horovodrun puts before each piece of a worker's output: ``[1]<stdout>:`` before each line
# under Gloo; ``[1,1]<stdout>:`` (job, rank) under Open MPI's --tag-output, before each piece it
# reads, which may be part of a line, so that two ranks' pieces can share a line.
OUTPUT_TAG = re.compile(r"\[(?:\d+,)?(\d+)\]<(stdout|stderr)>:")
# What torchrun --tee puts before each piece of a worker's output (a line, or less): ``[default1]:``.
TORCHRUN_TAG = re.compile(r"\[default(\d+)\]:")
COLOUR = re.compile(r"\x1b\[[0-9;]*m")
# pytest's last line, e.g. ``3 failed, 9 passed, 1 warning in 12.34s`` (framed by '=' without -q).
PYTEST_SUMMARY = re.compile(r"^=* ?(?P<counts>no tests ran|\d+ \w+(?:, \d+ \w+)*) in \d+(?:\.\d+)?s\b")


def horovodrun(script: str | Path, controller: str, *args: str, timeout: float = 300) -> str:
    """Runs ``script`` on 2 local workers; returns the combined output, fails the test on a non-zero exit."""
    command, stdout, stderr, problem = _launch([sys.executable, str(script), *args], controller, timeout)
    output = stdout + stderr
    assert problem is None, f"{' '.join(command)} {problem}:\n{output[-6000:]}"
    return output


def pytest_on_every_rank(check: str | Path, controller: str, *, passed: int, timeout: float = 300,
                         cluster: Cluster | None = None, select: str | None = None) -> str:
    """Runs the pytest file ``check`` on every rank (as Horovod's own CI runs its tests); returns the output.

    Args:
        check: the pytest file, run by every rank.
        controller: ``gloo`` or ``mpi``.
        passed: how many tests each rank must report passed, with no failure or error: a test that
            stops being collected fails here too.
        timeout: seconds before the whole job is killed and the calling test fails.
        cluster: run one rank on each of its hosts, instead of 2 workers on this machine.
        select: pytest's ``-k`` expression, to run part of ``check``.

    Returns:
        horovodrun's standard output and error.
    """
    command = _pytest_command(check, select)
    if cluster is None:
        command, stdout, stderr, problem = _launch(command, controller, timeout)
        ranks = RANKS
    else:
        command, stdout, stderr, problem = run_until(
            cluster.horovodrun_command([*CONTROLLERS[controller], *command]), timeout)
        ranks = len(cluster.hosts)
    _check_every_rank_passed(check, command, ranks_stdout(stdout), stderr, problem, passed, ranks)
    return stdout + stderr


def pytest_under_torchrun(check: str | Path, *, passed: int, timeout: float = 300) -> str:
    """As :func:`pytest_on_every_rank`, under ``torchrun --standalone --nproc_per_node 2`` (torch.distributed)."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={RANKS}", "--tee=1",
                "-m"]
    command, stdout, stderr, problem = run_until([*launcher, *_pytest_command(check)[2:]], timeout)
    parts = TORCHRUN_TAG.split(stdout)  # text before the first tag, then (rank, text) for each tag
    streams: defaultdict[int, str] = defaultdict(str)
    for rank, text in zip(parts[1::2], parts[2::2]):
        streams[int(rank)] += text
    _check_every_rank_passed(check, command, dict(streams), stderr, problem, passed, RANKS)
    return stdout + stderr


def _pytest_command(check: str | Path, select: str | None = None) -> list[str]:
    check = Path(check).resolve().relative_to(ROOT)
    selection = ["-k", select] if select else []
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--color=no", *selection, str(check)]


def _check_every_rank_passed(check: str | Path, command: list[str], stdout_by_rank: dict[int, str], stderr: str,
                             problem: str | None, passed: int, ranks: int) -> None:
    streams = {rank: COLOUR.sub("", text) for rank, text in stdout_by_rank.items()}
    report = "".join(f"\n--- rank {rank}, pytest's report ---\n{_excerpt(_from_failures(text))}"
                     for rank, text in sorted(streams.items()))
    report += f"\n--- the launcher's standard error, the end ---\n{stderr[-1500:]}"
    assert problem is None, f"{' '.join(command)} {problem}:{report}"
    summaries = [
        (rank, summary["counts"])
        for rank, text in sorted(streams.items())
        for line in text.splitlines()
        if (summary := PYTEST_SUMMARY.match(line.strip()))
    ]
    assert sorted(rank for rank, _ in summaries) == list(range(ranks)), (
        f"{check}: expected one pytest summary from each of {ranks} ranks, found {summaries}:{report}"
    )
    for rank, counts in summaries:
        outcomes = Counter({word: int(number) for number, word in re.findall(r"(\d+) (\w+)", counts)})
        bad = {word: outcomes[word] for word in ("failed", "error", "errors") if outcomes[word]}
        assert outcomes["passed"] == passed and not bad, (
            f"{check}: rank {rank} reported '{counts}', expected {passed} passed:{report}"
        )


def ranks_stdout(output: str) -> dict[int, str]:
    """Each rank's standard output, put back together from horovodrun's tagged pieces."""
    parts = OUTPUT_TAG.split(output)  # text before the first tag, then (rank, stream, text) for each tag
    streams: defaultdict[int, str] = defaultdict(str)
    for rank, stream, text in zip(parts[1::3], parts[2::3], parts[3::3]):
        if stream == "stdout":
            streams[int(rank)] += text
    return dict(streams)


def _from_failures(report: str) -> str:
    """pytest's report from its first failure or error on, where there is one."""
    first = re.search(r"^=+ (?:ERRORS|FAILURES) =+\s*$", report, re.MULTILINE)
    return report[first.start():] if first else report


def _excerpt(text: str, head: int = 3000, tail: int = 2000) -> str:
    if len(text) <= head + tail:
        return text
    return f"{text[:head]}\n[... {len(text) - head - tail} characters ...]\n{text[-tail:]}"


def _launch(command: list[str], controller: str, timeout: float) -> tuple[list[str], str, str, str | None]:
    """Runs ``command`` on 2 local workers; returns horovodrun's command line, stdout, stderr and
    what went wrong (None when it exited 0).

    On timeout, kills horovodrun's whole process group (mpirun and its workers with it; Gloo's
    workers end with horovodrun) so that no hung worker outlives the test.
    """
    return run_until(
        [str(HOROVODRUN), "-np", str(RANKS), "-H", f"localhost:{RANKS}", *CONTROLLERS[controller], *command], timeout
    )


def run_until(command: list[str], timeout: float) -> tuple[list[str], str, str, str | None]:
    """Runs a ``horovodrun`` command line from the checkout; returns it, stdout, stderr and what
    went wrong (None when it exited 0), killing its whole process group on timeout."""
    # Unbuffered, so that what the workers printed comes back even when they are killed.
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        try:  # Gloo's workers, in sessions of their own, end within seconds of horovodrun
            stdout, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            stdout, stderr = "", "(no output: the workers kept it open)"
        return command, stdout, stderr, f"timed out after {timeout:g} s"
    return command, stdout, stderr, None if process.returncode == 0 else f"exited {process.returncode}"
