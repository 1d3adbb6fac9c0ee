"""A Keras callback that writes DistQ's stats to TensorBoard (``horovod_distq.telemetry`` has the scalars)."""

from __future__ import annotations

import os
from typing import Any

import keras
import tensorflow as tf

from horovod_distq.tensorflow.compressor import DistQ


class DistQTensorBoard(keras.callbacks.Callback):
    """Writes a DistQ's stats of the last step to TensorBoard after every ``every``-th training batch.

    For ``model.fit(callbacks=[...])``, and for custom loops, which call
    ``on_train_batch_end(step)`` after each step and ``on_train_end()`` at the end, as Keras's
    ``CallbackList`` does. The scalars are those of ``DistQ.log_to``; steps count the training
    batches this callback has seen, from ``initial_step`` on.

    Args:
        compression: the DistQ handed to ``DistributedGradientTape``.
        logdir: the directory TensorBoard reads (give each rank its own with ``all_ranks``).
        every: write every this many batches.
        all_ranks: write on every rank; by default rank 0 only, and the other ranks open no file.
        initial_step: the step of the first batch (the step a resumed training starts at).

    Raises:
        ValueError: ``every`` is not a positive integer.

    Example:
        >>> model.fit(x, y, callbacks=[DistQTensorBoard(compression, "runs/distq")])
        >>> # then: tensorboard --logdir runs
    """

    def __init__(
        self, compression: DistQ, logdir: str | os.PathLike, every: int = 1, all_ranks: bool = False,
        initial_step: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ValueError(f"every must be a positive integer, got {every!r}")
        self.compression = compression
        self.logdir = os.fspath(logdir)
        self.every = every
        self.all_ranks = all_ranks
        self.step = initial_step
        self._writer: Any = None

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        step, self.step = self.step, self.step + 1
        if step % self.every or not self.compression.logs_here(self.all_ranks):
            return
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.logdir)
        self.compression.log_to(self._writer, step, all_ranks=self.all_ranks)

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._writer is not None:
            self._writer.flush()
