"""The number of ranks a TensorFlow step computes with, when it is read.

A traced step normally bakes the world size in: it is fixed for the life of a Horovod job. Under
Horovod's elastic mode (``horovodrun --min-np/--max-np``, which sets ``HOROVOD_ELASTIC=1``) one
trace runs at every world size the job passes through, so, as Horovod's own ops do there, a
traced step reads the size when it runs. Eager code reads it at every call anyway.
"""

from __future__ import annotations

import os

import horovod.tensorflow as hvd
import tensorflow as tf


def elastic_mode() -> bool:
    """Whether this job runs under Horovod's elastic mode (workers may join and leave)."""
    return bool(int(os.environ.get("HOROVOD_ELASTIC", "0")))


def size_changes_between_runs() -> bool:
    """Whether the step being built may run at other world sizes than the present one: a traced
    function under Horovod's elastic mode."""
    return elastic_mode() and not tf.executing_eagerly()


def ranks(process_set: hvd.ProcessSet) -> int | tf.Tensor:
    """The size of ``process_set``: an int, or an int64 scalar read when the step runs where
    :func:`size_changes_between_runs`."""
    if size_changes_between_runs():
        return tf.cast(hvd.size_op(process_set_id=process_set.process_set_id), tf.int64)
    return process_set.size()


def reduces(process_set: hvd.ProcessSet) -> bool | tf.Tensor:
    """Whether this rank reduces with others: it belongs to ``process_set`` and the set has more
    than one rank (what Horovod's tape asks). A bool, or a bool scalar read when the step runs
    where :func:`size_changes_between_runs`."""
    if size_changes_between_runs():
        process_set_id = process_set.process_set_id
        return tf.logical_and(
            tf.equal(hvd.process_set_included_op(process_set_id=process_set_id), 1),
            tf.greater(hvd.size_op(process_set_id=process_set_id), 1),
        )
    return bool(process_set.included() and process_set.size() > 1)
