"""PNG figures of the suites' records (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def kernels(records: list[dict], path: Path) -> None:
    """Median time vs n per method, one panel per ratio."""
    ratios = sorted({r["ratio"] for r in records}, reverse=True)
    figure, axes = plt.subplots(1, len(ratios), figsize=(6 * len(ratios), 4.5), squeeze=False)
    for axis, ratio in zip(axes[0], ratios):
        for i, method in enumerate(dict.fromkeys(r["method"] for r in records)):
            points = sorted((r["n"], r["median_ms"]) for r in records if r["ratio"] == ratio and r["method"] == method)
            # More methods than the colour cycle has colours: dashes tell the second round apart.
            axis.plot(*zip(*points), marker="o", linestyle="-" if i < 10 else "--", label=method)
        axis.set(xscale="log", yscale="log", xlabel="elements (float32)", ylabel="median ms",
                 title=f"ratio {ratio}")
        axis.grid(True, which="both", alpha=0.3)
    axes[0][-1].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def e2e(records: list[dict], path: Path) -> None:
    """Median step time per method, one panel per model, bars grouped by cluster size and bandwidth
    (failed runs left out)."""
    records = [r for r in records if "failed" not in r]
    models = list(dict.fromkeys(r["model"] for r in records))
    links = list(dict.fromkeys((r["hosts"], r["bandwidth"]) for r in records))
    methods = list(dict.fromkeys(r["method"] for r in records))
    figure, axes = plt.subplots(1, len(models), figsize=(7 * len(models), 4.5), squeeze=False)
    width = 0.8 / len(links)
    for axis, model in zip(axes[0], models):
        for i, (hosts, bandwidth) in enumerate(links):
            values = [next((r["step_ms_median"] for r in records if r["model"] == model and r["hosts"] == hosts
                            and r["bandwidth"] == bandwidth and r["method"] == m), 0) for m in methods]
            axis.bar([j + i * width for j in range(len(methods))], values, width, label=f"P={hosts} {bandwidth}")
        axis.set_xticks([j + width * (len(links) - 1) / 2 for j in range(len(methods))])
        axis.set_xticklabels(methods, rotation=30, ha="right")
        axis.set(yscale="log", ylabel="median step ms", title=model)
        axis.legend(fontsize="small", ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def quality(snapshot, records: list[dict], path: Path, ratio: float = 0.001) -> None:
    """Left: one real gradient's histogram with the seed families' fitted densities and each
    family's threshold at ``ratio``. Right: achieved/target per family, single shot and closed loop."""
    import numpy as np
    from scipy import stats

    from horovod_distq.torch import sparsify

    x = snapshot.gradient.reshape(-1).double().numpy()
    figure, (left, right) = plt.subplots(1, 2, figsize=(15, 5.5))
    heights, _, _ = left.hist(x, bins=400, density=True, color="0.75",
                              label=f"{snapshot.model} {snapshot.tensor} ({snapshot.mode})")
    grid = np.linspace(x.min(), x.max(), 2000)
    median, q25, q75 = np.quantile(x, [0.5, 0.25, 0.75])
    excess_kurtosis = stats.kurtosis(x)
    dof = 4 + 6 / excess_kurtosis if excess_kurtosis > 0 else 1e9
    densities = {
        "normal": stats.norm(x.mean(), x.std()),
        "laplace": stats.laplace(median, np.mean(np.abs(x - median))),
        "cauchy": stats.cauchy(median, (q75 - q25) / 2),
        "student_t": stats.t(dof, x.mean(), x.std() * np.sqrt(max(dof - 2, 1e-9) / dof)),
    }
    for name, law in densities.items():
        left.plot(grid, law.pdf(grid), lw=1, label=f"{name} density")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, family in enumerate(("normal", "laplace", "cauchy", "student_t", "exponential", "gamma", "gpareto", "auto")):
        result = sparsify(snapshot.gradient, ratio, family)  # 1 stage, auto its default 3
        t, c = float(result.threshold), float(result.center)
        for edge in (c - t, c + t):
            left.axvline(edge, color=colors[i % len(colors)], ls="--", lw=0.8,
                         label=f"{family} threshold" if edge == c + t else None)
    spread = 8 * x.std()
    left.set(yscale="log", xlim=(-spread, spread), ylim=(heights[heights > 0].min() / 10, heights.max() * 3),
             title=f"thresholds at ratio {ratio} (1 stage; auto: 3)", xlabel="gradient value")
    left.legend(fontsize=7, ncol=2)

    families = list(dict.fromkeys(r["family"] for r in records))
    groups, labels = [], []
    for family in families:
        for loop in (False, True):
            values = [r["achieved_over_target"] for r in records if r["family"] == family and r["loop"] == loop
                      and r["stages"] == 3 and r["ratio"] == ratio]
            groups.append(values)
            labels.append(f"{family}{' +loop' if loop else ''}")
    right.boxplot(groups, showfliers=False)
    right.set_xticks(range(1, len(labels) + 1))
    right.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
    right.axhline(1.0, color="k", lw=0.8)
    right.axhspan(0.8, 1.2, color="g", alpha=0.1)
    right.set(yscale="log", ylabel="achieved / target", title=f"3 stages, ratio {ratio}, raw and accumulated")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def tracing(records: list[dict], path: Path) -> None:
    """First step (trace and run) and steady step time per method, side by side."""
    methods = [r["method"] for r in records]
    figure, (first, steady) = plt.subplots(1, 2, figsize=(11, 4.5))
    first.bar(methods, [r["first_step_s"] for r in records])
    first.set(ylabel="seconds", title="first step (tf.function trace + step)")
    steady.bar(methods, [r["steady_step_ms"] for r in records])
    steady.set(ylabel="median ms", title="steady step")
    for axis in (first, steady):
        axis.tick_params(axis="x", rotation=30)
    figure.suptitle(f"{records[0]['gradient_tensors']} gradient tensors, 2 workers (Gloo)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def scaling(model_records: list[dict], path: Path) -> None:
    """Link bytes per step vs P (log-log), one panel per model and ratio: dense, sparse only, auto, two-phase."""
    panels = list(dict.fromkeys((r["model"], r["ratio"]) for r in model_records))
    figure, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4), squeeze=False)
    for axis, (model, ratio) in zip(axes[0], panels):
        rows = [r for r in model_records if r["model"] == model and r["ratio"] == ratio]
        for key, style in (("dense", "-"), ("sparse", "--"), ("auto", ":"), ("two_phase", "-.")):
            axis.plot([r["ranks"] for r in rows], [r[key] for r in rows], linestyle=style, marker="o", label=key)
        axis.set(xscale="log", yscale="log", xlabel="ranks P", ylabel="bytes per rank's link per step",
                 title=f"{model}, ratio {ratio}")
        axis.grid(True, which="both", alpha=0.3)
    axes[0][0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def convergence(records: list[dict], path: Path) -> None:
    """Validation loss against steps, one panel per (model, optimizer, ratio), one line per method:
    the mean over its seeds, with the seeds' range shaded."""
    panels = list(dict.fromkeys((r["model"], r.get("optimizer", "sgd"), r["ratio"]) for r in records))
    colours = {method: f"C{i}" for i, method in enumerate(dict.fromkeys(r["method"] for r in records))}
    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for axis, panel in zip(axes[0], panels):
        runs: dict[str, list[dict]] = {}
        for r in records:
            if (r["model"], r.get("optimizer", "sgd"), r["ratio"]) == panel:
                runs.setdefault(r["method"], []).append(r)
        for method, seeds in runs.items():
            steps = [p["step"] for p in seeds[0]["curve"]]
            losses = np.array([[p["loss"] for p in r["curve"]] for r in seeds])
            axis.plot(steps, losses.mean(0), label=method, color=colours[method])
            if len(seeds) > 1:
                axis.fill_between(steps, losses.min(0), losses.max(0), color=colours[method], alpha=0.15)
        model, optimizer, ratio = panel
        axis.set(xlabel="step", ylabel="validation loss", title=f"{model}, {optimizer}, ratio {ratio:g}", yscale="log")
        axis.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def time_to_accuracy(records: list[dict], path: Path) -> None:
    """Training seconds until dense's final validation loss per method, bars grouped by cluster
    size and bandwidth; a run that never got there is drawn hatched at its whole time."""
    records = [r for r in records if "failed" not in r]
    links = list(dict.fromkeys((r["hosts"], r["bandwidth"]) for r in records))
    methods = list(dict.fromkeys(r["method"] for r in records))
    figure, axis = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / len(links)
    for i, (hosts, bandwidth) in enumerate(links):
        for j, method in enumerate(methods):
            run = next((r for r in records if (r["hosts"], r["bandwidth"], r["method"]) == (hosts, bandwidth, method)),
                       None)
            if run is None:
                continue
            missed = run["seconds_to_target"] is None
            seconds = run["curve"][-1]["seconds"] if missed else run["seconds_to_target"]
            axis.bar(j + i * width, seconds, width, color=f"C{i}", hatch="//" if missed else None,
                     label=f"P={hosts} {bandwidth}" if j == 0 else None)
    axis.set_xticks([j + width * (len(links) - 1) / 2 for j in range(len(methods))])
    axis.set_xticklabels(methods, rotation=30, ha="right")
    axis.set(yscale="log", ylabel="training seconds", title="time to dense's final validation loss "
             "(hatched: not reached, whole run)")
    axis.legend(fontsize="small", ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
