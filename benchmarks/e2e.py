"""End-to-end suite: 2 workers on a loopback shaped to a bandwidth, per method, under Horovod and under DDP.

The suite creates its own network namespace (``ip netns add``), brings its loopback up with a
9000-byte MTU and shapes it with a token-bucket filter (``tc ... tbf rate R``), then runs
``horovodrun -np 2 -H localhost:2`` (Horovod's methods) and ``torchrun --nproc_per_node 2`` (DDP's,
named ``ddp-*``) inside it: all traffic stays on 127.0.0.1 of that namespace.
It needs root and iproute2, and says so when it lacks them. The namespace is removed afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from examples.common import progress

BANDWIDTHS = ("100mbit", "1gbit")
MODELS = ("digits_cnn", "wide_mlp")
ROOT = Path(__file__).resolve().parents[1]


class NamespaceUnavailable(RuntimeError):
    """The machine does not let this process create a shaped network namespace."""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@contextlib.contextmanager
def shaped_namespace(rate: str) -> Iterator[str]:
    """A fresh network namespace whose loopback is limited to ``rate`` (tc syntax, e.g. 100mbit)."""
    if os.geteuid() != 0:
        raise NamespaceUnavailable("the e2e suite must run as root to create a network namespace (ip netns add)")
    if shutil.which("ip") is None or shutil.which("tc") is None:
        raise NamespaceUnavailable("the e2e suite needs iproute2 (ip, tc): apt-get install iproute2")
    name = f"distq-{uuid.uuid4().hex[:8]}"
    try:
        _ip("netns", "add", name)
    except subprocess.CalledProcessError as error:
        raise NamespaceUnavailable(f"cannot create a network namespace: {error.stderr.strip()}") from error
    try:
        _ip("-n", name, "link", "set", "lo", "mtu", "9000", "up")
        subprocess.run(["tc", "-n", name, "qdisc", "add", "dev", "lo", "root", "tbf", "rate", rate,
                        "burst", "256kb", "latency", "100ms"], check=True, capture_output=True, text=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


# A DDP launch that dies of a signal, or outlives DDP_LAUNCH_SECONDS, is run again, up to
# DDP_LAUNCHES times; each record counts the launches it took, and a method that failed them all
# gets a record saying so. torch's Gloo aborted a worker (``terminate called without an active
# exception``) in some launches of this suite with PowerSGD's hook, within the first steps.
DDP_LAUNCHES = 3
DDP_LAUNCH_SECONDS = 600


class LaunchFailed(RuntimeError):
    """A launch ended because a worker died of a signal, or because it ran out of time."""


def run_model(namespace: str, engine: str, model: str, methods: list[str], steps: int, ratio: float,
              timeout: float) -> list[dict]:
    """Runs one engine's ``methods`` on ``model`` with 2 workers inside ``namespace``: Horovod's in
    one ``horovodrun`` (Gloo), DDP's one ``torchrun`` (Gloo) each."""
    if engine == "horovod":
        launcher = [str(Path(sys.executable).with_name("horovodrun")), "-np", "2", "-H", "localhost:2", "--gloo",
                    sys.executable, "-m", "benchmarks.e2e_worker"]
        return _launch(namespace, launcher, [model, steps, ratio, *methods], timeout)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
                "benchmarks.ddp_worker"]
    records = []
    for method in methods:
        for launch in range(1, DDP_LAUNCHES + 1):
            try:
                results = _launch(namespace, launcher, [model, steps, ratio, method], min(timeout, DDP_LAUNCH_SECONDS))
            except LaunchFailed as error:
                if launch == DDP_LAUNCHES:
                    records.append({"engine": engine, "method": method, "model": model, "launches": launch,
                                    "failed": str(error).splitlines()[0]})
                continue
            records += [{**r, "launches": launch} for r in results]
            break
    return records


def _launch(namespace: str, launcher: list[str], arguments: list, timeout: float) -> list[dict]:
    model, steps, ratio, *methods = arguments
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "results.json"
        command = ["ip", "netns", "exec", namespace, *launcher, "--model", model, "--steps", str(steps),
                   "--ratio", str(ratio), "--out", str(out), "--methods", *methods]
        # The workers import benchmarks.* and examples.*: from the repository root, whatever the caller's cwd.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               # torch's Gloo picks its interface from the hostname, which need not resolve inside the namespace.
               "GLOO_SOCKET_IFNAME": "lo"}
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, start_new_session=True)
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the launcher and every worker it started
            process.communicate()
            raise LaunchFailed(f"{' '.join(command)} ran out of its {timeout:g} s") from None
        if process.returncode != 0:
            error = LaunchFailed if "(SIGABRT)" in output else RuntimeError
            raise error(f"{' '.join(command)} failed:\n{output[-4000:]}")
        return json.loads(out.read_text())


def all_methods() -> list[str]:
    """Every method of both engines: Horovod's, then DDP's (named ``ddp-*``)."""
    from benchmarks import ddp_worker, e2e_worker

    return [*e2e_worker.METHODS, *ddp_worker.METHODS]


def run(bandwidths: tuple[str, ...] = BANDWIDTHS, models: tuple[str, ...] = MODELS, methods: list[str] | None = None,
        steps: int = 30, ratio: float = 0.01, timeout: float = 1200) -> list[dict]:
    """Runs every model at every bandwidth; one record per (bandwidth, model, method)."""
    methods = list(methods or all_methods())
    engines = {"horovod": [m for m in methods if not m.startswith("ddp-")],
               "ddp": [m for m in methods if m.startswith("ddp-")]}
    records = []
    for bandwidth in bandwidths:
        with shaped_namespace(bandwidth) as namespace:
            for model in progress(models, f"e2e at {bandwidth}"):
                for engine, chosen in engines.items():
                    if not chosen:
                        continue
                    for record in run_model(namespace, engine, model, chosen, steps, ratio, timeout):
                        records.append({"bandwidth": bandwidth, "ratio": ratio, **record})
    return records


def report(records: list[dict]) -> str:
    """One line per record; its step time relative to its own engine's dense and fp16 runs."""
    lines = [f"{'bandwidth':>9} {'model':<11} {'method':<15} {'step ms':>9} {'x dense':>8} {'x fp16':>7} "
             f"{'loss':>7} {'loss/dense':>10} {'bytes/step':>11}"]
    for r in records:
        if "failed" in r:
            lines.append(f"{r['bandwidth']:>9} {r['model']:<11} {r['method']:<15} failed in {r['launches']} launches")
            continue
        prefix = "ddp-" if r.get("engine") == "ddp" else ""
        same = {x["method"]: x for x in records
                if x["bandwidth"] == r["bandwidth"] and x["model"] == r["model"] and "failed" not in x}
        dense, fp16 = same.get(prefix + "dense"), same.get(prefix + "fp16")
        vs_dense = f"{r['step_ms_median'] / dense['step_ms_median']:.2f}" if dense else "-"
        vs_fp16 = f"{r['step_ms_median'] / fp16['step_ms_median']:.2f}" if fp16 else "-"
        loss_vs_dense = f"{r['final_loss'] / dense['final_loss']:.3f}" if dense else "-"
        lines.append(f"{r['bandwidth']:>9} {r['model']:<11} {r['method']:<15} {r['step_ms_median']:>9.1f} "
                     f"{vs_dense:>8} {vs_fp16:>7} {r['final_loss']:>7.4f} {loss_vs_dense:>10} "
                     f"{r['bytes_sent_last_step']:>11}")
    return "\n".join(lines)
