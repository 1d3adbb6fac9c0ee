"""What the digits examples share, torch and TensorFlow alike: their options, closing table and summary."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def parse_arguments(description: str, default_out: str) -> argparse.Namespace:
    """The examples' command line: which compressions to train with, DistQ's settings, training length."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compression", nargs="+", default=["none", "distq"], choices=["none", "fp16", "distq"])
    parser.add_argument("--ratio", type=float, default=0.01)
    parser.add_argument("--distribution", default="normal")
    parser.add_argument("--value-encoding", default="auto")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(default_out))
    return parser.parse_args()


def checkpoint_contents(compressed: bool) -> str:
    """What an example's checkpoint of one run holds, in words."""
    return "model, optimizer" + (", DistQ residuals and closed-loop state" if compressed else "")


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
