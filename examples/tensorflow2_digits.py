"""Train a small Keras 3 CNN on scikit-learn's bundled digits with Horovod, dense and with DistQ.

Run on 2 local workers:

    horovodrun -np 2 -H localhost:2 --gloo .venv/bin/python examples/tensorflow2_digits.py \
        --compression none distq --out runs/digits-tf

A custom training loop in ``tf.function``: ``horovod_distq.tensorflow.DistributedGradientTape``
(Horovod's tape, taking Keras 3 variables) with ``compression=DistQ(...)``. Each listed
compression trains the same model from the same initial weights on the same data shards. Rank 0
prints test accuracy and the bytes each worker sent per step, and saves one checkpoint per run
(model, optimizer and DistQ state, with ``tf.train.Checkpoint``) plus ``summary.json``.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import horovod.tensorflow as hvd
import keras
import numpy as np
import tensorflow as tf

import horovod_distq.tensorflow as distq
from horovod_distq.bench.data import digits_split
from horovod_distq.bench.examples import checkpoint_contents, parse_arguments, print_and_save
from horovod_distq.bench.keras_models import digits_cnn


def make_compression(kind: str, args: argparse.Namespace):
    if kind == "none":
        return hvd.Compression.none
    if kind == "fp16":
        return hvd.Compression.fp16
    return distq.DistQ(ratio=args.ratio, distribution=args.distribution, value_encoding=args.value_encoding)


def bytes_per_step(model: keras.Model, compression) -> int:
    """Bytes this worker contributed to the collectives in the last step."""
    if isinstance(compression, distq.DistQ):
        return compression.bytes_sent
    itemsize = 2 if compression is hvd.Compression.fp16 else 4
    return sum(int(np.prod(v.shape)) * itemsize for v in model.trainable_variables)


def train(kind: str, args: argparse.Namespace, data) -> dict:
    train_x, train_y, test_x, test_y = data
    keras.utils.set_random_seed(args.seed)
    model = digits_cnn()
    hvd.broadcast_variables([distq.backing_variable(v) for v in model.variables], root_rank=0)
    compression = make_compression(kind, args)
    optimizer = keras.optimizers.SGD(learning_rate=args.lr, momentum=0.9)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        tape = distq.DistributedGradientTape(tape, compression=compression)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    shard_x, shard_y = train_x[hvd.rank() :: hvd.size(), ..., None], train_y[hvd.rank() :: hvd.size()]
    generator = np.random.default_rng(args.seed + hvd.rank())
    steps, sent, started = 0, [], time.perf_counter()
    for _ in range(args.epochs):
        order = generator.permutation(len(shard_x))
        # Every rank runs the same number of steps: allreduce has no partial participation.
        for start in range(0, len(order) - args.batch_size + 1, args.batch_size):
            batch = order[start : start + args.batch_size]
            step(tf.constant(shard_x[batch]), tf.constant(shard_y[batch]))
            sent.append(bytes_per_step(model, compression))
            steps += 1
    elapsed = time.perf_counter() - started
    predictions = np.argmax(model(test_x[..., None], training=False), axis=1)
    result = {
        "compression": kind,
        "test_accuracy": float(np.mean(predictions == test_y)),
        "steps": steps,
        "bytes_sent_per_step": float(np.mean(sent)),
        "seconds": elapsed,
        "traces": step.experimental_get_tracing_count(),
    }
    if isinstance(compression, distq.DistQ):
        sparse = [s for s in compression.stats.values() if not s.dense]
        result["achieved_ratio"] = float(np.mean([s.achieved_ratio for s in sparse]))
        result.update(ratio=args.ratio, distribution=args.distribution, value_encoding=args.value_encoding)
    if hvd.rank() == 0:
        objects = {"model": model, "optimizer": optimizer}
        if isinstance(compression, distq.DistQ):
            objects["distq"] = compression
        prefix = tf.train.Checkpoint(**objects).write(str(args.out / kind))
        result.update(checkpoint=f"{prefix}.*", contents=checkpoint_contents("distq" in objects))
    return result


def main() -> None:
    args = parse_arguments(__doc__, "runs/digits-tf")

    hvd.init()
    tf.config.threading.set_intra_op_parallelism_threads(1)  # one core per worker
    args.out.mkdir(parents=True, exist_ok=True)
    data = digits_split(args.seed)
    results = [train(kind, args, data) for kind in args.compression]
    if hvd.rank() != 0:
        return
    print_and_save(results, hvd.size(), args.out)


if __name__ == "__main__":
    main()
