"""The Keras 3 digits CNN of ``tensorflow2_digits.py`` under Horovod's elastic mode, with DistQ:
workers may join and leave while it trains.

Run with one to two local workers; the discovery script prints the hosts Horovod may use (here
``localhost`` and ``127.0.0.1``, two names of this machine, one slot each):

    printf 'localhost:1\\n' > /tmp/hosts
    printf '#!/bin/sh\\ncat /tmp/hosts\\n' > /tmp/discover.sh && chmod +x /tmp/discover.sh
    horovodrun -np 1 --min-np 1 --max-np 2 --host-discovery-script /tmp/discover.sh \\
        --gloo --network-interface lo .venv/bin/python examples/tensorflow2_digits_elastic.py
    # meanwhile, in another shell: a second worker joins, then leaves
    printf 'localhost:1\\n127.0.0.1:1\\n' > /tmp/hosts;  sleep 20;  printf 'localhost:1\\n' > /tmp/hosts

The train step is one ``tf.function``, traced once per worker and run at every world size
(DistQ reads the size when the step runs under elastic mode). The model's and optimizer's
variables are kept by ``horovod_distq.tensorflow.VariablesState`` (Horovod's TensorFlow states do
not fit Keras 3), DistQ's residuals and closed-loop state join its ``commit()`` / ``restore()``
through ``horovod_distq.elastic.register``; a joining worker starts with empty residuals. Each
epoch shards the training set over the workers present. Rank 0 prints the world size, the loss and
the test accuracy after every epoch.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import common
import horovod.tensorflow as hvd
import keras
import numpy as np
import tensorflow as tf
from keras_models import digits_cnn

import horovod_distq.tensorflow as distq
from horovod_distq.elastic import register


def main() -> None:
    args = common.parse_elastic_arguments(__doc__)
    hvd.init()
    train_x, train_y, test_x, test_y = common.digits_split(0)
    train_x, test_x = train_x[..., None], test_x[..., None]
    keras.utils.set_random_seed(0)
    model = digits_cnn()
    optimizer = keras.optimizers.SGD(learning_rate=args.lr, momentum=0.9)
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    compression = distq.DistQ(ratio=args.ratio)

    @tf.function
    def step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        tape = distq.DistributedGradientTape(tape, compression=compression)
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    state = register(distq.VariablesState(model.weights + optimizer.variables, epoch=0, seen=0, batches=0), compression)
    state.register_reset_callbacks([lambda: hvd.rank() == 0 and print(f"reset: {hvd.size()} worker(s)", flush=True)])

    @hvd.elastic.run
    def train(state: distq.VariablesState) -> None:
        while state.epoch < args.epochs:
            # This epoch's order, the same on every rank; each rank takes its share of every global
            # batch, and `seen` (examples done this epoch) resumes the epoch at any world size.
            order = np.random.default_rng(state.epoch).permutation(len(train_x))
            while state.seen + args.batch_size * hvd.size() <= len(order):
                batch = order[state.seen : state.seen + args.batch_size * hvd.size()][hvd.rank() :: hvd.size()]
                loss = step(tf.constant(train_x[batch]), tf.constant(train_y[batch]))
                state.seen += args.batch_size * hvd.size()
                state.batches += 1
                if state.batches % args.commit_every == 0:
                    state.commit()
            accuracy = float(np.mean(np.argmax(model(test_x, training=False), axis=1) == test_y))
            if hvd.rank() == 0:
                print(f"epoch {state.epoch}: {hvd.size()} worker(s), loss {float(loss):.3f}, "
                      f"test accuracy {accuracy:.3f}", flush=True)
            state.epoch, state.seen = state.epoch + 1, 0
            state.commit()

    train(state)


if __name__ == "__main__":
    main()
