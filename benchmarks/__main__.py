"""The benchmark command: ``python -m benchmarks [--out DIR] SUITE [options]``, run from the repository
root; ``python -m benchmarks SUITE --help`` lists a suite's options.

Each suite prints a table and writes ``DIR/<suite>.json`` and ``DIR/<suite>.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import ModuleType

from benchmarks import SuiteUnavailable, convergence, e2e, kernels, quality, scaling, time_to_accuracy, tracing

# The subcommands, in the order ``--help`` lists them; each module defines its own options and run.
SUITES: tuple[ModuleType, ...] = (kernels, e2e, quality, tracing, scaling, convergence, time_to_accuracy)


def suite_name(suite: ModuleType) -> str:
    """A suite's subcommand, which also names its output files: its module's name."""
    return suite.__name__.rpartition(".")[2]


def build_parser() -> argparse.ArgumentParser:
    """``--out`` before the subcommand (as the Makefile and BENCHMARKS.md call it), then one
    subcommand per suite with the options that suite's ``add_arguments`` declares."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench_results"))
    subcommands = parser.add_subparsers(dest="suite", required=True)
    for suite in SUITES:
        subparser = subcommands.add_parser(suite_name(suite), help=suite.HELP, description=suite.__doc__,
                                           formatter_class=argparse.RawDescriptionHelpFormatter)
        suite.add_arguments(subparser)
        subparser.set_defaults(command=suite.command)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the chosen suite and writes its records; exit status 2 when it cannot run on this machine."""
    args = build_parser().parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        records = args.command(args)
    except SuiteUnavailable as error:
        print(f"{args.suite}: {error}", file=sys.stderr)
        return 2
    (args.out / f"{args.suite}.json").write_text(json.dumps(records, indent=2) + "\n")
    print(f"wrote {args.out / (args.suite + '.json')} and {args.out / (args.suite + '.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
