"""One method of the tracing suite under ``horovodrun -np 2``: the first step (trace and run) and
the steady step time of a Keras 3 model with many gradient tensors.

Started by ``python -m benchmarks tracing`` (benchmarks/tracing.py), once per method; rank 0
writes the JSON record to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's warnings stay: the suite counts them

import horovod.tensorflow as hvd
import keras
import numpy as np
import tensorflow as tf

import horovod_distq.tensorflow as distq
import horovod_distq.tensorflow.keras as distq_keras
from benchmarks.tracing import METHODS


def make_compression(method: str, ratio: float):
    kind = method.split("-", 1)[1]
    return {"dense": hvd.Compression.none, "fp16": hvd.Compression.fp16}.get(kind) or distq.DistQ(ratio=ratio)


def mobilenet(image_size: int) -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.applications.MobileNetV2(input_shape=(image_size, image_size, 3), weights=None, classes=10)


class StepTimer(keras.callbacks.Callback):
    """Each training batch's seconds, every batch started on every rank together (so a step takes
    the slowest rank's time)."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        hvd.allreduce(tf.zeros([1]), name="step.start")
        self.started = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.seconds.append(time.perf_counter() - self.started)


def timed_steps(method: str, model: keras.Model, compression, args: argparse.Namespace) -> list[float]:
    """Trains ``args.steps + 1`` steps of ``method`` on random batches; returns each step's seconds."""
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    generator = np.random.default_rng(hvd.rank())
    size = (args.batch_size * (args.steps + 1), args.image_size, args.image_size, 3)
    x, y = generator.standard_normal(size).astype(np.float32), generator.integers(0, 10, size[0])
    timer = StepTimer()
    if method.startswith("fit-"):
        optimizer = distq_keras.DistributedOptimizer(keras.optimizers.SGD(0.01), compression=compression)
        model.compile(optimizer=optimizer, loss=loss_fn, jit_compile=False)
        # As users run it: the broadcast callback builds the optimizer (and DistQ's state) eagerly.
        callbacks = [distq_keras.BroadcastGlobalVariablesCallback(root_rank=0), timer]
        model.fit(x, y, batch_size=args.batch_size, epochs=1, shuffle=False, verbose=0, callbacks=callbacks)
        return timer.seconds
    optimizer = keras.optimizers.SGD(0.01)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        tape = distq.DistributedGradientTape(tape, compression=compression)
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    distq_keras.broadcast_variables(model.variables, root_rank=0)
    for start in range(0, size[0], args.batch_size):
        timer.on_train_batch_begin(start)
        float(step(tf.constant(x[start : start + args.batch_size]), tf.constant(y[start : start + args.batch_size])))
        timer.on_train_batch_end(start)
    return timer.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--method", choices=METHODS, required=True)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--ratio", type=float, default=0.01)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    hvd.init()
    tf.config.threading.set_intra_op_parallelism_threads(1)  # one core per worker
    model = mobilenet(args.image_size)
    seconds = timed_steps(args.method, model, make_compression(args.method, args.ratio), args)
    if hvd.rank() == 0:
        record = {
            "method": args.method,
            "gradient_tensors": len(model.trainable_variables),
            "parameters": int(sum(np.prod(v.shape) for v in model.trainable_variables)),
            "first_step_s": seconds[0],
            "steady_step_ms": float(np.median(seconds[1:])) * 1e3,
            "steps": args.steps,
        }
        with open(args.out, "w") as file:
            json.dump(record, file, indent=2)


if __name__ == "__main__":
    main()
