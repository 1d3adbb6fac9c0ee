"""The convergence suite: does a compressed run end where dense training ends?

Per model (the digits CNN and the character-level Transformer language model on the standard
library's text) and ratio, 2 workers on this machine train from the same weights on the same
batches for the same steps with every method (benchmarks/convergence_worker.py): Horovod's in one
``horovodrun -np 2 --gloo``, PowerSGD in one ``torchrun --nproc_per_node 2``. Dense, fp16 and PowerSGD do
not depend on the ratio: they run with the first one and are shown beside every ratio. Reported: the
validation loss (and accuracy) every few steps, at step 30 and at the end, and the bytes each
worker sent per step over the whole run (warm-up included) against dense's.
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
from benchmarks.convergence_worker import DDP_METHODS, HOROVOD_METHODS
from benchmarks.e2e import DDP_LAUNCHES

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("digits_cnn", "char_transformer")
RATIOS = (0.01, 0.001)
RATIO_FREE = ("dense", "fp16", *DDP_METHODS)  # PowerSGD's compression is its rank
METHODS = (*HOROVOD_METHODS, *DDP_METHODS)
LAUNCH_SECONDS = 3600
HELP = "2 workers, hundreds of steps: validation loss per method vs dense"  # its line in ``--help``


def run(models: tuple[str, ...] = MODELS, ratios: tuple[float, ...] = RATIOS, steps: int = 300,
        methods: tuple[str, ...] = METHODS, warmup_steps: int = 50) -> list[dict]:
    """Every method on every model at every ratio; one record per (model, ratio, method)."""
    records = []
    for model in models:
        shared: list[dict] = []
        for number, ratio in enumerate(ratios):
            horovod = [m for m in methods if m in HOROVOD_METHODS and (number == 0 or m not in RATIO_FREE)]
            ddp = [m for m in methods if m in DDP_METHODS and number == 0]
            print(f"convergence: {model} at ratio {ratio} ...", file=sys.stderr, flush=True)
            launched = []
            if horovod:
                horovodrun = [str(Path(sys.executable).with_name("horovodrun")), "-np", "2", "-H", "localhost:2",
                              "--gloo", sys.executable]
                launched += _launch(horovodrun, "horovod", model, ratio, steps, horovod, warmup_steps)
            if ddp:
                torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
                launched += _launch_ddp(torchrun, model, ratio, steps, ddp, warmup_steps)
            if number == 0:
                shared = [r for r in launched if r["method"] in RATIO_FREE]
            else:
                launched = [{**r, "ratio": ratio} for r in shared] + launched
            records += launched
    return records


def _launch_ddp(launcher: list[str], model: str, ratio: float, steps: int, methods: list[str],
                warmup_steps: int) -> list[dict]:
    """The DDP methods' torchrun, run again when it fails, up to ``DDP_LAUNCHES`` times: torch's Gloo
    sometimes aborts a worker with PowerSGD's hook in the first steps (see benchmarks/e2e.py)."""
    for launch in range(1, DDP_LAUNCHES + 1):
        try:
            return [{**r, "launches": launch}
                    for r in _launch(launcher, "ddp", model, ratio, steps, methods, warmup_steps)]
        except RuntimeError:
            if launch == DDP_LAUNCHES:
                raise
    return []  # DDP_LAUNCHES < 1: nothing launched


def _launch(launcher: list[str], engine: str, model: str, ratio: float, steps: int, methods: list[str],
            warmup_steps: int) -> list[dict]:
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "records.json"
        worker = ["-m", "benchmarks.convergence_worker", "--engine", engine, "--model", model, "--ratio",
                  str(ratio), "--steps", str(steps), "--warmup-steps", str(warmup_steps), "--out", str(out),
                  "--methods", *methods]
        command = [*launcher, *worker]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        process = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=LAUNCH_SECONDS)
        if process.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{(process.stdout + process.stderr)[-4000:]}")
        return json.loads(out.read_text())


def report(records: list[dict]) -> str:
    """One line per record: final and step-30 validation loss against dense's, accuracy, bytes."""
    lines = [f"{'model':<17}{'ratio':>6} {'method':<15}{'val loss':>9}{'x dense':>8}{'@30':>8}{'@30/dense':>10}"
             f"{'accuracy':>9}{'bytes/step':>12}{'x dense':>8}"]
    for r in records:
        dense = next((x for x in records if x["model"] == r["model"] and x["ratio"] == r["ratio"]
                      and x["method"] == "dense"), None)
        final = f"{r['final_loss'] / dense['final_loss']:.3f}" if dense else "-"
        at_30 = f"{r['loss_at_30'] / dense['loss_at_30']:.3f}" if dense else "-"
        lines.append(f"{r['model']:<17}{r['ratio']:>6g} {r['method']:<15}{r['final_loss']:>9.4f}{final:>8}"
                     f"{r['loss_at_30']:>8.4f}{at_30:>10}{r['final_accuracy']:>9.3f}"
                     f"{r['bytes_per_step']:>12,.0f}{r['bytes_per_step'] / r['dense_bytes_per_step']:>8.4f}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m benchmarks convergence``."""
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--ratios", type=float, nargs="+", default=list(RATIOS))
    parser.add_argument("--methods", nargs="+", default=None, help="default: every method")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup-steps", type=int, default=50, help="distq-warmup's decaying steps")


def command(args: argparse.Namespace) -> list[dict]:
    """``python -m benchmarks convergence``: trains every method, prints the table, draws
    ``convergence.png``; returns the records for ``convergence.json``."""
    records = run(tuple(args.models), tuple(args.ratios), args.steps, tuple(args.methods or METHODS),
                  args.warmup_steps)
    print(report(records))
    plots.convergence(records, args.out / "convergence.png")
    return records
