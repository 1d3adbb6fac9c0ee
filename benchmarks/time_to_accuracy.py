"""Time to accuracy: the training time until the validation loss first reaches dense's final one,
per method, with a worker on each of P hosts whose links are shaped like NICs.

For each cluster size and bandwidth the suite builds the e2e suite's cluster (benchmarks/e2e.py:
a network namespace per host, each direction of each link limited by a token bucket) and runs the
convergence suite's worker (benchmarks/convergence_worker.py) in it: dense first, under one
multi-host ``horovodrun --gloo``, for ``--steps`` steps; its final validation loss is the target.
Every other method then trains from the same weights on the same batches until an evaluation
(every ``--eval-every`` steps) finds its validation loss at or below the target, or for at most
``--max-steps`` steps: Horovod's methods in one ``horovodrun``, PowerSGD's under ``torchrun`` on
every host. A method's time to accuracy is rank 0's training time (its steps, not the
evaluations) up to that evaluation. It needs root, iproute2 and openssh-server, as the e2e suite.
"""

from __future__ import annotations

import argparse

from benchmarks import SuiteUnavailable, plots
from benchmarks.convergence_worker import DDP_METHODS, HOROVOD_METHODS, LEARNING_RATES, OPTIMIZER_BOUND, OPTIMIZERS
from benchmarks.e2e import LaunchFailed, ddp_commands, horovod_commands, launch, launch_again
from examples.common import progress
from tests.cluster.hosts import Cluster, ClusterUnavailable

BANDWIDTHS = ("100mbit", "1gbit")
HOSTS = (2, 4)
METHODS = ("dense", "fp16", "topk", "distq", "distq-momentum", "powersgd-2")
WORKER = "benchmarks.convergence_worker"
HELP = "P hosts with shaped links: training time until dense's final validation loss, per method"


def run(hosts: tuple[int, ...] = HOSTS, bandwidths: tuple[str, ...] = BANDWIDTHS, model: str = "digits_cnn",
        optimizer: str = "sgd", methods: tuple[str, ...] = METHODS, steps: int = 300, max_steps: int = 600,
        ratio: float = 0.01, seed: int = 0, eval_every: int = 10, timeout: float = 1800) -> list[dict]:
    """Every method on clusters of every size in ``hosts`` at every bandwidth; one record per
    (hosts, bandwidth, method), with the target and when the method reached it."""
    if "dense" not in methods:
        raise ValueError("the target is dense's final validation loss: the methods must include dense")
    unbound = [m for m in methods if OPTIMIZER_BOUND.get(m, optimizer) != optimizer]
    if unbound:
        raise ValueError(f"{unbound} take another optimizer's state over than {optimizer}'s")
    settings = ["--model", model, "--optimizer", optimizer, "--seed", str(seed), "--ratio", str(ratio),
                "--eval-every", str(eval_every)]
    records = []
    for count in hosts:
        for bandwidth in progress(bandwidths, f"time to accuracy on {count} hosts"):
            with Cluster(count, rate=bandwidth) as cluster:
                for record in _methods(cluster, settings, methods, steps, max_steps, timeout):
                    records.append({"hosts": count, "bandwidth": bandwidth, **record})
    return records


def _methods(cluster: Cluster, settings: list[str], methods: tuple[str, ...], steps: int, max_steps: int,
             timeout: float) -> list[dict]:
    """Dense for ``steps`` steps, then every other method until it reaches dense's final loss."""
    horovod = horovod_commands(cluster, WORKER)
    dense = launch(cluster, horovod, [*settings, "--engine", "horovod", "--steps", str(steps), "--methods", "dense"],
                   timeout)
    target = dense[0]["final_loss"]
    until = [*settings, "--steps", str(max_steps), "--stop-at-loss", repr(target)]
    others = [m for m in methods if m in HOROVOD_METHODS and m != "dense"]
    records = dense + (launch(cluster, horovod, [*until, "--engine", "horovod", "--methods", *others], timeout)
                       if others else [])
    for method in (m for m in methods if m in DDP_METHODS):
        try:
            results, _ = launch_again(cluster, ddp_commands(cluster, WORKER),
                                      [*until, "--engine", "ddp", "--methods", method], timeout)
        except LaunchFailed as error:
            results = [{"method": method, "failed": str(error).splitlines()[0]}]
        records += results
    return [{**r, **reached(r, target)} for r in records]


def reached(record: dict, target: float) -> dict:
    """The target and the first evaluation of ``record``'s curve at or below it: its step and the
    training seconds up to it (None for both where the run never got there)."""
    hit = next((point for point in record.get("curve", []) if point["loss"] <= target), None)
    return {"target_loss": target, "steps_to_target": hit and hit["step"], "seconds_to_target": hit and hit["seconds"]}


def report(records: list[dict]) -> str:
    """One line per record: steps and seconds to dense's final loss, against dense's own seconds,
    the mean step time and the bytes per step against dense's."""
    lines = [f"{'P':>2} {'bandwidth':>9} {'method':<15}{'steps':>7}{'seconds':>9}{'x dense':>8}{'ms/step':>9}"
             f"{'last loss':>10}{'bytes/step':>12}{'x dense':>8}"]
    for r in records:
        where = f"{r['hosts']:>2} {r['bandwidth']:>9} {r['method']:<15}"
        if "failed" in r:
            lines.append(f"{where} failed: {r['failed']}")
            continue
        dense = next(d for d in records if d["method"] == "dense" and (d["hosts"], d["bandwidth"]) ==
                     (r["hosts"], r["bandwidth"]))
        last = r["curve"][-1]
        if r["seconds_to_target"] is None:
            steps, seconds, ratio = f">{last['step']}", f">{last['seconds']:.1f}", "-"
        else:
            steps, seconds = str(r["steps_to_target"]), f"{r['seconds_to_target']:.1f}"
            ratio = f"{r['seconds_to_target'] / dense['seconds_to_target']:.2f}"
        lines.append(f"{where}{steps:>7}{seconds:>9}{ratio:>8}{1000 * last['seconds'] / last['step']:>9.1f}"
                     f"{last['loss']:>10.4f}{r['bytes_per_step']:>12,.0f}"
                     f"{r['bytes_per_step'] / r['dense_bytes_per_step']:>8.4f}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m benchmarks time_to_accuracy``."""
    parser.add_argument("--hosts", type=int, nargs="+", default=list(HOSTS), help="cluster sizes P")
    parser.add_argument("--bandwidths", nargs="+", default=list(BANDWIDTHS))
    parser.add_argument("--model", choices=sorted(LEARNING_RATES), default="digits_cnn")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=(*HOROVOD_METHODS, *DDP_METHODS))
    parser.add_argument("--steps", type=int, default=300, help="dense's steps: its final loss is the target")
    parser.add_argument("--max-steps", type=int, default=600, help="the other methods' steps at most")
    parser.add_argument("--ratio", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=10)


def command(args: argparse.Namespace) -> list[dict]:
    """``python -m benchmarks time_to_accuracy``: runs the clusters, prints the table, draws
    ``time_to_accuracy.png``; returns the records. Without root or network namespaces it raises
    :class:`SuiteUnavailable`."""
    try:
        records = run(tuple(args.hosts), tuple(args.bandwidths), args.model, args.optimizer, tuple(args.methods),
                      args.steps, args.max_steps, args.ratio, args.seed, args.eval_every)
    except ClusterUnavailable as error:
        raise SuiteUnavailable(str(error)) from error
    print(report(records))
    plots.time_to_accuracy(records, args.out / "time_to_accuracy.png")
    return records
