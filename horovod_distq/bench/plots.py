"""PNG figures of the suites' records (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def kernels(records: list[dict], path: Path) -> None:
    """Median time vs n per method, one panel per ratio."""
    ratios = sorted({r["ratio"] for r in records}, reverse=True)
    figure, axes = plt.subplots(1, len(ratios), figsize=(6 * len(ratios), 4.5), squeeze=False)
    for axis, ratio in zip(axes[0], ratios):
        for method in dict.fromkeys(r["method"] for r in records):
            points = sorted((r["n"], r["median_ms"]) for r in records if r["ratio"] == ratio and r["method"] == method)
            axis.plot(*zip(*points), marker="o", label=method)
        axis.set(xscale="log", yscale="log", xlabel="elements (float32)", ylabel="median ms",
                 title=f"ratio {ratio}")
        axis.grid(True, which="both", alpha=0.3)
    axes[0][-1].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def e2e(records: list[dict], path: Path) -> None:
    """Median step time per method, one panel per model, bars grouped by bandwidth."""
    models = list(dict.fromkeys(r["model"] for r in records))
    bandwidths = list(dict.fromkeys(r["bandwidth"] for r in records))
    methods = list(dict.fromkeys(r["method"] for r in records))
    figure, axes = plt.subplots(1, len(models), figsize=(7 * len(models), 4.5), squeeze=False)
    width = 0.8 / len(bandwidths)
    for axis, model in zip(axes[0], models):
        for i, bandwidth in enumerate(bandwidths):
            values = [next((r["step_ms_median"] for r in records if r["model"] == model
                            and r["bandwidth"] == bandwidth and r["method"] == m), 0) for m in methods]
            axis.bar([j + i * width for j in range(len(methods))], values, width, label=bandwidth)
        axis.set_xticks([j + width * (len(bandwidths) - 1) / 2 for j in range(len(methods))])
        axis.set_xticklabels(methods, rotation=30, ha="right")
        axis.set(yscale="log", ylabel="median step ms", title=model)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
