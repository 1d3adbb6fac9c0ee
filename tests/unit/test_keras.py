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
from horovod_distq import LocalAdam, Warmup


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


def test_one_worker_reduces_nothing_and_compresses_nothing() -> None:
    """As Horovod's tape and optimizers: with one worker DistQ is not called, so fit is plain Keras's."""
    compression = distq.DistQ(ratio=0.05)
    plain = fitted(keras.optimizers.SGD(0.1))
    wrapped = fitted(distq_keras.DistributedOptimizer(keras.optimizers.SGD(0.1), compression=compression))
    assert all(np.array_equal(a, b) for a, b in zip(plain.get_weights(), wrapped.get_weights()))
    assert compression.stats == {}


def test_the_optimizer_keeps_its_configuration_and_saves_as_the_plain_optimizer(tmp_path) -> None:
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    plain = keras.optimizers.SGD(schedule, momentum=0.8, nesterov=True)
    optimizer = distq_keras.DistributedOptimizer(plain)
    assert optimizer is plain and isinstance(optimizer, keras.optimizers.SGD) and type(optimizer).__name__ == "SGD"
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
    with pytest.raises(ValueError, match="reduces its gradients already"):
        distq_keras.DistributedOptimizer(distq_keras.DistributedOptimizer(keras.optimizers.SGD()))


def test_mixed_precision_reduces_before_the_loss_scale_check() -> None:
    """Keras wraps an optimizer in a LossScaleOptimizer under mixed_float16, which applies inside a
    cond on this rank's gradients: refused there (ranks could split and wait). Wrapping the
    LossScaleOptimizer reduces before its check and trains."""
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        with pytest.raises(RuntimeError, match="LossScaleOptimizer"):
            fitted(distq_keras.DistributedOptimizer(keras.optimizers.SGD(0.1)))
        scaled = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1))
        model = fitted(distq_keras.DistributedOptimizer(scaled, compression=distq.DistQ(ratio=0.05)))
        assert all(np.all(np.isfinite(w)) for w in model.get_weights())
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


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


def test_an_adam_optimizer_moves_into_distq_by_default() -> None:
    """DistributedOptimizer(Adam, DistQ(ratio)) gives a Keras SGD and switches local Adam (with its
    dense-start warm-up) on; local_adam=False, no DistQ, or an SGD keep the optimizer."""
    compression = distq.DistQ(ratio=0.01)
    assert compression.config.warmup_schedule == Warmup(steps=50)
    optimizer = distq_keras.DistributedOptimizer(keras.optimizers.AdamW(0.002, beta_1=0.8, weight_decay=0.1),
                                                 compression=compression)
    assert isinstance(optimizer, keras.optimizers.SGD) and not isinstance(optimizer, keras.optimizers.Adam)
    assert float(optimizer.learning_rate) == pytest.approx(0.002) and optimizer.weight_decay == 0.1
    assert compression.config.adam == LocalAdam(beta1=0.8, beta2=0.999, eps=1e-7)
    assert compression.config.warmup_schedule == Warmup(steps=50, dense_steps=5)
    assert compression.memory.adam == compression.config.adam
    fitted(optimizer)  # trains, and builds the moments
    assert compression.state_dict()["error_feedback"]["adam"]["steps"]

    kept = distq.DistQ(ratio=0.01, warmup=Warmup(steps=10))
    adam = keras.optimizers.Adam(0.01)
    assert distq_keras.DistributedOptimizer(adam, compression=kept, local_adam=False) is adam
    sgd = keras.optimizers.SGD(0.1, momentum=0.9)
    assert distq_keras.DistributedOptimizer(sgd, compression=kept) is sgd and sgd.momentum == 0.9
    assert not kept.config.transforms_gradients
    assert isinstance(distq_keras.DistributedOptimizer(keras.optimizers.Adam(), hvd.Compression.fp16),
                      keras.optimizers.Adam)
    moved = distq.DistQ(ratio=0.01, warmup=Warmup(steps=10))
    distq_keras.DistributedOptimizer(keras.optimizers.Adam(), compression=moved)
    assert moved.config.warmup_schedule == Warmup(steps=10)  # a warm-up given is kept


def test_adam_that_cannot_move_or_state_applied_twice_is_refused() -> None:
    for compression in (distq.DistQ(ratio=0.01), distq.DistQ(ratio=0.01, error_feedback=False)):
        with pytest.raises(ValueError, match="local_adam=False"):
            distq_keras.DistributedOptimizer(keras.optimizers.Adam(amsgrad=compression.config.error_feedback),
                                             compression=compression)
        assert compression.config.adam is None
    with pytest.raises(ValueError, match="apply it again"):
        distq_keras.DistributedOptimizer(keras.optimizers.Adam(), compression=distq.DistQ(ratio=0.01, adam=True))
    with pytest.raises(ValueError, match="apply it again"):
        distq_keras.DistributedOptimizer(keras.optimizers.SGD(0.1, momentum=0.5),
                                         compression=distq.DistQ(ratio=0.01, momentum=0.9))
    used = distq.DistQ(ratio=0.05)
    fitted(distq_keras.DistributedOptimizer(keras.optimizers.SGD(0.1), compression=used))
    with pytest.raises(ValueError, match="used or built"):
        distq_keras.DistributedOptimizer(keras.optimizers.Adam(), compression=used)
