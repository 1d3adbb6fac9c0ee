"""The benchmark command: ``python -m benchmarks [--out DIR] {kernels,e2e,quality,tracing,scaling,convergence}``,
run from the repository root.

Each suite prints a table and writes ``DIR/<suite>.json`` and ``DIR/<suite>.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks import convergence, e2e, kernels, plots, quality, scaling, tracing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench_results"))
    suites = parser.add_subparsers(dest="suite", required=True)
    k = suites.add_parser("kernels", help="sparsify vs x.sum(), plain-torch fit, torch.topk")
    k.add_argument("--sizes", type=int, nargs="+", default=list(kernels.SIZES))
    k.add_argument("--ratios", type=float, nargs="+", default=list(kernels.RATIOS))
    k.add_argument("--repetitions", type=int, default=9)
    e = suites.add_parser("e2e", help="a worker on each of P hosts with shaped links: step time and loss per method")
    e.add_argument("--hosts", type=int, nargs="+", default=list(e2e.HOSTS), help="cluster sizes P")
    e.add_argument("--bandwidths", nargs="+", default=list(e2e.BANDWIDTHS))
    e.add_argument("--models", nargs="+", default=list(e2e.MODELS))
    e.add_argument("--methods", nargs="+", default=None,
                   help="Horovod methods and DDP methods (ddp-*); default: all of both")
    e.add_argument("--steps", type=int, default=30)
    e.add_argument("--ratio", type=float, default=0.01)
    q = suites.add_parser("quality", help="achieved/target of each family on real gradients")
    q.add_argument("--models", nargs="+", default=list(quality.MODELS))
    q.add_argument("--steps", type=int, default=240)
    q.add_argument("--min-target", type=float, default=100,
                   help="also summarize only tensors whose target count is at least this")
    t = suites.add_parser("tracing", help="Keras 3 MobileNetV2, 2 workers: first (traced) step and steady step")
    t.add_argument("--methods", nargs="+", default=list(tracing.METHODS), choices=tracing.METHODS)
    t.add_argument("--steps", type=int, default=20)
    t.add_argument("--ratio", type=float, default=0.01)
    s = suites.add_parser("scaling", help="bytes per step vs ranks: the cost model to 1024, runs of 2 to 8")
    s.add_argument("--models", nargs="+", default=["digits_cnn", "wide_mlp"])
    s.add_argument("--measured-model", default="digits_cnn")
    s.add_argument("--ranks", type=int, nargs="+", default=list(scaling.MEASURED_RANKS))
    s.add_argument("--ratios", type=float, nargs="+", default=list(scaling.RATIOS))
    s.add_argument("--steps", type=int, default=10)
    c = suites.add_parser("convergence", help="2 workers, hundreds of steps: validation loss per method vs dense")
    c.add_argument("--models", nargs="+", default=list(convergence.MODELS))
    c.add_argument("--ratios", type=float, nargs="+", default=list(convergence.RATIOS))
    c.add_argument("--methods", nargs="+", default=None, help="default: every method")
    c.add_argument("--steps", type=int, default=300)
    c.add_argument("--warmup-steps", type=int, default=50, help="distq-warmup's decaying steps")
    args = parser.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    if args.suite == "kernels":
        records = kernels.run(tuple(args.sizes), tuple(args.ratios), args.repetitions)
        print(kernels.report(records))
        plots.kernels(records, args.out / "kernels.png")
    elif args.suite == "quality":
        records, snapshots = quality.run(tuple(args.models), steps=args.steps)
        summary = {"all": quality.summarize(records), f"target>={args.min_target:g}":
                   quality.summarize(records, args.min_target)}
        tables = []
        for subset, rows in summary.items():
            print(f"== {subset} tensors ==\n{quality.report(rows)}\n{quality.best(rows)}\n")
            for loop in (False, True):
                title = f"{subset} tensors, closed loop {'on (after 5 steps)' if loop else 'off (single shot)'}"
                tables.append(f"### {title}\n\n{quality.markdown_table(rows, loop)}\n")
        (args.out / "quality.md").write_text("\n".join(tables))
        shown = next(s for s in reversed(snapshots) if s.model == "char_transformer" and s.mode == "raw"
                     and s.tensor.endswith("linear1.weight")) if "char_transformer" in args.models else snapshots[-1]
        plots.quality(shown, records, args.out / "quality.png")
        records = summary
    elif args.suite == "scaling":
        model_records = scaling.modelled(tuple(args.models), tuple(args.ratios))
        measured_records = scaling.measured(args.measured_model, tuple(args.ratios), tuple(args.ranks), args.steps)
        print(scaling.report(model_records, measured_records))
        plots.scaling(model_records, args.out / "scaling.png")
        records = {"model": model_records, "measured": measured_records}
    elif args.suite == "convergence":
        records = convergence.run(tuple(args.models), tuple(args.ratios), args.steps,
                                  tuple(args.methods or convergence.METHODS), args.warmup_steps)
        print(convergence.report(records))
        plots.convergence(records, args.out / "convergence.png")
    elif args.suite == "tracing":
        records = tracing.run(tuple(args.methods), args.steps, args.ratio)
        print(tracing.report(records))
        plots.tracing(records, args.out / "tracing.png")
    else:
        try:
            records = e2e.run(tuple(args.bandwidths), tuple(args.models), args.methods, args.steps, args.ratio,
                              tuple(args.hosts))
        except e2e.ClusterUnavailable as error:
            print(f"e2e: {error}", file=sys.stderr)
            return 2
        print(e2e.report(records))
        plots.e2e(records, args.out / "e2e.png")
    (args.out / f"{args.suite}.json").write_text(json.dumps(records, indent=2) + "\n")
    print(f"wrote {args.out / (args.suite + '.json')} and {args.out / (args.suite + '.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
