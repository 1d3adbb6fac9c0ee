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


def step_with(compression: distq.DistQ) -> None:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32)])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(tf.random.normal([8, 64])))
    tape = distq.DistributedGradientTape(tape, compression=compression)
    tape.gradient(loss, model.trainable_variables)


def expect_error(compression: distq.DistQ, message: str, what: str) -> None:
    try:
        step_with(compression)
    except tf.errors.OpError as error:
        assert message in str(error), error
        print(f"rank {hvd.rank()}: {what}: disagreement reported: {error.message.splitlines()[0]}", flush=True)
        return
    raise AssertionError(f"{what}: went unnoticed")


def main() -> None:
    hvd.init()
    # Both compress the kernel, with different value encodings: DistQ's own header check.
    expect_error(distq.DistQ(ratio=0.01, min_numel=100, value_encoding="float16" if hvd.rank() == 0 else "sign"),
                 "Give every rank the same DistQ settings", "value encoding")
    # Both compress it, with different ratios: fine, counts may differ per rank. With different
    # min_numel (sparse on one rank, dense on the other) Horovod 0.28.1's TensorFlow allreduce does
    # not report the shape mismatch and the step hangs: a documented limit (README, "Known limits").
    step_with(distq.DistQ(ratio=0.01 if hvd.rank() == 0 else 0.2, min_numel=100))
    print(f"rank {hvd.rank()}: different ratios: fine", flush=True)


if __name__ == "__main__":
    main()
