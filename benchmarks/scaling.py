"""The scaling suite: bytes on each rank's link per step against the number of ranks P, for dense
allreduce, DistQ always sparse (the allgather), DistQ ``exchange="auto"`` and DistQ's two-phase
exchange (``exchange="two_phase"``).

Two parts: the cost model of ``horovod_distq.exchange_cost`` over the e2e models' real tensor
sizes for P = 2 to 1024 (on paper), and measured runs of 2 to 8 processes on this machine
(``horovodrun -np P``, oversubscribed: step times are relative), each printing the bytes its
exchange moved.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import plots
from horovod_distq.exchange_cost import dense_link_bytes, sparse_is_cheaper, sparse_link_bytes, two_phase_link_bytes

ROOT = Path(__file__).resolve().parent.parent
MODEL_RANKS = (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
MEASURED_RANKS = (2, 3, 4, 6, 8)
RATIOS = (0.01, 0.1)
MIN_NUMEL = 1024  # DistQ's default
LAUNCH_SECONDS = 900
HELP = "bytes per step vs ranks: the cost model to 1024, runs of 2 to 8"  # its line in ``--help``


def tensor_sizes(model: str) -> list[int]:
    """The entries of each parameter of one of the e2e models."""
    from examples.torch_models import MODELS

    return [p.numel() for p in MODELS[model]().parameters()]


def modelled(models: tuple[str, ...], ratios: tuple[float, ...] = RATIOS,
             ranks: tuple[int, ...] = MODEL_RANKS) -> list[dict]:
    """Per model, ratio and P: link bytes per step by the cost model (float32, default encoding)."""
    records = []
    for model in models:
        sizes = tensor_sizes(model)
        for ratio in ratios:
            for p in ranks:
                records.append({"model": model, "ratio": ratio, "ranks": p, **_step_bytes(sizes, ratio, p)})
    return records


def _step_bytes(sizes: list[int], ratio: float, ranks: int) -> dict[str, float]:
    """One step's link bytes for tensors of ``sizes``: all dense, sparse where eligible (by allgather
    or the two-phase exchange), and auto's choice."""
    dense = [dense_link_bytes(n, ranks, "float32") for n in sizes]
    sparse = [sparse_link_bytes(n, ratio, ranks, "auto", "float32") if n >= MIN_NUMEL else d
              for n, d in zip(sizes, dense)]
    auto = [s if n >= MIN_NUMEL and sparse_is_cheaper(n, ratio, ranks, "auto", "float32") else d
            for n, s, d in zip(sizes, sparse, dense)]
    two_phase = [two_phase_link_bytes(n, ratio, ranks, "auto", "float32") if n >= MIN_NUMEL else d
                 for n, d in zip(sizes, dense)]
    return {"dense": sum(dense), "sparse": sum(sparse), "auto": sum(auto), "two_phase": sum(two_phase)}


def measured(model: str, ratios: tuple[float, ...] = RATIOS, ranks: tuple[int, ...] = MEASURED_RANKS,
             steps: int = 10) -> list[dict]:
    """One ``horovodrun -np P`` (Gloo, this machine) per P and ratio; the workers' records."""
    records = []
    for ratio in ratios:
        for p in ranks:
            print(f"scaling: {p} ranks, ratio {ratio} ...", file=sys.stderr, flush=True)
            records += _launch(model, ratio, p, steps)
    return records


def _launch(model: str, ratio: float, ranks: int, steps: int) -> list[dict]:
    horovodrun = str(Path(sys.executable).with_name("horovodrun"))
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "records.json"
        command = [horovodrun, "-np", str(ranks), "-H", f"localhost:{ranks}", "--gloo", sys.executable, "-m",
                   "benchmarks.scaling_worker", "--model", model, "--ratio", str(ratio), "--steps", str(steps),
                   "--warmup", "2", "--batch-size", "32", "--out", str(out)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        process = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=LAUNCH_SECONDS)
        if process.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{(process.stdout + process.stderr)[-4000:]}")
        return json.loads(out.read_text())


def report(model_records: list[dict], measured_records: list[dict]) -> str:
    """Both tables: the model's (bytes per step, and auto's share of dense) and the measured one."""
    lines = [f"{'model':<11}{'ratio':>6}{'P':>6}{'dense':>14}{'sparse':>14}{'auto':>14}{'auto/dense':>11}"
             f"{'two_phase':>14}{'2ph/dense':>10}"]
    for r in model_records:
        lines.append(f"{r['model']:<11}{r['ratio']:>6g}{r['ranks']:>6}{r['dense']:>14,.0f}{r['sparse']:>14,.0f}"
                     f"{r['auto']:>14,.0f}{r['auto'] / r['dense']:>11.3f}"
                     f"{r['two_phase']:>14,.0f}{r['two_phase'] / r['dense']:>10.3f}")
    lines.append("")
    lines.append(f"{'measured':<16}{'ratio':>6}{'P':>4}{'step ms':>9}{'link bytes':>13}{'sparse tensors':>16}")
    for r in measured_records:
        lines.append(f"{r['method']:<16}{r['ratio']:>6g}{r['ranks']:>4}{r['step_ms_median']:>9.1f}"
                     f"{r['link_bytes_per_step']:>13,.0f}{r['sparse_tensors']:>16}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m benchmarks scaling``."""
    parser.add_argument("--models", nargs="+", default=["digits_cnn", "wide_mlp"])
    parser.add_argument("--measured-model", default="digits_cnn")
    parser.add_argument("--ranks", type=int, nargs="+", default=list(MEASURED_RANKS))
    parser.add_argument("--ratios", type=float, nargs="+", default=list(RATIOS))
    parser.add_argument("--steps", type=int, default=10)


def command(args: argparse.Namespace) -> dict[str, list[dict]]:
    """``python -m benchmarks scaling``: the cost model and the measured runs, both tables printed, the
    model drawn in ``scaling.png``; returns both record lists for ``scaling.json``."""
    model_records = modelled(tuple(args.models), tuple(args.ratios))
    measured_records = measured(args.measured_model, tuple(args.ratios), tuple(args.ranks), args.steps)
    print(report(model_records, measured_records))
    plots.scaling(model_records, args.out / "scaling.png")
    return {"model": model_records, "measured": measured_records}
