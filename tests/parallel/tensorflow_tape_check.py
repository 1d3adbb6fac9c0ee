"""Checks DistQ inside Horovod's TensorFlow gradient tape, Keras 3 models.

Every rank runs this file with pytest under ``horovodrun -np 2`` (tests/test_parallel_tensorflow.py).
Every test compares what the tape produced with an independent dense computation: each rank's
raw gradients are computed with a plain ``tf.GradientTape``, exchanged with a dense allgather, and
the expected result is built from them with the NumPy reference selection rule. Each test runs
eagerly and inside ``tf.function``.
"""

from __future__ import annotations

import os
import pickle
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import horovod.tensorflow as hvd
import keras
import numpy as np
import pytest
import tensorflow as tf

import horovod_distq.tensorflow as distq
from tests import reference
from tests.parallel.common import assert_identical_on_every_rank, same_run
from tests.reference import LocalAdamReference, MomentumCorrection

RATIO = 0.05
ENCODINGS = ("float32", "float16", "bfloat16", "sign")
pytestmark = pytest.mark.parametrize("mode", ["eager", "function"])


def make_model() -> keras.Model:
    keras.utils.set_random_seed(0)  # identical initial parameters on every rank
    return keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(128, activation="tanh"), keras.layers.Dense(10)]
    )


def batch(step: int, zero_input: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
    generator = np.random.default_rng(1000 * hvd.rank() + step)
    x = generator.standard_normal((32, 64)).astype(np.float32)
    y = generator.integers(0, 10, 32)
    return tf.constant(np.zeros_like(x) if zero_input else x), tf.constant(y)


def loss_of(model: keras.Model, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    logits = model(x)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))


def raw_gradients(model: keras.Model, x: tf.Tensor, y: tf.Tensor) -> dict[str, np.ndarray]:
    """This rank's gradients by a plain tape: no Horovod, no compression."""
    with tf.GradientTape() as tape:
        loss = loss_of(model, x, y)
    grads = tape.gradient(loss, model.trainable_variables)
    return {v.path: tf.convert_to_tensor(g).numpy() for v, g in zip(model.trainable_variables, grads)}


def all_ranks(array: np.ndarray) -> list[np.ndarray]:
    """Every rank's copy of an array, by a dense allgather."""
    return list(hvd.allgather(tf.constant(array[None])).numpy())


def selected_part(array: np.ndarray, compression: distq.DistQ, ratio: float | None = None) -> np.ndarray:
    """What the reference rule selects from ``array`` (as decoded), zeros elsewhere.

    ``ratio``: the ratio the fit ran at (the closed loop's, when it is on); the target by default.
    """
    fitted = distq.sparsify(tf.constant(array), ratio or compression.config.ratio, compression.config.distribution)
    flat = array.reshape(-1)
    mask = reference.selection_mask(flat, float(fitted.center), float(fitted.threshold))
    dense = np.zeros_like(flat)
    dense[mask] = reference.decoded_values(flat[mask], compression.config.value_encoding)
    return dense.reshape(array.shape)


def check_close(actual: np.ndarray, expected: np.ndarray, what: str, atol: float = 1e-7) -> None:
    if not np.allclose(actual, expected, rtol=1e-5, atol=atol):
        worst = np.abs(actual - expected).max()
        raise AssertionError(f"rank {hvd.rank()}: {what}: max abs difference {worst:g}")


def reduced_gradients(model, compression, x, y, mode: str, horovod_tape: bool = False, **options):
    """The tape's reduced gradients for one batch, eagerly or from a tf.function."""

    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_of(model, x, y)
        if horovod_tape:  # Horovod's own tape, fed the tf.Variables behind the Keras variables
            tape = hvd.DistributedGradientTape(tape, compression=compression, **options)
            return tape.gradient(loss, [v.value for v in model.trainable_variables])
        tape = distq.DistributedGradientTape(tape, compression=compression, **options)
        return tape.gradient(loss, model.trainable_variables)

    return step(x, y) if mode == "eager" else tf.function(step)(x, y)


def case(name: str, op=hvd.Average, predivide: float = 1.0, encoding: str = "auto", horovod_tape: bool = False):
    return pytest.param(op, predivide, encoding, horovod_tape, id=name)


@pytest.mark.parametrize(("op", "predivide", "encoding", "horovod_tape"), [
    case("average"), case("sum", op=hvd.Sum), case("predivide", predivide=2.0),
    case("horovod-tape", horovod_tape=True), *(case(encoding, encoding=encoding) for encoding in ENCODINGS),
])
def test_average_without_error_feedback(mode: str, op, predivide: float, encoding: str, horovod_tape: bool) -> None:
    model = make_model()
    compression = distq.DistQ(ratio=RATIO, warmup=None, error_feedback=False, value_encoding=encoding,
                              closed_loop=False)
    x, y = batch(0)
    raw = raw_gradients(model, x, y)
    grads = reduced_gradients(model, compression, x, y, mode, horovod_tape, op=op,
                              gradient_predivide_factor=predivide)
    scale = 1.0 / hvd.size() if op == hvd.Average else 1.0
    for variable, grad in zip(model.trainable_variables, grads):
        ranks = all_ranks(raw[variable.path])
        sparse = compression.compresses(variable.value)
        contributions = [selected_part(g, compression) for g in ranks] if sparse else ranks
        what = f"{variable.path} {mode} op={op} predivide={predivide} encoding={encoding} horovod_tape={horovod_tape}"
        check_close(grad.numpy(), np.sum(contributions, axis=0) * scale, what)
    # Named after the Keras variables by distq's tape, by position under Horovod's own.
    paths = {v.path for v in model.trainable_variables}
    expected_names = {f"gradient.{i}" for i in range(len(paths))} if horovod_tape else paths
    assert set(compression.stats) == expected_names, compression.stats
    assert sum(not s.dense for s in compression.stats.values()) == 2, compression.stats


def test_empty_selection_on_one_rank(mode: str) -> None:
    model = make_model()
    compression = distq.DistQ(ratio=RATIO, warmup=None, error_feedback=False, closed_loop=False)
    # Rank 1 sees zero inputs, so its first-layer kernel gradient is exactly zero: nothing selected.
    x, y = batch(0, zero_input=hvd.rank() == 1)
    kernel = model.trainable_variables[0]
    raw = raw_gradients(model, x, y)
    grads = reduced_gradients(model, compression, x, y, mode)
    if hvd.rank() == 1:
        assert compression.stats[kernel.path].selected == 0
    contributions = [selected_part(g, compression) for g in all_ranks(raw[kernel.path])]
    check_close(grads[0].numpy(), np.sum(contributions, axis=0) / hvd.size(), f"empty selection {mode}")


@pytest.mark.parametrize("encoding", ["auto", "sign"])
def test_error_feedback_training(mode: str, encoding: str) -> None:
    """Trains a few steps with error feedback; checks accumulated == sent + residual each step,
    the reduced gradient against every rank's sent part, that tf.function traces once, that a
    checkpoint restores the state, and that the ranks end with identical parameters."""
    model = make_model()
    compression = distq.DistQ(ratio=RATIO, warmup=None, value_encoding=encoding)
    optimizer = keras.optimizers.SGD(learning_rate=0.1, momentum=0.9)

    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_of(model, x, y)
        tape = distq.DistributedGradientTape(tape, compression=compression)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return grads

    run = tf.function(step) if mode == "function" else step
    for index in range(6):
        x, y = batch(index)
        raw = raw_gradients(model, x, y)
        residuals, loops = compression.memory.residuals, compression.controller.loops
        before = {name: residuals[name].numpy() if name in residuals else np.zeros(g.size, g.dtype)
                  for name, g in raw.items()}
        fit_ratios = {name: float(np.exp(loops[name][0])) if name in loops else RATIO for name in raw}
        grads = run(x, y)
        if index == 0 and mode == "function":
            # The first call may trace twice (once to create DistQ's variables); later ones reuse it.
            traces = run.experimental_get_tracing_count()
        for variable, grad in zip(model.trainable_variables, grads):
            name = variable.path
            if not compression.compresses(variable.value):
                continue
            accumulated = raw[name] + np.reshape(before[name], raw[name].shape)
            residual = compression.memory.residual(name).numpy().reshape(accumulated.shape)
            sent = accumulated - residual
            what = f"{name} step {index} {mode} {encoding}"
            check_close(sent, selected_part(accumulated, compression, fit_ratios[name]), what + ": sent != selection")
            check_close(sent + residual, accumulated, what + ": accumulated != sent + residual")
            check_close(grad.numpy(), np.sum(all_ranks(sent), axis=0) / hvd.size(), what + ": reduced gradient")
            stats = compression.stats[name]
            # Traced and eager gradients may differ in the last bits: count what was clearly sent.
            assert np.count_nonzero(np.abs(sent) > 1e-6) <= stats.selected < stats.numel / 10, stats
            assert stats.bytes_sent < stats.dense_bytes / 4, stats
    if mode == "function":
        assert run.experimental_get_tracing_count() == traces <= 2, (traces, run.experimental_get_tracing_count())
    check_checkpoint(compression)
    assert_identical_on_every_rank([v.numpy() for v in model.trainable_variables], all_ranks)


def check_against_numpy_model(model: keras.Model, optimizer: keras.optimizers.Optimizer, compression: distq.DistQ,
                              ranks: list, mode: str, atol: float = 1e-7) -> None:
    """5 steps: every variable's reduced gradient against the NumPy model of what each rank sends
    (``ranks``: one per rank, with a ``step(name, gradient, select)``), re-done from the ranks' raw
    gradients, sparse ones selected by the reference rule, dense ones sent whole."""

    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_of(model, x, y)
        grads = distq.DistributedGradientTape(tape, compression=compression).gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return grads

    run = tf.function(step) if mode == "function" else step
    for index in range(5):
        x, y = batch(index)
        raw = raw_gradients(model, x, y)
        grads = run(x, y)
        for variable, grad in zip(model.trainable_variables, grads):
            name = variable.path
            select = (lambda v: selected_part(v, compression)) if compression.compresses(variable.value) else None
            sent = [rank.step(name, g, select) for rank, g in zip(ranks, all_ranks(raw[name]))]
            check_close(grad.numpy(), np.mean(sent, axis=0), f"{name} step {index} {mode}", atol)


def test_momentum_correction_matches_deep_gradient_compression(mode: str) -> None:
    """DistQ(momentum=0.9) under SGD without momentum against DGC's update in NumPy (dense
    gradients send their velocity)."""
    model = make_model()
    compression = distq.DistQ(ratio=RATIO, warmup=None, momentum=0.9, closed_loop=False)
    check_against_numpy_model(model, keras.optimizers.SGD(learning_rate=0.1), compression,
                              [MomentumCorrection(0.9) for _ in range(hvd.size())], mode)
    velocities = compression.state_dict()["error_feedback"]["velocities"]
    assert set(velocities) == {v.path for v in model.trainable_variables}, velocities.keys()
    assert_identical_on_every_rank([v.numpy() for v in model.trainable_variables], all_ranks)


def test_local_adam_matches_a_numpy_model_and_resumes_exactly(mode: str) -> None:
    """DistQ(adam=...) under the SGD move_adam makes against local Adam in NumPy (sparse gradients
    selected from the accumulated directions, dense ones sending their direction); then a fresh
    DistQ loaded with the state_dict reduces a sixth batch bit-identically, one loaded without the
    moments does not. A large eps: Adam's first directions are otherwise all +-1, and which of
    equals is selected is a tie. Directions are about 1 in size and the reference's moments
    float64 (DistQ's float32): atol 1e-6."""
    model = make_model()
    optimizer, adam = distq.move_adam(keras.optimizers.Adam(0.01, epsilon=0.01))
    assert adam.eps == 0.01 and isinstance(optimizer, keras.optimizers.SGD)
    compression = distq.DistQ(ratio=RATIO, warmup=None, adam=adam, closed_loop=False)
    check_against_numpy_model(model, optimizer, compression, [LocalAdamReference(eps=0.01) for _ in range(hvd.size())],
                              mode, atol=1e-6)
    state = compression.state_dict()
    assert set(state["error_feedback"]["adam"]["steps"].values()) == {5}
    x, y = batch(5)
    expected = [g.numpy() for g in reduced_gradients(model, compression, x, y, mode)]
    for keep_moments in (True, False):
        restored = distq.DistQ(ratio=RATIO, warmup=None, adam=adam, closed_loop=False)
        saved = pickle.loads(pickle.dumps(state))
        if not keep_moments:
            del saved["error_feedback"]["adam"]
        restored.load_state_dict(saved)
        resumed = [g.numpy() for g in reduced_gradients(model, restored, x, y, mode)]
        assert same_run(resumed, expected, hvd.size()) == keep_moments, keep_moments
    assert_identical_on_every_rank([v.numpy() for v in model.trainable_variables], all_ranks)


def check_checkpoint(compression: distq.DistQ) -> None:
    """tf.train.Checkpoint saves the state; a fresh DistQ restores it when its variables are created."""
    with tempfile.TemporaryDirectory() as folder:
        path = tf.train.Checkpoint(distq=compression).save(os.path.join(folder, f"distq-{hvd.rank()}"))
        restored = distq.DistQ(ratio=RATIO, warmup=None)
        status = tf.train.Checkpoint(distq=restored).restore(path)
        for name, residual in compression.memory.residuals.items():
            # A zero gradient: the restored residual is what gets fitted; the sent entries leave it.
            restored.compress(tf.zeros(residual.shape, residual.dtype), name=name)
            changed = np.count_nonzero(restored.memory.residual(name).numpy() != residual.numpy())
            assert changed <= restored.stats[name].selected and np.count_nonzero(residual.numpy()) > changed
            loop, restored_loop = compression.controller.loops[name], restored.controller.loops[name]
            assert float(restored_loop[1]) == float(loop[0]), "closed-loop state not restored"
        status.assert_consumed()


def test_embedding_and_local_source(mode: str) -> None:
    """Sparse (IndexedSlices) gradients stay Horovod's allgather, a registered local source stays
    local, and the names DistQ keys its state by still follow the variables."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,), dtype="int32"), keras.layers.Embedding(50, 64),
                              keras.layers.Flatten(), keras.layers.Dense(40), keras.layers.Dense(10)])
    embedding, kernel, bias, local_kernel, local_bias = model.trainable_variables
    compression = distq.DistQ(ratio=RATIO, warmup=None, error_feedback=False, closed_loop=False)
    tokens = tf.constant(np.random.default_rng(hvd.rank()).integers(0, 50, (8, 4)), tf.int32)
    labels = tf.constant(np.arange(8) % 10)

    def step():
        with tf.GradientTape() as tape:
            loss = loss_of(model, tokens, labels)
        tape = distq.DistributedGradientTape(tape, compression=compression)
        tape.register_local_source(local_kernel)
        return tape.gradient(loss, model.trainable_variables)

    grads = step() if mode == "eager" else tf.function(step)()
    raw = raw_gradients(model, tokens, labels)
    assert isinstance(grads[0], tf.IndexedSlices)
    dense_embedding = tf.convert_to_tensor(grads[0]).numpy()
    check_close(dense_embedding, np.mean(all_ranks(raw[embedding.path]), axis=0), f"embedding {mode}")
    sent = [selected_part(g, compression) for g in all_ranks(raw[kernel.path])]
    check_close(grads[1].numpy(), np.mean(sent, axis=0), f"kernel next to an embedding {mode}")
    # Horovod scales a local source's gradient by 1/size and sends nothing for it.
    check_close(grads[3].numpy(), raw[local_kernel.path] / hvd.size(), f"local source {mode}")
    assert set(compression.stats) == {kernel.path, bias.path, local_bias.path}, compression.stats


def distq_training(mode: str):
    """A model, its DistQ and a training function over a range of steps (eagerly or traced).

    The model is named: DistQ's state is keyed by variable paths, and Keras numbers the paths of
    unnamed models made in one process ("sequential_1/dense_2/kernel"), as a resumed run would not.
    """
    keras.utils.set_random_seed(0)
    layers = [keras.layers.Dense(128, activation="tanh", name="hidden"), keras.layers.Dense(10, name="out")]
    model = keras.Sequential([keras.Input((64,)), *layers], name="resumable")
    compression = distq.DistQ(ratio=RATIO, warmup=None)
    optimizer = keras.optimizers.SGD(learning_rate=0.1)

    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_of(model, x, y)
        tape = distq.DistributedGradientTape(tape, compression=compression)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))

    run = tf.function(step) if mode == "function" else step

    def train(steps: range) -> None:
        for index in steps:
            run(*batch(index))

    return model, compression, train


def test_a_rank0_checkpoint_resumes_every_rank_exactly(mode: str) -> None:
    """Rank 0 alone saves DistQ's gathered state; every rank resumes from that file and ends
    identical to the uninterrupted run. Each rank loading rank 0's own residuals does not."""
    model, compression, train = distq_training(mode)
    train(range(4))
    saved = {"weights": model.get_weights(), "distq": compression.state_dict(all_ranks=True)}
    with tempfile.TemporaryDirectory() as folder:
        path = hvd.broadcast_object(os.path.join(folder, "ckpt.pkl"), root_rank=0, name="checkpoint.path")
        if hvd.rank() == 0:
            with open(path, "wb") as file:
                pickle.dump(saved, file)
        hvd.broadcast_object(True, root_rank=0, name="checkpoint.saved")  # horovod.tensorflow has no barrier
        with open(path, "rb") as file:
            checkpoint = pickle.load(file)
        hvd.broadcast_object(True, root_rank=0, name="checkpoint.read")  # rank 0's folder goes with this block
    train(range(4, 8))
    uninterrupted = model.get_weights()

    def resumed_from(distq_state: dict) -> list[np.ndarray]:
        model, compression, train = distq_training(mode)
        model.set_weights(checkpoint["weights"])
        compression.load_state_dict(distq_state)
        train(range(4, 8))
        return model.get_weights()

    resumed = resumed_from(checkpoint["distq"])
    assert same_run(resumed, uninterrupted, hvd.size()), "resumed run differs"
    rank0_only = resumed_from(checkpoint["distq"]["all_ranks"][0])
    assert not same_run(rank0_only, uninterrupted, hvd.size()), "rank 1's residual ignored?"


def test_one_distq_for_two_models_with_the_same_names_is_refused(mode: str) -> None:
    compression = distq.DistQ(ratio=0.01, min_numel=100)
    models = [keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, name="dense")], name="twin")
              for _ in range(2)]

    def step_of(model: keras.Model):
        def step() -> None:
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(model(tf.ones([4, 64])))
            tape = distq.DistributedGradientTape(tape, compression=compression)
            tape.gradient(loss, model.trainable_variables)

        return step if mode == "eager" else tf.function(step)

    first, second = (step_of(model) for model in models)
    first()
    with pytest.raises(ValueError, match="one DistQ per optimizer"):
        second()
