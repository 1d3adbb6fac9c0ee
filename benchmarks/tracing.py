"""The tracing suite: what the first step of a Keras 3 model with many gradient tensors costs
(``tf.function`` tracing plus the step), and its steady step time, per way of reducing.

Each method runs in its own ``horovodrun -np 2 -H localhost:2 --gloo`` (benchmarks/tracing_worker.py),
so no method's trace warms another's caches; TensorFlow's warnings in its output are counted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAUNCH_SECONDS = 1200
# TensorFlow's C++ warnings (glog's "W<date>" lines) and the one Horovod's tf.cond per gradient brings.
WARNING = re.compile(r"^(\[\d+\]<stderr>:)?W\d{4} ", re.MULTILINE)
LOOP_OPTIMIZER = "loop_optimizer.cc"
# fit-*: model.fit through horovod_distq.tensorflow.keras.DistributedOptimizer (one collective
# round a step); tape-*: a tf.function loop through Horovod's tape (a tf.cond and collectives per gradient).
# Here, not in the worker, so that the command line gets them without importing TensorFlow.
METHODS = ("fit-dense", "fit-fp16", "fit-distq", "tape-dense", "tape-distq")
HELP = "Keras 3 MobileNetV2, 2 workers: first (traced) step and steady step"  # its line in ``--help``


def run(methods: tuple[str, ...] = METHODS, steps: int = 20, ratio: float = 0.01) -> list[dict]:
    """Runs every method once; returns their records (rank 0's timings, the launch's warning counts)."""
    return [_launch(method, steps, ratio) for method in methods]


def _launch(method: str, steps: int, ratio: float) -> dict:
    horovodrun = str(Path(sys.executable).with_name("horovodrun"))
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "record.json"
        command = [horovodrun, "-np", "2", "-H", "localhost:2", "--gloo", sys.executable, "-m",
                   "benchmarks.tracing_worker", "--method", method, "--steps", str(steps), "--ratio", str(ratio),
                   "--out", str(out)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        print(f"tracing: {method} ...", file=sys.stderr, flush=True)
        process = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=LAUNCH_SECONDS)
        output = process.stdout + process.stderr
        if process.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{output[-4000:]}")
        record = json.loads(out.read_text())
    warnings = {"tf_warnings": len(WARNING.findall(output)), "loop_optimizer_warnings": output.count(LOOP_OPTIMIZER)}
    return {**record, **warnings}


def report(records: list[dict]) -> str:
    """A table of the records, each method's first step also as a multiple of its engine's dense one."""
    dense = {r["method"].split("-")[0]: r["first_step_s"] for r in records if r["method"].endswith("-dense")}
    lines = [f"{'method':<12}{'tensors':>8}{'first step s':>14}{'vs dense':>10}{'steady ms':>11}{'TF warnings':>13}"]
    for r in records:
        base = dense.get(r["method"].split("-")[0])
        share = f"{r['first_step_s'] / base:.2f}x" if base else "-"
        lines.append(f"{r['method']:<12}{r['gradient_tensors']:>8}{r['first_step_s']:>14.1f}{share:>10}"
                     f"{r['steady_step_ms']:>11.1f}{r['tf_warnings']:>13}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m benchmarks tracing``."""
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--ratio", type=float, default=0.01)


def command(args: argparse.Namespace) -> list[dict]:
    """``python -m benchmarks tracing``: runs every method, prints the table, draws ``tracing.png``;
    returns the records for ``tracing.json``."""
    # Imported here, not at the top: tracing_worker imports this module for METHODS, and its
    # workers need no matplotlib.
    from benchmarks import plots

    records = run(tuple(args.methods), args.steps, args.ratio)
    print(report(records))
    plots.tracing(records, args.out / "tracing.png")
    return records
