"""Runnable training scripts (``python examples/<script>.py``); the models, data and options they share
are modules beside them, which ``benchmarks`` imports as ``examples.<module>``."""
