"""Train a small Keras 3 CNN on scikit-learn's bundled digits with Horovod, dense and with DistQ.

Run on 2 local workers, with Keras's ``model.fit``:

    horovodrun -np 2 -H localhost:2 --gloo .venv/bin/python examples/tensorflow2_digits.py --fit \
        --compression none distq --out runs/digits-tf

``--fit`` compiles the model with ``horovod_distq.tensorflow.keras.DistributedOptimizer`` (which
reduces the gradients of every train step across the workers, through DistQ or dense allreduce)
and trains with ``fit`` and the callbacks that go with it: variables broadcast from rank 0,
metrics averaged over ranks, DistQ's state checkpointed each epoch. Without ``--fit``, a custom
training loop in ``tf.function`` uses ``horovod_distq.tensorflow.DistributedGradientTape``
(Horovod's tape, taking Keras 3 variables). Each listed compression trains the same model from
the same initial weights on the same data shards. Rank 0 prints test accuracy and the bytes each
worker sent per step, and saves one checkpoint per run (the model and optimizer, every rank's
DistQ state beside it) plus ``summary.json``.
"""

from __future__ import annotations

import argparse
import os
import pickle
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import common
import horovod.tensorflow as hvd
import keras
import numpy as np
import tensorflow as tf
from keras_models import digits_cnn

import horovod_distq.tensorflow as distq
import horovod_distq.tensorflow.keras as distq_keras

FIT_HELP = "train with model.fit and horovod_distq.tensorflow.keras instead of a custom loop"


def train(kind: str, args: argparse.Namespace, data) -> dict:
    train_x, train_y, test_x, test_y = data
    keras.utils.set_random_seed(args.seed)
    model = digits_cnn()
    hvd.broadcast_variables([distq.backing_variable(v) for v in model.variables], root_rank=0)
    compression = common.make_compression(kind, args, hvd, distq.DistQ)
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
    numels = [int(np.prod(v.shape)) for v in model.trainable_variables]
    sent, started = [], time.perf_counter()
    logs = common.logs_telemetry(args, compression, hvd)
    writer = tf.summary.create_file_writer(str(args.logdir / kind)) if logs else None
    for index, batch in enumerate(common.batches(args, len(shard_x), generator.permutation, kind)):
        step(tf.constant(shard_x[batch]), tf.constant(shard_y[batch]))
        sent.append(common.bytes_per_step(compression, numels, hvd))
        if writer is not None:
            compression.log_to(writer, index)
    if writer is not None:
        writer.close()
    elapsed = time.perf_counter() - started
    predictions = np.argmax(model(test_x[..., None], training=False), axis=1)
    result = common.run_record(kind, args, compression, float(np.mean(predictions == test_y)), sent, elapsed)
    result["traces"] = step.experimental_get_tracing_count()
    compressed = isinstance(compression, distq.DistQ)
    # Every rank's residuals (a collective), so that rank 0's files resume every rank exactly.
    distq_state = compression.state_dict(all_ranks=True) if compressed else None
    if hvd.rank() == 0:
        prefix = tf.train.Checkpoint(model=model, optimizer=optimizer).write(str(args.out / kind))
        if compressed:
            with open(args.out / f"{kind}-distq.pkl", "wb") as file:
                pickle.dump(distq_state, file)
        result.update(checkpoint=common.checkpoint_files(f"{prefix}.*", args.out / f"{kind}-distq.pkl", compressed),
                      contents=common.checkpoint_contents(compressed))
    return result


class BytesPerStep(keras.callbacks.Callback):
    """Records the bytes this worker sent in each training batch."""

    def __init__(self, compression, numels: list[int]) -> None:
        super().__init__()
        self.compression, self.numels, self.sent = compression, numels, []

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.sent.append(common.bytes_per_step(self.compression, self.numels, hvd))


def train_with_fit(kind: str, args: argparse.Namespace, data) -> dict:
    train_x, train_y, test_x, test_y = data
    keras.utils.set_random_seed(args.seed)
    model = digits_cnn()
    compression = common.make_compression(kind, args, hvd, distq.DistQ)
    optimizer = keras.optimizers.SGD(learning_rate=args.lr, momentum=0.9)
    model.compile(
        optimizer=distq_keras.DistributedOptimizer(optimizer, compression=compression),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False,  # Horovod's collectives have no XLA kernels
    )
    # Whole batches only, so that every rank runs the same number of steps.
    per_rank = len(train_x) // hvd.size() // args.batch_size * args.batch_size
    shard = slice(hvd.rank(), per_rank * hvd.size(), hvd.size())
    numels = [int(np.prod(v.shape)) for v in model.trainable_variables]
    sent = BytesPerStep(compression, numels)
    callbacks = [distq_keras.BroadcastGlobalVariablesCallback(root_rank=0), distq_keras.MetricAverageCallback(), sent]
    compressed = isinstance(compression, distq.DistQ)
    if compressed:
        callbacks.append(distq_keras.DistQCheckpoint(compression, args.out / f"{kind}-distq.pkl"))
    if common.logs_telemetry(args, compression, hvd):
        callbacks.append(distq_keras.DistQTensorBoard(compression, args.logdir / kind))
    started = time.perf_counter()
    model.fit(train_x[shard, ..., None], train_y[shard], batch_size=args.batch_size, epochs=args.epochs,
              verbose=0, callbacks=callbacks)
    elapsed = time.perf_counter() - started
    predictions = np.argmax(model(test_x[..., None], training=False), axis=1)
    result = common.run_record(kind, args, compression, float(np.mean(predictions == test_y)), sent.sent, elapsed)
    if hvd.rank() == 0:
        prefix = tf.train.Checkpoint(model=model, optimizer=model.optimizer).write(str(args.out / kind))
        result.update(checkpoint=common.checkpoint_files(f"{prefix}.*", args.out / f"{kind}-distq.pkl", compressed),
                      contents=common.checkpoint_contents(compressed))
    return result


def main() -> None:
    args = common.parse_arguments(__doc__, "runs/digits-tf", {"--fit": FIT_HELP})
    hvd.init()
    tf.config.threading.set_intra_op_parallelism_threads(1)  # one core per worker
    common.run_all(args, hvd, train_with_fit if args.fit else train, common.digits_split(args.seed))


if __name__ == "__main__":
    main()
