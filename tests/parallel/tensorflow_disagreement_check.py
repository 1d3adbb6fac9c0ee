"""Ranks that disagree on which gradients are sparse, or how, must fail with an error, not hang.

Run under ``horovodrun -np 2``; the TensorFlow counterpart of ``torch_disagreement_check.py``.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import horovod.tensorflow as hvd
import keras
import tensorflow as tf

import horovod_distq.tensorflow as distq

SETTINGS_MESSAGE = "Give every rank the same DistQ settings"


def step_with(compression: distq.DistQ, dtype: str = "float32") -> None:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,), dtype=dtype), keras.layers.Dense(32, dtype=dtype)])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(tf.random.normal([8, 64], dtype=dtype)))
    tape = distq.DistributedGradientTape(tape, compression=compression)
    tape.gradient(loss, model.trainable_variables)


def expect_error(action, error_type: type[Exception], what: str) -> None:
    try:
        action()
    except error_type as error:
        assert SETTINGS_MESSAGE in str(error), error
        print(f"rank {hvd.rank()}: {what}: disagreement reported: {str(error).splitlines()[0]}", flush=True)
        return
    raise AssertionError(f"{what}: went unnoticed")


def main() -> None:
    hvd.init()
    # Settings that decide which gradients are sparse, or how values travel, are compared when the
    # compressor is made: rank 0 would compress the kernel, rank 1 send it dense.
    expect_error(lambda: distq.DistQ(ratio=0.01, min_numel=100 if hvd.rank() == 0 else 10_000), ValueError,
                 "min_numel")
    expect_error(lambda: distq.DistQ(ratio=0.01, value_encoding="float16" if hvd.rank() == 0 else "sign"),
                 ValueError, "value encoding")
    # What settings cannot show, the exchange header does: here the gradients' dtypes differ.
    dtype = "float32" if hvd.rank() == 0 else "float64"
    expect_error(lambda: step_with(distq.DistQ(ratio=0.01, min_numel=10), dtype), tf.errors.OpError,
                 "gradient dtype")
    # Different ratios are fine: counts may differ per rank.
    step_with(distq.DistQ(ratio=0.01 if hvd.rank() == 0 else 0.2, min_numel=10))
    print(f"rank {hvd.rank()}: different ratios: fine", flush=True)


if __name__ == "__main__":
    main()
