"""Ranks that disagree on which gradients are sparse, or how, must fail with an error, not hang.

The TensorFlow counterpart of ``torch_disagreement_check.py``; every rank runs this file with
pytest under ``horovodrun -np 2`` (tests/test_parallel_tensorflow.py).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["HOROVOD_DISTQ_AGREEMENT_TIMEOUT"] = "10"

import horovod.tensorflow as hvd
import keras
import numpy as np
import pytest
import tensorflow as tf

import horovod_distq.tensorflow as distq
from tests.parallel.common import DISAGREEING_SETTINGS, disagreement_reported
from tests.parallel.tensorflow_tape_check import all_ranks, check_close, selected_part


def step_with(compression: distq.DistQ, dtype: str = "float32") -> None:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,), dtype=dtype), keras.layers.Dense(32, dtype=dtype)])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(tf.random.normal([8, 64], dtype=dtype)))
    tape = distq.DistributedGradientTape(tape, compression=compression)
    tape.gradient(loss, model.trainable_variables)


@pytest.mark.parametrize("setting", DISAGREEING_SETTINGS)
def test_disagreeing_settings_fail_when_the_first_step_is_traced(setting: str) -> None:
    # Making DistQ runs no collective; tracing the first step checks the settings, before any
    # collective of the step runs.
    with disagreement_reported(ValueError):
        step_with(distq.DistQ(ratio=0.01, **{setting: DISAGREEING_SETTINGS[setting][hvd.rank()]}))


def test_disagreeing_gradient_dtypes_fail_in_the_exchange() -> None:
    # What settings cannot show, the exchange header does.
    dtype = "float32" if hvd.rank() == 0 else "float64"
    with disagreement_reported(tf.errors.OpError):
        step_with(distq.DistQ(ratio=0.01, min_numel=10), dtype)


def test_different_ratios_are_fine() -> None:
    """Rank 0 keeps 1% of each gradient, rank 1 20%: the ranks send unequal counts, where a wrong
    per-rank offset into the gathered pairs would show (SIDCo's code splits them evenly). Every
    rank's reduced gradients must be the average of each rank's own selection, built here from the
    ranks' raw gradients (exchanged densely) by the reference rule at each rank's ratio."""
    compression = distq.DistQ(ratio=0.01 if hvd.rank() == 0 else 0.2, min_numel=10, warmup=None)
    keras.utils.set_random_seed(0)  # the same initial weights on every rank
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32)])
    generator = np.random.default_rng(hvd.rank())  # each rank its own batch, so its own gradients
    x = tf.constant(generator.standard_normal((8, 64)), tf.float32)
    y = tf.constant(generator.standard_normal((8, 32)), tf.float32)
    with tf.GradientTape() as plain:  # no Horovod, no compression
        loss = tf.reduce_mean(tf.square(model(x) - y))
    raw = [g.numpy() for g in plain.gradient(loss, model.trainable_variables)]
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(x) - y))
    reduced = distq.DistributedGradientTape(tape, compression=compression).gradient(loss, model.trainable_variables)
    names = [v.path for v in model.trainable_variables]
    counts = all_ranks(np.array([compression.stats[name].selected for name in names]))
    assert (counts[0] < counts[1]).all(), f"the ranks' counts {counts} do not differ as their ratios do"
    for variable, grad, raw_grad in zip(model.trainable_variables, reduced, raw):
        assert compression.compresses(variable.value), variable.path
        sent = selected_part(raw_grad, compression)  # a new DistQ's first step fits at its target ratio
        assert np.count_nonzero(sent) == compression.stats[variable.path].selected, variable.path
        check_close(grad.numpy(), np.mean(all_ranks(sent), axis=0), f"{variable.path} at ratios 0.01 and 0.2")


def test_a_rank_without_distq_ends_the_job_with_an_error() -> None:
    """Rank 1 hands its tape no DistQ, so it never joins rank 0's settings check: rank 0 gives up
    after the time limit (HOROVOD_DISTQ_AGREEMENT_TIMEOUT, 10 s here) with DistQ's error, and
    rank 1, waiting in its step for rank 0, fails when rank 0 leaves. The last test of the file:
    rank 1 stays in its step until rank 0 has left."""
    if hvd.rank() == 0:
        with pytest.raises(RuntimeError, match="not every rank joined the settings check"):
            step_with(distq.DistQ(ratio=0.01, min_numel=10))
    else:
        with pytest.raises(tf.errors.OpError):
            step_with(hvd.Compression.none)
