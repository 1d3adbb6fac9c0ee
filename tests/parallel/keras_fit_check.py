"""Checks ``model.fit`` with ``horovod_distq.tensorflow.keras``: Keras 3, real Horovod, every rank.

Every rank runs this file with pytest under ``horovodrun -np 2`` (tests/test_parallel_tensorflow.py).
One step of ``fit`` is compared with an independent dense computation (each rank's raw gradients
from a plain tape, exchanged by a dense allgather, reduced with the NumPy reference selection);
longer fits check what users see: identical ranks, averaged metrics, an exact resume.
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import horovod.tensorflow as hvd
import keras
import numpy as np
import pytest
import tensorflow as tf

import horovod_distq.tensorflow as distq
import horovod_distq.tensorflow.keras as distq_keras
from tests.parallel.common import assert_identical_on_every_rank, same_run
from tests.parallel.tensorflow_tape_check import all_ranks, batch, check_close, loss_of, raw_gradients, selected_part
from tests.reference import LocalAdamReference

RATIO = 0.05
LEARNING_RATE = 0.1
COMPRESSIONS = ["none", "fp16", "distq"]


def named_model(seed: int = 0) -> keras.Model:
    """The tape checks' model, named, so that a model made again has the same variable paths."""
    keras.utils.set_random_seed(seed)
    layers = [keras.layers.Dense(128, activation="tanh", name="hidden"), keras.layers.Dense(10, name="out")]
    return keras.Sequential([keras.Input((64,)), *layers], name="fitted")


def make_compression(kind: str, **options):
    return {"none": None, "fp16": hvd.Compression.fp16}.get(kind) or distq.DistQ(ratio=RATIO, warmup=None, **options)


def compiled(model: keras.Model, compression, momentum: float = 0.0) -> keras.Model:
    optimizer = keras.optimizers.SGD(learning_rate=LEARNING_RATE, momentum=momentum)
    model.compile(
        optimizer=distq_keras.DistributedOptimizer(optimizer, compression=compression),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False,
    )
    return model


def rank_data(batches: int) -> tuple[np.ndarray, np.ndarray]:
    """This rank's training data: ``batches`` batches of the tape checks."""
    pairs = [batch(step) for step in range(batches)]
    return np.concatenate([x.numpy() for x, _ in pairs]), np.concatenate([y.numpy() for _, y in pairs])


@pytest.mark.parametrize("kind", ["none", "distq"])
def test_one_step_of_fit_matches_dense_reference(kind: str) -> None:
    model = named_model()
    compression = make_compression(kind, error_feedback=False, closed_loop=False)
    compiled(model, compression)
    x, y = batch(0)
    raw = raw_gradients(model, x, y)
    before = {v.path: v.numpy() for v in model.trainable_variables}
    model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    sparse = 0
    for variable in model.trainable_variables:
        ranks = all_ranks(raw[variable.path])
        if compression is not None and compression.compresses(variable.value):
            ranks, sparse = [selected_part(g, compression) for g in ranks], sparse + 1
        expected = before[variable.path] - LEARNING_RATE * np.mean(ranks, axis=0)
        check_close(variable.numpy(), expected, f"{variable.path} after one step of fit with {kind}")
    if compression is not None:
        assert sparse == 2 and set(compression.stats) == set(before), compression.stats
        assert compression.bytes_sent < sum(s.dense_bytes for s in compression.stats.values()) / 4


@pytest.mark.parametrize("moved_by", ["move_adam", "DistributedOptimizer"])
def test_fit_with_local_adam_matches_a_numpy_model(moved_by: str) -> None:
    """Keras Adam handed to DistQ by move_adam, or by DistributedOptimizer itself given the Adam
    (the default), 3 steps of fit: each step moves every variable by the learning rate times the
    ranks' local-Adam sends re-done in NumPy (a large eps: Adam's first directions are otherwise
    all +-1, and which of equals is selected is a tie)."""
    model = named_model()
    optimizer = keras.optimizers.Adam(LEARNING_RATE, epsilon=0.01)
    if moved_by == "move_adam":
        optimizer, adam = distq.move_adam(optimizer)
        compression = distq.DistQ(ratio=RATIO, warmup=None, closed_loop=False, adam=adam)
    else:
        compression = distq.DistQ(ratio=RATIO, warmup=None, closed_loop=False)
    wrapped = distq_keras.DistributedOptimizer(optimizer, compression=compression)
    assert isinstance(wrapped, keras.optimizers.SGD) and compression.config.adam is not None
    model.compile(optimizer=wrapped, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=False)
    ranks = [LocalAdamReference(eps=0.01) for _ in range(hvd.size())]
    for step in range(3):
        x, y = batch(step)
        raw = raw_gradients(model, x, y)
        before = {v.path: v.numpy() for v in model.trainable_variables}
        model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
        for variable in model.trainable_variables:
            name = variable.path
            select = (lambda a: selected_part(a, compression)) if compression.compresses(variable.value) else None
            sent = [rank.step(name, g, select) for rank, g in zip(ranks, all_ranks(raw[name]))]
            expected = before[name] - LEARNING_RATE * np.mean(sent, axis=0)
            check_close(variable.numpy(), expected, f"{name} after step {step} of fit with local Adam", atol=1e-6)


class LogsRecorder(keras.callbacks.Callback):
    """Copies each epoch's logs as this rank computed them (placed before MetricAverageCallback)."""

    def __init__(self) -> None:
        super().__init__()
        self.epochs: list[dict] = []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.epochs.append(dict(logs or {}))


@pytest.mark.parametrize("kind", COMPRESSIONS)
def test_fit_keeps_ranks_identical_and_averages_metrics(kind: str) -> None:
    """Ranks start from different weights; the broadcast callback makes them equal, the optimizer
    keeps them equal over 2 epochs (with momentum), and the logs are the ranks' average."""
    model = compiled(named_model(seed=hvd.rank()), make_compression(kind), momentum=0.9)
    x, y = rank_data(8)
    validation = rank_data(10)[0][-64:], rank_data(10)[1][-64:]
    recorder = LogsRecorder()
    callbacks = [distq_keras.BroadcastGlobalVariablesCallback(0), recorder, distq_keras.MetricAverageCallback()]
    history = model.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0, validation_data=validation,
                        callbacks=callbacks)
    assert_identical_on_every_rank([v.numpy() for v in model.variables], all_ranks)
    for epoch, own in enumerate(recorder.epochs):
        assert set(own) == {"loss", "val_loss"}, own
        for name, value in own.items():
            average = np.mean(all_ranks(np.array(value)))
            assert history.history[name][epoch] == pytest.approx(average, rel=1e-9), (name, epoch)
            assert history.history[name][epoch] == all_ranks(np.array(history.history[name][epoch]))[1 - hvd.rank()]
    assert history.history["loss"][1] < history.history["loss"][0], history.history


def test_distq_checkpoint_resumes_fit_exactly() -> None:
    """Epoch 1's weights and DistQ checkpoint resume epoch 2 to the uninterrupted weights; the
    weights alone (residuals lost) do not."""
    x, y = rank_data(4)

    def fit(epochs: range, folder: str, weights: str | None = None, distq_state: str | None = None):
        model = named_model()
        compression = make_compression("distq")
        compiled(model, compression)
        if weights is not None:
            model.load_weights(weights)
        if distq_state is not None:
            distq_keras.DistQCheckpoint.restore(compression, distq_state)
        saving = [] if weights else [
            keras.callbacks.ModelCheckpoint(os.path.join(folder, f"model-{hvd.rank()}-{{epoch}}.weights.h5"),
                                            save_weights_only=True),
            distq_keras.DistQCheckpoint(compression, os.path.join(folder, "distq-{epoch}.pkl")),
        ]
        model.fit(x, y, batch_size=32, epochs=epochs.stop, initial_epoch=epochs.start, shuffle=False, verbose=0,
                  callbacks=saving)
        return model.get_weights()

    with tempfile.TemporaryDirectory() as own_folder:
        folder = hvd.broadcast_object(own_folder, root_rank=0, name="fit_checkpoint.folder")
        uninterrupted = fit(range(0, 2), folder)
        hvd.broadcast_object(True, root_rank=0, name="fit_checkpoint.written")
        weights = os.path.join(folder, f"model-{hvd.rank()}-1.weights.h5")
        resumed = fit(range(1, 2), folder, weights, os.path.join(folder, "distq-1.pkl"))
        without_residuals = fit(range(1, 2), folder, weights)
        hvd.broadcast_object(True, root_rank=0, name="fit_checkpoint.read")  # rank 0's folder goes with this block
    assert same_run(resumed, uninterrupted, hvd.size()), "resumed fit differs"
    assert not same_run(without_residuals, uninterrupted, hvd.size()), "residuals ignored?"


def test_a_custom_loop_reduces_through_the_optimizer_too() -> None:
    """``optimizer.apply_gradients`` in a tf.function reduces as fit does (one step, dense reference)."""
    model = named_model()
    compression = make_compression("distq", error_feedback=False, closed_loop=False)
    optimizer = distq_keras.DistributedOptimizer(keras.optimizers.SGD(LEARNING_RATE), compression=compression)
    x, y = batch(0)
    raw = raw_gradients(model, x, y)
    before = [v.numpy() for v in model.trainable_variables]

    @tf.function
    def step() -> None:
        with tf.GradientTape() as tape:
            loss = loss_of(model, x, y)
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))

    step()
    kernel = model.trainable_variables[0]
    expected = before[0] - LEARNING_RATE * np.mean([selected_part(g, compression) for g in all_ranks(raw[kernel.path])],
                                                   axis=0)
    check_close(kernel.numpy(), expected, "custom loop kernel")


def test_ranks_with_different_models_fail_before_the_first_step() -> None:
    """Rank 1's model is float64: the optimizer's build finds it on every rank (no stall)."""
    keras.utils.set_random_seed(0)
    dtype = "float32" if hvd.rank() == 0 else "float64"
    model = keras.Sequential([keras.Input((64,), dtype=dtype), keras.layers.Dense(32, dtype=dtype)], name="mixed")
    compiled(model, make_compression("distq"))
    with pytest.raises(ValueError, match="every rank must train the same model"):
        model.fit(*rank_data(1), batch_size=32, epochs=1, verbose=0,
                  callbacks=[distq_keras.BroadcastGlobalVariablesCallback(0)])
