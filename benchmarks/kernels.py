"""Kernel suite: sparsify time beside one read pass, the plain-torch fit and torch.topk.

Every method runs on the same tensor, interleaved, and the median of the repetitions is kept, so
the ratios are side by side in one run (timings on a shared 2-core machine are noisy).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch

import horovod_distq
from benchmarks import plots
from benchmarks.baselines import torch_normal_fit, torch_topk
from examples.common import progress
from horovod_distq.torch import sparsify

SIZES = (1 << 20, 1 << 24, 1 << 26)
RATIOS = (0.01, 0.001)
HELP = "sparsify vs x.sum(), plain-torch fit, torch.topk"  # its line in ``--help``


def gradient_like(n: int) -> torch.Tensor:
    """Heavy-tailed values (Student-t, 4 dof) at a gradient's scale."""
    values = np.random.default_rng(0).standard_t(4, size=n).astype(np.float32) * 1e-3
    return torch.from_numpy(values)


def methods(x: torch.Tensor, ratio: float) -> dict[str, Callable[[], object]]:
    table: dict[str, Callable[[], object]] = {
        "read pass (x.sum)": lambda: x.sum(),
        "plain-torch normal fit": lambda: torch_normal_fit(x, ratio),
        "torch.topk": lambda: torch_topk(x, ratio),
    }
    for family in horovod_distq.FAMILIES:
        if family != "auto":
            table[f"distq {family}"] = lambda family=family: sparsify(x, ratio, family, stages=1)
    table["distq gpareto x3 stages"] = lambda: sparsify(x, ratio, "gpareto", stages=3)
    table["distq auto (3 stages)"] = lambda: sparsify(x, ratio, "auto")
    return table


def run(sizes: tuple[int, ...] = SIZES, ratios: tuple[float, ...] = RATIOS, repetitions: int = 9) -> list[dict]:
    """Times every method; returns one record per (n, ratio, method)."""
    records = []
    for n in progress(sizes, "kernels: sizes"):
        x = gradient_like(n)
        for ratio in ratios:
            table = methods(x, ratio)
            times: dict[str, list[float]] = {name: [] for name in table}
            # topk at 2^26 takes about a second: fewer repetitions there keep the suite short.
            slow_repetitions = max(3, repetitions // 3) if n >= 1 << 26 else repetitions
            for repetition in range(repetitions + 1):
                for name, fn in table.items():
                    if name == "torch.topk" and repetition > slow_repetitions:
                        continue
                    start = time.perf_counter()
                    result = fn()
                    if repetition > 0:  # the first round warms caches and thread pools
                        times[name].append(time.perf_counter() - start)
                    if name.startswith("distq") and repetition == 0:
                        selected = result.indices.numel()
                        times.setdefault(f"{name}:selected", []).append(selected)
            floor = float(np.median(times["read pass (x.sum)"]))
            for name in table:
                median = float(np.median(times[name]))
                record = {"n": n, "ratio": ratio, "method": name, "median_ms": median * 1e3,
                          "x_read_pass": median / floor, "repetitions": len(times[name])}
                if f"{name}:selected" in times:
                    record["selected"] = int(times[f"{name}:selected"][0])
                records.append(record)
    return records


def report(records: list[dict]) -> str:
    lines = [f"{'n':>10} {'ratio':>6} {'method':<24} {'median ms':>10} {'x read':>8} {'vs topk':>8} "
             f"{'kept/target':>11}"]
    for record in records:
        topk = next(r for r in records if r["n"] == record["n"] and r["ratio"] == record["ratio"]
                    and r["method"] == "torch.topk")
        kept = record.get("selected")
        target = f"{kept / (record['ratio'] * record['n']):.2f}" if kept is not None else "-"
        lines.append(f"{record['n']:>10} {record['ratio']:>6} {record['method']:<24} {record['median_ms']:>10.2f} "
                     f"{record['x_read_pass']:>8.2f} {topk['median_ms'] / record['median_ms']:>8.1f} {target:>11}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m benchmarks kernels``."""
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--ratios", type=float, nargs="+", default=list(RATIOS))
    parser.add_argument("--repetitions", type=int, default=9)


def command(args: argparse.Namespace) -> list[dict]:
    """``python -m benchmarks kernels``: times every method, prints the table, draws ``kernels.png``;
    returns the records for ``kernels.json``."""
    records = run(tuple(args.sizes), tuple(args.ratios), args.repetitions)
    print(report(records))
    plots.kernels(records, args.out / "kernels.png")
    return records
