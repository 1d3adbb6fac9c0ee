"""Benchmark suites, outside the package: ``python -m benchmarks [--out DIR] SUITE --help`` from the
repository root. They train the models of ``examples/`` on its data.

Each suite module is a subcommand of ``python -m benchmarks`` (``benchmarks/__main__.py``): it
exposes ``HELP`` (one line for the list of subcommands), ``add_arguments(parser)`` (its options)
and ``command(args)`` (runs it, prints its table, draws ``DIR/<suite>.png`` and returns the records
that go to ``DIR/<suite>.json``).
"""


class SuiteUnavailable(RuntimeError):
    """A suite cannot run on this machine (no root, no network namespaces, ...), and says why:
    ``python -m benchmarks`` prints the reason and exits with status 2, not a traceback, so that a
    caller can tell "cannot run here" from a failure."""
