"""Elastic training with DistQ in a traced TensorFlow step: one worker, then two, then one.

The twin of tests/elastic/torch_train.py. The step is one ``tf.function`` traced once per
process: the first worker traces it on its own and runs the same trace on two workers and on one
again, so the world size must be read when the step runs. Each step checks that every rank holds
the same variables; rank 0 writes the log.
"""

from __future__ import annotations

import horovod.tensorflow as hvd
import numpy as np
import tensorflow as tf

import horovod_distq.tensorflow as distq
from horovod_distq.elastic import register
from horovod_distq.tensorflow.elastic import VariablesState
from tests.elastic.common import Schedule, digest, end_step, parse_arguments, write_log

args = parse_arguments()
hvd.init()
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
initial = np.random.default_rng(0)
variables = [
    tf.Variable(initial.normal(0, 32**-0.5, (32, 64)).astype(np.float32), name="hidden/kernel"),
    tf.Variable(np.zeros(64, np.float32), name="hidden/bias"),
    tf.Variable(initial.normal(0, 64**-0.5, (64, 4)).astype(np.float32), name="output/kernel"),
    tf.Variable(np.zeros(4, np.float32), name="output/bias"),
]
teacher = initial.normal(0, 32**-0.5, (32, 4)).astype(np.float32)  # the task: the same on every rank
compression = distq.DistQ(ratio=0.05, exchange=args.exchange)
schedule = Schedule(args.hosts_file, args.hosts)
state = register(VariablesState(variables, step=0, phase=0, in_phase=0, asked=[0.0, 0.0], log=[]), compression)


@tf.function
def train_step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    with tf.GradientTape() as tape:
        hidden = tf.tanh(x @ variables[0] + variables[1])
        loss = tf.reduce_mean(tf.square(hidden @ variables[2] + variables[3] - y))
    tape = distq.DistributedGradientTape(tape, compression=compression)
    for variable, gradient in zip(variables, tape.gradient(loss, variables)):
        variable.assign_sub(0.1 * gradient)
    return loss


@hvd.elastic.run
def train(state: VariablesState) -> None:
    while not schedule.finished(state):
        x = np.random.default_rng(1000 * state.step + hvd.rank()).normal(size=(64, 32)).astype(np.float32)
        loss = train_step(x, x @ teacher)
        fingerprints = hvd.allgather_object(digest([v.numpy() for v in variables]))
        mean_loss = float(hvd.allreduce(loss, name="elastic.loss"))
        end_step(state, schedule, hvd.size(), hvd.rank(), mean_loss, fingerprints)


train(state)
if hvd.rank() == 0:
    write_log(state, args.out)
