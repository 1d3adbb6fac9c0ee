"""Benchmark suites: ``python -m horovod_distq.bench {kernels,e2e} --help``."""
