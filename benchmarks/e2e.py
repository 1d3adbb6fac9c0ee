"""End-to-end suite: P hosts with one worker each, every host's link shaped like a NIC, per method, under
Horovod and under DDP.

For each number of hosts and bandwidth the suite builds a cluster with ``tests/cluster/hosts.py``:
each host a network namespace with its own ``eth0`` on a bridge, each direction of each link
limited to the bandwidth by a token bucket (``tc ... tbf rate R burst 256kb latency 100ms``), and
sshd on every host. Horovod's methods run in one multi-host ``horovodrun -H host1:1,host2:1,...
--gloo`` started on the first host; DDP's (named ``ddp-*``) run ``torchrun --nnodes P`` on every
host (Gloo). Every worker's traffic crosses its own host's shaped link. It needs root, iproute2
and openssh-server, and says so when it lacks them; the cluster is removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks import SuiteUnavailable, plots
from examples.common import progress
from tests.cluster.hosts import INTERFACE, Cluster, ClusterUnavailable

BANDWIDTHS = ("100mbit", "1gbit", "10gbit")
HOSTS = (2,)
MODELS = ("digits_cnn", "wide_mlp")
ROOT = Path(__file__).resolve().parents[1]
TORCHRUN_PORT = 29400
HELP = "a worker on each of P hosts with shaped links: step time and loss per method"  # its line in ``--help``

# A DDP launch that dies of a signal, or outlives DDP_LAUNCH_SECONDS, is run again, up to
# DDP_LAUNCHES times; each record counts the launches it took, and a method that failed them all
# gets a record saying so. torch's Gloo aborted a worker (``terminate called without an active
# exception``) in some launches of this suite with PowerSGD's hook, within the first steps.
DDP_LAUNCHES = 3
DDP_LAUNCH_SECONDS = 600


class LaunchFailed(RuntimeError):
    """A launch ended because a worker died of a signal, or because it ran out of time."""


def run_model(cluster: Cluster, engine: str, model: str, methods: list[str], steps: int, ratio: float,
              timeout: float) -> list[dict]:
    """Runs one engine's ``methods`` on ``model`` with a worker on every host of ``cluster``: Horovod's in
    one ``horovodrun`` (Gloo), DDP's one ``torchrun`` per host each."""
    def worker(chosen: list[str]) -> list[str]:
        return ["--model", model, "--steps", str(steps), "--ratio", str(ratio), "--methods", *chosen]

    if engine == "horovod":
        return launch(cluster, horovod_commands(cluster, "benchmarks.e2e_worker"), worker(methods), timeout)
    records = []
    for method in methods:
        try:
            results, launches = launch_again(cluster, ddp_commands(cluster, "benchmarks.ddp_worker"), worker([method]),
                                             min(timeout, DDP_LAUNCH_SECONDS))
        except LaunchFailed as error:
            records.append({"engine": engine, "method": method, "model": model, "launches": DDP_LAUNCHES,
                            "failed": str(error).splitlines()[0]})
            continue
        records += [{**r, "launches": launches} for r in results]
    return records


def horovod_commands(cluster: Cluster, module: str) -> Callable[[list[str]], list[list[str]]]:
    """The command lines that run ``python -m module WORKER...`` under one multi-host ``horovodrun --gloo``."""
    def commands(worker: list[str]) -> list[list[str]]:
        return [cluster.horovodrun_command(["--gloo", sys.executable, "-m", module, *worker])]
    return commands


def ddp_commands(cluster: Cluster, module: str) -> Callable[[list[str]], list[list[str]]]:
    """The command lines that run ``python -m module WORKER...`` under ``torchrun``, one per host."""
    def commands(worker: list[str]) -> list[list[str]]:
        rendezvous = [f"--nnodes={len(cluster.hosts)}", "--nproc-per-node=1",
                      f"--master-addr={cluster.hosts[0].address}", f"--master-port={TORCHRUN_PORT}"]
        return [[*host.exec_prefix(), sys.executable, "-m", "torch.distributed.run", *rendezvous,
                 f"--node-rank={rank}", "-m", module, *worker]
                for rank, host in enumerate(cluster.hosts)]
    return commands


def launch_again(cluster: Cluster, commands: Callable[[list[str]], list[list[str]]], worker: list[str],
                 timeout: float) -> tuple[list[dict], int]:
    """:func:`launch`, again after a :class:`LaunchFailed`, up to ``DDP_LAUNCHES`` launches; returns
    the records and the launches it took. Raises the last :class:`LaunchFailed`."""
    return relaunched(lambda: launch(cluster, commands, worker, timeout), LaunchFailed)


def relaunched(run: Callable[[], list[dict]], failure: type[Exception]) -> tuple[list[dict], int]:
    """``run()``, called again after a ``failure``, up to ``DDP_LAUNCHES`` calls in all; returns its
    result and the calls it took. Raises the last ``failure``."""
    for number in range(1, DDP_LAUNCHES):
        try:
            return run(), number
        except failure:
            pass
    return run(), DDP_LAUNCHES


def launch(cluster: Cluster, commands: Callable[[list[str]], list[list[str]]], worker: list[str],
           timeout: float) -> list[dict]:
    """Starts ``commands(worker + ["--out", FILE])`` (one command line per launcher) and waits for
    all of them; returns the records rank 0 wrote to FILE. Kills every process of the cluster on
    failure or timeout."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "results.json"
        # torch's Gloo picks its interface from the hostname unless told; Horovod's is told by horovodrun.
        launchers = [cluster.popen(command, {"GLOO_SOCKET_IFNAME": INTERFACE})
                     for command in commands([*worker, "--out", str(out)])]
        deadline = time.monotonic() + timeout
        outputs = []
        try:
            for launcher in launchers:
                outputs.append(launcher.communicate(timeout=max(1.0, deadline - time.monotonic()))[0])
        except subprocess.TimeoutExpired:
            raise LaunchFailed(f"{' '.join(launchers[0].args)} ran out of its {timeout:g} s") from None
        finally:
            for launcher in launchers:
                cluster.stop(launcher)
        output = "\n".join(outputs)
        if any(launcher.returncode != 0 for launcher in launchers):
            error = LaunchFailed if "(SIGABRT)" in output else RuntimeError
            raise error(f"{' '.join(launchers[0].args)} failed:\n{output[-4000:]}")
        return json.loads(out.read_text())


def all_methods() -> list[str]:
    """Every method of both engines: Horovod's, then DDP's (named ``ddp-*``)."""
    from benchmarks import ddp_worker, e2e_worker

    return [*e2e_worker.METHODS, *ddp_worker.METHODS]


def run(bandwidths: tuple[str, ...] = BANDWIDTHS, models: tuple[str, ...] = MODELS, methods: list[str] | None = None,
        steps: int = 30, ratio: float = 0.01, hosts: tuple[int, ...] = HOSTS, timeout: float = 1200) -> list[dict]:
    """Runs every model at every bandwidth on clusters of every size in ``hosts``; one record per
    (hosts, bandwidth, model, method)."""
    methods = list(methods or all_methods())
    engines = {"horovod": [m for m in methods if not m.startswith("ddp-")],
               "ddp": [m for m in methods if m.startswith("ddp-")]}
    records = []
    for count in hosts:
        for bandwidth in bandwidths:
            with Cluster(count, rate=bandwidth) as cluster:
                for model in progress(models, f"e2e on {count} hosts at {bandwidth}"):
                    for engine, chosen in engines.items():
                        if not chosen:
                            continue
                        for record in run_model(cluster, engine, model, chosen, steps, ratio, timeout):
                            records.append({"hosts": count, "bandwidth": bandwidth, "ratio": ratio, **record})
    return records


def report(records: list[dict]) -> str:
    """One line per record; its step time relative to its own engine's dense and fp16 runs on the
    same hosts and bandwidth, and split into compute (the same model's step with no communication,
    every worker stepping at once) and the rest (communication, and compression's own work)."""
    lines = [f"{'P':>2} {'bandwidth':>9} {'model':<11} {'method':<15} {'step ms':>9} {'compute':>8} {'comm':>8} "
             f"{'x dense':>8} {'x fp16':>7} {'loss/dense':>10} {'bytes/step':>11} {'NIC bytes/step':>14}"]
    for r in records:
        where = f"{r['hosts']:>2} {r['bandwidth']:>9} {r['model']:<11} {r['method']:<15}"
        if "failed" in r:
            lines.append(f"{where} failed in {r['launches']} launches")
            continue
        prefix = "ddp-" if r.get("engine") == "ddp" else ""
        same = {x["method"]: x for x in records if "failed" not in x and
                (x["hosts"], x["bandwidth"], x["model"]) == (r["hosts"], r["bandwidth"], r["model"])}
        dense, fp16 = same.get(prefix + "dense"), same.get(prefix + "fp16")
        vs_dense = f"{r['step_ms_median'] / dense['step_ms_median']:.2f}" if dense else "-"
        vs_fp16 = f"{r['step_ms_median'] / fp16['step_ms_median']:.2f}" if fp16 else "-"
        loss_vs_dense = f"{r['final_loss'] / dense['final_loss']:.3f}" if dense else "-"
        link = f"{r['link_bytes_per_step']:,.0f}" if r.get("link_bytes_per_step") is not None else "-"
        lines.append(f"{where} {r['step_ms_median']:>9.1f} {r['compute_ms_median']:>8.1f} "
                     f"{r['step_ms_median'] - r['compute_ms_median']:>8.1f} {vs_dense:>8} {vs_fp16:>7} "
                     f"{loss_vs_dense:>10} {r['bytes_sent_last_step']:>11,} {link:>14}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m benchmarks e2e``."""
    parser.add_argument("--hosts", type=int, nargs="+", default=list(HOSTS), help="cluster sizes P")
    parser.add_argument("--bandwidths", nargs="+", default=list(BANDWIDTHS))
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--methods", nargs="+", default=None,
                        help="Horovod methods and DDP methods (ddp-*); default: all of both")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--ratio", type=float, default=0.01)


def command(args: argparse.Namespace) -> list[dict]:
    """``python -m benchmarks e2e``: runs the clusters, prints the table, draws ``e2e.png``; returns the
    records for ``e2e.json``. Without root or network namespaces it raises :class:`SuiteUnavailable`."""
    try:
        records = run(tuple(args.bandwidths), tuple(args.models), args.methods, args.steps, args.ratio,
                      tuple(args.hosts))
    except ClusterUnavailable as error:
        raise SuiteUnavailable(str(error)) from error
    print(report(records))
    plots.e2e(records, args.out / "e2e.png")
    return records
