"""``horovod_distq.tensorflow.keras`` in one process: what the optimizer refuses, what it saves,
and that one worker's fit is plain Keras's (the 2-worker checks: tests/parallel/keras_fit_check.py)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import horovod.tensorflow as hvd
import keras
import numpy as np
import pytest
import tensorflow as tf

import horovod_distq.tensorflow as distq
import horovod_distq.tensorflow.keras as distq_keras
from horovod_distq import wire


@pytest.fixture(scope="module", autouse=True)
def horovod() -> None:
    hvd.init()


def small_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    layers = [keras.layers.Dense(96, name="hidden"), keras.layers.Dense(3, name="out")]
    return keras.Sequential([keras.Input((16,)), *layers], name="small")


def data() -> tuple[np.ndarray, np.ndarray]:
    generator = np.random.default_rng(0)
    return generator.standard_normal((64, 16)).astype(np.float32), generator.integers(0, 3, 64)


def fitted(optimizer: keras.optimizers.Optimizer, jit_compile: bool = False) -> keras.Model:
    model = small_model()
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=jit_compile)
    model.fit(*data(), batch_size=16, epochs=2, shuffle=False, verbose=0)
    return model


def test_one_worker_fits_exactly_as_plain_keras() -> None:
    plain = fitted(keras.optimizers.Adam(0.01))
    wrapped = fitted(distq_keras.DistributedOptimizer(keras.optimizers.Adam(0.01)))
    assert all(np.array_equal(a, b) for a, b in zip(plain.get_weights(), wrapped.get_weights()))


def test_one_worker_fit_with_distq_compresses_and_fills_stats() -> None:
    compression = distq.DistQ(ratio=0.05)
    fitted(distq_keras.DistributedOptimizer(keras.optimizers.SGD(0.1), compression=compression))
    assert set(compression.stats) == {"small/hidden/kernel", "small/hidden/bias", "small/out/kernel",
                                      "small/out/bias"}, compression.stats
    kernel = compression.stats["small/hidden/kernel"]
    assert not kernel.dense and 0 < kernel.selected < kernel.numel / 5, kernel
    # One round a step: one header for the step's compressed tensor(s), none per tensor.
    assert compression.exchange.tensor_header_bytes == 0
    assert compression.bytes_sent == sum(s.bytes_sent for s in compression.stats.values()) + wire.header_bytes(1)


def test_the_copy_keeps_the_configuration_and_saves_as_the_plain_optimizer(tmp_path) -> None:
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    optimizer = distq_keras.DistributedOptimizer(keras.optimizers.SGD(schedule, momentum=0.8, nesterov=True))
    assert isinstance(optimizer, keras.optimizers.SGD) and type(optimizer).__name__ == "SGD"
    assert optimizer.momentum == 0.8 and optimizer.nesterov
    model = fitted(optimizer)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert type(loaded.optimizer) is keras.optimizers.SGD
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), loaded.get_weights()))


def test_misuse_is_refused_with_a_clear_error() -> None:
    used = keras.optimizers.SGD(0.1)
    used.build(small_model().trainable_variables)
    with pytest.raises(ValueError, match="before it is used"):
        distq_keras.DistributedOptimizer(used)
    with pytest.raises(TypeError, match="Keras 3 optimizer"):
        distq_keras.DistributedOptimizer(object())
    with pytest.raises(ValueError, match=r"Average or hvd\.Sum"):
        distq_keras.DistributedOptimizer(keras.optimizers.SGD(), op=hvd.Adasum)
    with pytest.raises(ValueError, match=r"needs op=hvd\.Average"):
        distq_keras.DistributedOptimizer(keras.optimizers.SGD(), op=hvd.Sum, gradient_predivide_factor=2.0)
    with pytest.raises(RuntimeError, match="jit_compile=False"):
        fitted(distq_keras.DistributedOptimizer(keras.optimizers.SGD(0.1)), jit_compile=True)


def test_distq_made_inside_a_tf_function_says_to_make_it_outside() -> None:
    @tf.function
    def step() -> None:
        distq.DistQ(ratio=0.01)

    with pytest.raises(ValueError, match=r"outside any tf\.function"):
        step()


def test_broadcast_variables_takes_keras_variables() -> None:
    model = small_model()
    before = model.get_weights()
    distq_keras.broadcast_variables(model.variables + model.variables, root_rank=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_distq_checkpoint_writes_what_restores(tmp_path) -> None:
    compression = distq.DistQ(ratio=0.05)
    model = small_model()
    model.compile(optimizer=distq_keras.DistributedOptimizer(keras.optimizers.SGD(0.1), compression=compression),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    model.fit(*data(), batch_size=16, epochs=2, shuffle=False, verbose=0,
              callbacks=[distq_keras.DistQCheckpoint(compression, tmp_path / "ckpt" / "distq-{epoch}.pkl")])
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["distq-1.pkl", "distq-2.pkl"]
    restored = distq.DistQ(ratio=0.05)
    distq_keras.DistQCheckpoint.restore(restored, tmp_path / "ckpt" / "distq-2.pkl")
    for name, residual in compression.memory.residuals.items():
        assert np.array_equal(restored.memory.residual(name).numpy(), residual.numpy()), name
    with pytest.raises(TypeError, match="DistQ"):
        distq_keras.DistQCheckpoint(hvd.Compression.fp16, tmp_path)


@pytest.mark.parametrize("built", [True, False])
def test_a_built_optimizer_traces_its_first_step_once(built: bool) -> None:
    """Building the optimizer (as fit's broadcast callback does) creates DistQ's state eagerly, so
    the first traced step creates no variable and is traced once; unbuilt, it is traced twice."""
    model = small_model()
    compression = distq.DistQ(ratio=0.05)
    optimizer = distq_keras.DistributedOptimizer(keras.optimizers.SGD(0.1, momentum=0.9), compression=compression)
    if built:
        optimizer.build(model.trainable_variables)
        assert set(compression.memory.residuals) == set(compression.controller.loops) == {"small/hidden/kernel"}
    x, y = data()

    @tf.function
    def step() -> None:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=model(x)))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))

    step()
    step()
    assert step.experimental_get_tracing_count() == (1 if built else 2)
