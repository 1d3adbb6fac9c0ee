"""What the digits examples share, torch and TensorFlow alike: their options, data, compression choice,
batches, per-run record and closing summary.

No framework import and no import of the modules beside it, so that it loads both as ``common``
(from an example run as ``python examples/x.py``) and as ``examples.common`` (from ``python -m
benchmarks`` at the repository root).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from tqdm import tqdm

from horovod_distq.exchange_cost import EXCHANGE_MODES

T = TypeVar("T")


def parse_arguments(description: str, default_out: str, switches: dict[str, str] | None = None,
                    argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The examples' command line: which compressions to train with, DistQ's settings, training length,
    and an example's own on/off ``switches`` (flag -> help). ``argv``: the arguments to parse instead
    of ``sys.argv``'s, so that a test can parse an example's command line without running it."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag, help_text in (switches or {}).items():
        parser.add_argument(flag, action="store_true", help=help_text)
    parser.add_argument("--compression", nargs="+", default=["none", "distq"], choices=["none", "fp16", "distq"])
    parser.add_argument("--ratio", type=float, default=0.01)
    parser.add_argument("--distribution", default="normal")
    parser.add_argument("--value-encoding", default="auto")
    parser.add_argument("--exchange", default="auto", choices=EXCHANGE_MODES,
                        help="DistQ's exchange; auto: chosen from measured step times (README, Scale)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(default_out))
    parser.add_argument("--logdir", type=Path, help="write DistQ's per-step stats for TensorBoard here (rank 0)")
    return parser.parse_args(argv)


def parse_elastic_arguments(description: str) -> argparse.Namespace:
    """The options of the elastic examples (``*_digits_elastic.py``)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32, help="per worker")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--ratio", type=float, default=0.01, help="DistQ's target ratio")
    parser.add_argument("--commit-every", type=int, default=5, help="batches between elastic commits")
    return parser.parse_args()


def progress(iterable: Iterable[T], description: str, total: int | None = None) -> Iterable[T]:
    """``iterable`` with tqdm's progress bar (steps done, rate, ETA) on standard error when that is a
    terminal; without one elsewhere (logs, CI, horovodrun's pipes), so that output stays quiet."""
    return tqdm(iterable, desc=description, total=total, disable=None, leave=False, dynamic_ncols=True)


def logs_telemetry(args: argparse.Namespace, compression: Any, hvd: Any) -> bool:
    """Whether this run writes DistQ's stats for TensorBoard: asked for, a DistQ run, on rank 0."""
    return args.logdir is not None and hasattr(compression, "log_to") and hvd.rank() == 0


def digits_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits (offline), split 80/20 stratified.

    Returns:
        (train images, train labels, test images, test labels): float32 images [N, 8, 8] in [0, 1],
        int64 labels.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int64)
    train_x, test_x, train_y, test_y = train_test_split(
        images, labels, test_size=0.2, random_state=seed, stratify=labels
    )
    return train_x, train_y, test_x, test_y


def make_compression(kind: str, args: argparse.Namespace, hvd: Any, distq: type) -> Any:
    """Horovod's compression for ``kind`` ("none", "fp16") or ``distq`` (the frontend's ``DistQ``) with
    the command line's settings."""
    if kind == "none":
        return hvd.Compression.none
    if kind == "fp16":
        return hvd.Compression.fp16
    return distq(ratio=args.ratio, distribution=args.distribution, value_encoding=args.value_encoding,
                 exchange=args.exchange)


def bytes_per_step(compression: Any, numels: Sequence[int], hvd: Any) -> int:
    """Bytes this worker contributed to the collectives in the last step: what a DistQ counted, or every
    parameter's ``numels`` at 2 bytes (Horovod's fp16) or 4 bytes (dense) an entry."""
    if hasattr(compression, "bytes_sent"):
        return compression.bytes_sent
    itemsize = 2 if compression is hvd.Compression.fp16 else 4
    return sum(numels) * itemsize


def batches(args: argparse.Namespace, count: int, permutation: Callable[[int], Sequence],
            description: str) -> Iterable[Sequence]:
    """Index batches of ``args.batch_size`` over ``count`` examples for ``args.epochs`` epochs, each epoch
    in the order ``permutation(count)`` draws, with a :func:`progress` bar named ``description``. A
    short last batch is dropped, so every rank runs the same number of steps (allreduce has no
    partial participation)."""
    per_epoch = count // args.batch_size
    return progress(_batches(args, count, permutation), description, total=args.epochs * per_epoch)


def _batches(args: argparse.Namespace, count: int, permutation: Callable[[int], Sequence]) -> Iterator[Sequence]:
    for _ in range(args.epochs):
        order = permutation(count)
        for start in range(0, count - args.batch_size + 1, args.batch_size):
            yield order[start : start + args.batch_size]


def run_record(kind: str, args: argparse.Namespace, compression: Any, accuracy: float, sent: list[int],
               seconds: float) -> dict:
    """One run's entry of ``summary.json``; with DistQ also its mean achieved ratio and settings."""
    result = {
        "compression": kind,
        "test_accuracy": accuracy,
        "steps": len(sent),
        "bytes_sent_per_step": float(np.mean(sent)),
        "seconds": seconds,
    }
    if kind == "distq":
        sparse = [s for s in compression.stats.values() if not s.dense]
        # None where the last step went dense (exchange="auto" chose it).
        result["achieved_ratio"] = float(np.mean([s.achieved_ratio for s in sparse])) if sparse else None
        result.update(ratio=args.ratio, distribution=args.distribution, value_encoding=args.value_encoding,
                      exchange=args.exchange)
        decision = getattr(compression, "exchange_policy", None) and compression.exchange_policy.last_decision
        if decision:  # what exchange="auto" measured (seconds a step) and chose last
            result["exchange_chosen"] = {"step": decision.step, "chosen": decision.chosen, "seconds": decision.costs}
    return result


def checkpoint_files(model_files: str, distq_file: Path, compressed: bool) -> str:
    """The files of one run's checkpoint: the model's, and with DistQ the file of its state beside them."""
    return f"{model_files} + {distq_file}" if compressed else model_files


def checkpoint_contents(compressed: bool) -> str:
    """What an example's checkpoint of one run holds, in words."""
    return "model, optimizer" + (", every rank's DistQ residuals and closed-loop state" if compressed else "")


def run_all(args: argparse.Namespace, hvd: Any, train: Callable[[str, argparse.Namespace, Any], dict],
            data: Any) -> None:
    """Trains one run per ``args.compression`` on ``data``; rank 0 prints and saves the summary."""
    args.out.mkdir(parents=True, exist_ok=True)
    results = [train(kind, args, data) for kind in args.compression]
    if hvd.rank() == 0:
        print_and_save(results, hvd.size(), args.out)


def print_and_save(results: list[dict], workers: int, out: Path) -> None:
    """Prints accuracy and traffic per run, writes ``out/summary.json`` and lists what was saved.

    Args:
        results: one dict per run with ``compression``, ``test_accuracy``, ``bytes_sent_per_step``,
            ``steps``, ``seconds``, ``checkpoint`` and ``contents``.
        workers: the number of Horovod workers.
        out: the folder the run wrote to.
    """
    dense_bytes = next((r["bytes_sent_per_step"] for r in results if r["compression"] == "none"), None)
    print(f"{'compression':<12}{'test acc':>10}{'bytes/step':>12}{'vs dense':>10}{'steps':>7}{'seconds':>9}")
    for r in results:
        share = f"{r['bytes_sent_per_step'] / dense_bytes:.2%}" if dense_bytes else "-"
        print(f"{r['compression']:<12}{r['test_accuracy']:>10.4f}{r['bytes_sent_per_step']:>12.0f}"
              f"{share:>10}{r['steps']:>7}{r['seconds']:>9.1f}")
    summary = out / "summary.json"
    summary.write_text(json.dumps({"workers": workers, "runs": results}, indent=2) + "\n")
    print("saved:")
    for r in results:
        print(f"  {r['checkpoint']}  ({r['compression']}: {r['contents']})")
    print(f"  {summary}  (accuracy, bytes per step, timings)")
