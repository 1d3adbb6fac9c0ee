"""Benchmark suites, outside the package: ``python -m benchmarks [--out DIR] {kernels,e2e,quality} --help``
from the repository root. They train the models of ``examples/`` on its data."""
