"""The convergence suite: does a compressed run end where dense training ends?

Per model (the digits CNN and the character-level Transformer language model on the standard
library's text), optimizer (SGD with momentum, Adam), seed and ratio, 2 workers on this machine
train from the same weights on the same batches for the same steps with every method
(benchmarks/convergence_worker.py): Horovod's in one ``horovodrun -np 2 --gloo``, PowerSGD in one
``torchrun --nproc_per_node 2``. Dense, fp16 and PowerSGD do not depend on the ratio: they run with
the first one and are shown beside every ratio. Reported per method, as the mean and standard
deviation over the seeds: the validation loss (and accuracy) every few steps, at step 30 and at the
end, and the bytes each worker sent per step over the whole run (warm-up included) against dense's.
A seed changes the initial weights and every worker's batches, so dense's own spread over the
seeds is what "as good as dense" is judged against.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import plots
from benchmarks.convergence_worker import DDP_METHODS, HOROVOD_METHODS, OPTIMIZER_BOUND, OPTIMIZERS
from benchmarks.e2e import relaunched

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("digits_cnn", "char_transformer")
RATIOS = (0.01, 0.001)
RATIO_FREE = ("dense", "fp16", *DDP_METHODS)  # PowerSGD's compression is its rank
METHODS = (*HOROVOD_METHODS, *DDP_METHODS)
LAUNCH_SECONDS = 3600
HELP = "2 workers, hundreds of steps, several seeds: validation loss per method vs dense"  # its line in ``--help``


def run(models: tuple[str, ...] = MODELS, ratios: tuple[float, ...] = RATIOS, steps: int = 300,
        methods: tuple[str, ...] = METHODS, warmup_steps: int = 50, seeds: tuple[int, ...] = (0,),
        optimizers: tuple[str, ...] = ("sgd",)) -> list[dict]:
    """Every method on every model, optimizer, seed and ratio; one record per run. A method that
    takes one optimizer's state over (``OPTIMIZER_BOUND``) runs with that optimizer only."""
    records = []
    for model in models:
        for optimizer in optimizers:
            applicable = tuple(m for m in methods if OPTIMIZER_BOUND.get(m, optimizer) == optimizer)
            for seed in seeds:
                records += _ratios(model, optimizer, seed, ratios, steps, applicable, warmup_steps)
    return records


def _ratios(model: str, optimizer: str, seed: int, ratios: tuple[float, ...], steps: int,
            methods: tuple[str, ...], warmup_steps: int) -> list[dict]:
    """One model, optimizer and seed at every ratio; the ratio-free methods run once."""
    records: list[dict] = []
    shared: list[dict] = []
    settings = ["--model", model, "--optimizer", optimizer, "--seed", str(seed), "--steps", str(steps),
                "--warmup-steps", str(warmup_steps)]
    for number, ratio in enumerate(ratios):
        horovod = [m for m in methods if m in HOROVOD_METHODS and (number == 0 or m not in RATIO_FREE)]
        ddp = [m for m in methods if m in DDP_METHODS and number == 0]
        print(f"convergence: {model}, {optimizer}, seed {seed}, ratio {ratio} ...", file=sys.stderr, flush=True)
        launched = []
        worker = [*settings, "--ratio", str(ratio)]
        if horovod:
            horovodrun = [str(Path(sys.executable).with_name("horovodrun")), "-np", "2", "-H", "localhost:2",
                          "--gloo", sys.executable]
            launched += _launch(horovodrun, "horovod", worker, horovod)
        if ddp:
            torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
            launched += _launch_ddp(torchrun, worker, ddp)
        if number == 0:
            shared = [r for r in launched if r["method"] in RATIO_FREE]
        else:
            launched = [{**r, "ratio": ratio} for r in shared] + launched
        records += launched
    return records


def _launch_ddp(launcher: list[str], worker: list[str], methods: list[str]) -> list[dict]:
    """The DDP methods' torchrun, run again when it fails, up to ``DDP_LAUNCHES`` times: torch's Gloo
    sometimes aborts a worker with PowerSGD's hook in the first steps (see benchmarks/e2e.py)."""
    records, launches = relaunched(lambda: _launch(launcher, "ddp", worker, methods), RuntimeError)
    return [{**r, "launches": launches} for r in records]


def _launch(launcher: list[str], engine: str, worker: list[str], methods: list[str]) -> list[dict]:
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "records.json"
        command = [*launcher, "-m", "benchmarks.convergence_worker", "--engine", engine, *worker, "--out", str(out),
                   "--methods", *methods]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        process = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=LAUNCH_SECONDS)
        if process.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{(process.stdout + process.stderr)[-4000:]}")
        return json.loads(out.read_text())


def summary(records: list[dict]) -> list[dict]:
    """One row per (model, optimizer, ratio, method): the mean and standard deviation over its seeds
    of the final loss, the loss at step 30, the final accuracy and the bytes per step, and the
    means against dense's (whose own spread is in its row)."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["model"], r.get("optimizer", "sgd"), r["ratio"], r["method"]), []).append(r)
    rows = []
    for (model, optimizer, ratio, method), runs in groups.items():
        row = {"model": model, "optimizer": optimizer, "ratio": ratio, "method": method,
               "seeds": sorted(r.get("seed", 0) for r in runs)}
        for key in ("final_loss", "loss_at_30", "final_accuracy", "bytes_per_step"):
            values = [r[key] for r in runs]
            row[key] = statistics.fmean(values)
            row[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        row["dense_bytes_per_step"] = runs[0]["dense_bytes_per_step"]
        rows.append(row)
    for row in rows:
        dense = next((d for d in rows if d["method"] == "dense"
                      and (d["model"], d["optimizer"], d["ratio"]) == (row["model"], row["optimizer"], row["ratio"])),
                     None)
        row["final_x_dense"] = row["final_loss"] / dense["final_loss"] if dense else None
        row["at_30_x_dense"] = row["loss_at_30"] / dense["loss_at_30"] if dense else None
    return rows


def report(records: list[dict]) -> str:
    """One line per (model, optimizer, ratio, method): final and step-30 validation loss (mean and
    standard deviation over the seeds) against dense's mean, accuracy, bytes."""
    lines = [f"{'model':<17}{'opt':<5}{'ratio':>6} {'method':<15}{'seeds':>5}{'val loss':>9}{'std':>7}{'x dense':>8}"
             f"{'@30':>8}{'@30/dense':>10}{'accuracy':>9}{'bytes/step':>12}{'x dense':>8}"]
    for row in summary(records):
        final = f"{row['final_x_dense']:.3f}" if row["final_x_dense"] else "-"
        at_30 = f"{row['at_30_x_dense']:.3f}" if row["at_30_x_dense"] else "-"
        lines.append(f"{row['model']:<17}{row['optimizer']:<5}{row['ratio']:>6g} {row['method']:<15}"
                     f"{len(row['seeds']):>5}{row['final_loss']:>9.4f}{row['final_loss_std']:>7.4f}{final:>8}"
                     f"{row['loss_at_30']:>8.4f}{at_30:>10}{row['final_accuracy']:>9.3f}"
                     f"{row['bytes_per_step']:>12,.0f}{row['bytes_per_step'] / row['dense_bytes_per_step']:>8.4f}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m benchmarks convergence``."""
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--ratios", type=float, nargs="+", default=list(RATIOS))
    parser.add_argument("--methods", nargs="+", default=None, help="default: every method")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup-steps", type=int, default=50, help="distq-warmup's decaying steps (distq's: 50)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="runs per method, each its own seed")
    parser.add_argument("--optimizers", nargs="+", choices=OPTIMIZERS, default=["sgd"],
                        help="distq-momentum runs with sgd only, distq-adam with adam only")


def command(args: argparse.Namespace) -> list[dict]:
    """``python -m benchmarks convergence``: trains every method, prints the table, draws
    ``convergence.png``; returns the records for ``convergence.json``."""
    records = run(tuple(args.models), tuple(args.ratios), args.steps, tuple(args.methods or METHODS),
                  args.warmup_steps, tuple(args.seeds), tuple(args.optimizers))
    print(report(records))
    plots.convergence(records, args.out / "convergence.png")
    return records
