"""Quality suite: how close each family's threshold keeps to the target on real gradients.

Real models train on real data that installs offline: the digits CNN and a wide MLP on
scikit-learn's digits, a character-level Transformer language model on the Python standard
library's own sources (all torch), and the Keras 3 twin of the digits CNN trained by TensorFlow. During
training, gradients of every tensor with at least ``MIN_NUMEL`` entries are captured over windows
of consecutive steps, raw and error-feedback-accumulated (the residual of an exact top-k at the
same ratio, so the accumulation does not favour any family). Each family then selects from each
captured tensor, and the suite reports achieved/target: single shot (no history), and with the
closed loop (:class:`horovod_distq.torch.RatioController`) after 5 steps of history in the window.
"""

from __future__ import annotations

import argparse
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import horovod_distq
from benchmarks.baselines import torch_topk
from examples.common import digits_split, progress
from examples.torch_models import DigitsCNN, WideMLP, as_tensors
from horovod_distq.torch import RatioController, sparsify

RATIOS = (0.01, 0.001)
STAGES = (1, 2, 3)
MIN_NUMEL = 1024
HISTORY = 5  # closed-loop steps before a tensor is scored
WINDOW = 8  # consecutive captured steps per window


@dataclass(frozen=True)
class Snapshot:
    model: str
    tensor: str
    window: int
    step: int  # position in the window
    mode: str  # "raw" or "accumulated"
    ratio: float | None  # the error-feedback ratio for accumulated gradients
    gradient: torch.Tensor


class CharTransformer(torch.nn.Module):
    """A 2-layer causal Transformer over bytes (about 1.7M parameters)."""

    def __init__(self, context: int = 64, width: int = 256) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(256, width)
        self.position = torch.nn.Parameter(torch.randn(context, width) * 0.02)
        layer = torch.nn.TransformerEncoderLayer(width, 4, 4 * width, dropout=0.0, batch_first=True)
        self.blocks = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = torch.nn.Linear(width, 256)
        self.register_buffer("mask", torch.nn.Transformer.generate_square_subsequent_mask(context), persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens) + self.position[: tokens.shape[1]]
        return self.head(self.blocks(h, mask=self.mask[: tokens.shape[1], : tokens.shape[1]], is_causal=True))


def stdlib_text(limit: int = 2_000_000) -> torch.Tensor:
    """Bytes of the standard library's Python sources, in sorted file order, up to ``limit``."""
    chunks, total = [], 0
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        data = path.read_bytes()
        chunks.append(data)
        total += len(data)
        if total >= limit:
            break
    return torch.frombuffer(bytearray(b"".join(chunks)[:limit]), dtype=torch.uint8).long()


def _digits_batches(batch_size: int, generator: torch.Generator):
    train_x, train_y, _, _ = as_tensors(digits_split())
    while True:
        index = torch.randint(0, len(train_x), (batch_size,), generator=generator)
        yield train_x[index], train_y[index]


def _text_batches(batch_size: int, context: int, generator: torch.Generator):
    text = stdlib_text()
    while True:
        start = torch.randint(0, len(text) - context - 1, (batch_size,), generator=generator)
        window = torch.stack([text[s : s + context + 1] for s in start.tolist()])
        yield window[:, :-1], window[:, 1:]


def _loss(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = model(inputs)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def _torch_gradients(model_name: str, steps: int, seed: int) -> Iterator[dict[str, torch.Tensor]]:
    """Trains a torch model; yields each step's gradients of the tracked tensors before the update."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    if model_name in ("digits_cnn", "wide_mlp"):
        model = DigitsCNN() if model_name == "digits_cnn" else WideMLP()
        batches = _digits_batches(32, generator)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    else:
        model, batches = CharTransformer(), _text_batches(32, 64, generator)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    tracked = {n: p for n, p in model.named_parameters() if p.numel() >= MIN_NUMEL}
    for step in range(steps):
        inputs, targets = next(batches)
        optimizer.zero_grad()
        loss = _loss(model, inputs, targets)
        _check_finite(model_name, step, float(loss.detach()))
        loss.backward()
        yield {name: param.grad.detach() for name, param in tracked.items()}
        optimizer.step()


def _keras_gradients(model_name: str, steps: int, seed: int) -> Iterator[dict[str, torch.Tensor]]:
    """Trains a Keras 3 model in TensorFlow; yields each step's gradients (as torch tensors)."""
    import keras
    import tensorflow as tf

    from examples.keras_models import digits_cnn

    keras.utils.set_random_seed(seed)
    model = digits_cnn()
    optimizer = keras.optimizers.SGD(learning_rate=0.05, momentum=0.9)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    tracked = [v for v in model.trainable_variables if int(np.prod(v.shape)) >= MIN_NUMEL]

    @tf.function
    def gradients(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        return loss, tape.gradient(loss, tracked)

    train_x, train_y, _, _ = digits_split()
    generator = np.random.default_rng(seed)
    for step in range(steps):
        index = generator.integers(0, len(train_x), 32)
        loss, grads = gradients(tf.constant(train_x[index, ..., None]), tf.constant(train_y[index]))
        _check_finite(model_name, step, float(loss))
        yield {v.path: torch.from_numpy(g.numpy()) for v, g in zip(tracked, grads)}
        optimizer.apply_gradients(zip(grads, tracked))


def _check_finite(model_name: str, step: int, loss: float) -> None:
    if not np.isfinite(loss):
        raise RuntimeError(f"{model_name} diverged at step {step}: its gradients would not be real gradients")


def capture(model_name: str, steps: int = 240, windows: int = 4, ratios: tuple[float, ...] = RATIOS,
            seed: int = 0) -> list[Snapshot]:
    """Trains ``model_name`` and captures raw and accumulated gradients in ``windows`` windows."""
    source = _keras_gradients if model_name in KERAS_MODELS else _torch_gradients
    residuals: dict[tuple[str, float], torch.Tensor] = {}
    starts = [int(steps * (w + 1) / (windows + 1)) for w in range(windows)]
    snapshots = []
    for step, grads in enumerate(progress(source(model_name, steps, seed), f"quality: {model_name}", total=steps)):
        window = next((w for w, s in enumerate(starts) if s <= step < s + WINDOW), None)
        for name, grad in grads.items():
            if window is not None:
                snapshots.append(Snapshot(model_name, name, window, step - starts[window], "raw", None, grad.clone()))
            for ratio in ratios:
                accumulated = grad + residuals.get((name, ratio), 0)
                if window is not None:
                    snapshots.append(Snapshot(model_name, name, window, step - starts[window], "accumulated",
                                              ratio, accumulated.clone()))
                chosen = torch_topk(accumulated, ratio).indices.long()
                residual = accumulated.clone().view(-1)
                residual[chosen] = 0
                residuals[(name, ratio)] = residual.view_as(grad)
    return snapshots


def methods() -> list[tuple[str, int]]:
    """(family, stages) pairs the suite scores."""
    return [(family, stages) for family in horovod_distq.FAMILIES for stages in STAGES]


def _cases(snapshots: list[Snapshot], ratios: tuple[float, ...]):
    """(snapshot, ratio) pairs: raw gradients at every ratio, accumulated ones at their own."""
    for s in snapshots:
        for ratio in ratios if s.mode == "raw" else (s.ratio,):
            yield s, ratio


def score(snapshots: list[Snapshot], ratios: tuple[float, ...] = RATIOS) -> list[dict]:
    """achieved/target per case and method, single shot and with the closed loop."""
    records = []
    sequences: dict[tuple, list[tuple[Snapshot, float]]] = {}
    for snapshot, ratio in _cases(snapshots, ratios):
        key = (snapshot.model, snapshot.tensor, snapshot.window, snapshot.mode, ratio)
        sequences.setdefault(key, []).append((snapshot, ratio))
    for (model, tensor, window, mode, ratio), sequence in sequences.items():
        sequence.sort(key=lambda item: item[0].step)
        for family, stages in methods():
            loop = RatioController(ratio)
            for snapshot, _ in sequence:
                numel = snapshot.gradient.numel()
                target = ratio * numel
                single = sparsify(snapshot.gradient, ratio, family, stages=stages).indices.numel()
                looped = sparsify(snapshot.gradient, loop.fit_ratio(tensor), family, stages=stages).indices.numel()
                loop.update(tensor, looped, numel)
                base = {"model": model, "tensor": tensor, "window": window, "step": snapshot.step, "mode": mode,
                        "ratio": ratio, "family": family, "stages": stages, "numel": numel}
                records.append({**base, "loop": False, "achieved_over_target": single / target})
                if snapshot.step >= HISTORY:
                    records.append({**base, "loop": True, "achieved_over_target": looped / target})
    return records


def summarize(records: list[dict], min_target: float = 0) -> list[dict]:
    """Per (loop, mode, ratio, family, stages): median, p5, p95 of achieved/target, share within +-20%.

    ``min_target``: only tensors whose target count ratio * numel is at least this (a tensor whose
    target is 1.3 entries cannot land within +-20% whatever its threshold).
    """
    groups: dict[tuple, list[float]] = {}
    for r in records:
        if r["ratio"] * r["numel"] < min_target:
            continue
        groups.setdefault((r["loop"], r["mode"], r["ratio"], r["family"], r["stages"]), []).append(
            r["achieved_over_target"])
    rows = []
    for (loop, mode, ratio, family, stages), values in sorted(groups.items()):
        a = np.asarray(values)
        error = np.abs(a - 1)
        rows.append({"loop": loop, "mode": mode, "ratio": ratio, "family": family, "stages": stages,
                     "tensors": int(a.size), "median": float(np.median(a)), "p5": float(np.percentile(a, 5)),
                     "p95": float(np.percentile(a, 95)), "within_20pct": float(np.mean(error <= 0.2)),
                     "median_abs_error": float(np.median(error)), "p95_abs_error": float(np.percentile(error, 95))})
    return rows


KERAS_MODELS = ("keras_digits_cnn",)
MODELS = ("digits_cnn", "wide_mlp", "char_transformer", *KERAS_MODELS)
HELP = "achieved/target of each family on real gradients"  # its line in ``--help``


def run(models: tuple[str, ...] = MODELS, ratios: tuple[float, ...] = RATIOS,
        steps: int = 240) -> tuple[list[dict], list[Snapshot]]:
    snapshots = [s for model in models for s in capture(model, steps=steps, ratios=ratios)]
    return score(snapshots, ratios), snapshots


def report(rows: list[dict]) -> str:
    lines = [f"{'loop':<5} {'mode':<12} {'ratio':>6} {'family':<12} {'st':>2} {'n':>5} {'median':>7} {'p5':>6} "
             f"{'p95':>7} {'+-20%':>6} {'med|e|':>7} {'p95|e|':>7}"]
    for r in rows:
        lines.append(f"{'on' if r['loop'] else 'off':<5} {r['mode']:<12} {r['ratio']:>6} {r['family']:<12} "
                     f"{r['stages']:>2} {r['tensors']:>5} {r['median']:>7.3f} {r['p5']:>6.3f} {r['p95']:>7.3f} "
                     f"{r['within_20pct']:>6.0%} {r['median_abs_error']:>7.3f} {r['p95_abs_error']:>7.3f}")
    return "\n".join(lines)


def best(rows: list[dict]) -> str:
    """The best method per (loop, mode, ratio), by share within +-20% then median error."""
    lines = []
    keys = sorted({(r["loop"], r["mode"], r["ratio"]) for r in rows})
    for key in keys:
        group = [r for r in rows if (r["loop"], r["mode"], r["ratio"]) == key]
        top = max(group, key=lambda r: (r["within_20pct"], -r["median_abs_error"]))
        lines.append(f"best (loop {'on' if key[0] else 'off'}, {key[1]}, ratio {key[2]}): {top['family']} "
                     f"x{top['stages']} stages: {top['within_20pct']:.0%} within +-20%, "
                     f"median |error| {top['median_abs_error']:.3f}, p95 {top['p95_abs_error']:.3f}")
    return "\n".join(lines)


def markdown_table(rows: list[dict], loop: bool, stages: tuple[int, ...] = (1, 3)) -> str:
    """BENCHMARKS.md's table: per family and stages, share within +-20% (median / p95 |error|) per column."""
    columns = [("raw", 0.01), ("raw", 0.001), ("accumulated", 0.01), ("accumulated", 0.001)]
    cells = {(r["family"], r["stages"], r["mode"], r["ratio"]): r for r in rows if r["loop"] == loop}
    lines = ["| family | stages | " + " | ".join(f"{mode} {ratio:g}" for mode, ratio in columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for family in horovod_distq.FAMILIES:
        for stage_count in stages:
            row = [cells.get((family, stage_count, mode, ratio)) for mode, ratio in columns]
            text = ["-" if r is None else f"{r['within_20pct']:.0%} ({r['median_abs_error']:.3f} / "
                    f"{r['p95_abs_error']:.2f})" for r in row]
            lines.append(f"| {family} | {stage_count} | " + " | ".join(text) + " |")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m benchmarks quality``."""
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--steps", type=int, default=240)
    parser.add_argument("--min-target", type=float, default=100,
                        help="also summarize only tensors whose target count is at least this")


def command(args: argparse.Namespace) -> dict[str, list[dict]]:
    """``python -m benchmarks quality``: scores every method, prints the tables, writes BENCHMARKS.md's
    tables to ``quality.md`` and draws ``quality.png``; returns the summaries of all tensors and of
    those with a target of at least ``--min-target`` entries, for ``quality.json``."""
    # Imported here, not at the top: convergence_worker imports this module for its Transformer,
    # and its workers need no matplotlib.
    from benchmarks import plots

    records, snapshots = run(tuple(args.models), steps=args.steps)
    summary = {"all": summarize(records), f"target>={args.min_target:g}": summarize(records, args.min_target)}
    tables = []
    for subset, rows in summary.items():
        print(f"== {subset} tensors ==\n{report(rows)}\n{best(rows)}\n")
        for loop in (False, True):
            title = f"{subset} tensors, closed loop {'on (after 5 steps)' if loop else 'off (single shot)'}"
            tables.append(f"### {title}\n\n{markdown_table(rows, loop)}\n")
    (args.out / "quality.md").write_text("\n".join(tables))
    plots.quality(shown_snapshot(snapshots, args.models), records, args.out / "quality.png")
    return summary


def shown_snapshot(snapshots: list[Snapshot], models: list[str]) -> Snapshot:
    """The gradient ``quality.png`` draws: the Transformer's last raw feed-forward weight when that
    model ran, else the last one captured."""
    if "char_transformer" not in models:
        return snapshots[-1]
    return next(s for s in reversed(snapshots) if s.model == "char_transformer" and s.mode == "raw"
                and s.tensor.endswith("linear1.weight"))
