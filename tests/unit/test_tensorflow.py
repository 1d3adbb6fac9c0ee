"""The TensorFlow frontend: its ops against the NumPy/SciPy reference and against the torch frontend
(shared test vectors), the closed loop against the torch one, and DistQ in one process."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import horovod.tensorflow as hvd
import keras
import numpy as np
import pytest
import tensorflow as tf
import torch

import horovod_distq
import horovod_distq.tensorflow as distq_tf
import horovod_distq.torch as distq_torch
from horovod_distq.config import DistQConfig
from horovod_distq.tensorflow.ops import initial_loop_state, update_loop_state
from tests import reference

FAMILIES = list(horovod_distq.FAMILIES)
DTYPES = ["float32", "float64", "float16", "bfloat16"]
TF_DTYPES = {"float32": tf.float32, "float64": tf.float64, "float16": tf.float16, "bfloat16": tf.bfloat16}
TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
                "bfloat16": torch.bfloat16}


@pytest.fixture(scope="module", autouse=True)
def horovod() -> None:
    hvd.init()


def compute_view(x: np.ndarray) -> np.ndarray:
    """The values in the type the kernel compares in: float64 stays, narrower types become float32."""
    return x.astype(np.float64 if x.dtype == np.float64 else np.float32)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("ratio", [0.01, 0.001])
def test_matches_reference(family: str, dtype: str, ratio: float) -> None:
    x = reference.gradient_like(1 << 16, dtype)
    result = distq_tf.sparsify(tf.constant(x), ratio, family)
    stages = 3 if family == "auto" else 1
    center, threshold = reference.multi_stage(compute_view(x), family, ratio, stages)
    assert float(result.threshold) == pytest.approx(threshold, rel=1e-5)
    assert float(result.center) == pytest.approx(center, rel=1e-5, abs=1e-6 * threshold)
    expected = np.flatnonzero(reference.selection_mask(compute_view(x), float(result.center), float(result.threshold)))
    np.testing.assert_array_equal(result.indices.numpy(), expected)
    assert result.values.dtype == TF_DTYPES[dtype]
    np.testing.assert_array_equal(result.values.numpy(), x[expected])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("stages", [1, 3])
def test_same_result_as_the_torch_frontend(family: str, dtype: str, stages: int) -> None:
    x = reference.gradient_like(50_000, dtype, seed=7).reshape(250, 200)
    from_tf = distq_tf.sparsify(tf.constant(x), 0.01, family, stages=stages)
    from_torch = distq_torch.sparsify(torch.from_numpy(x.astype(np.float32)).to(TORCH_DTYPES[dtype])
                                      if dtype == "bfloat16" else torch.from_numpy(x), 0.01, family, stages=stages)
    assert float(from_tf.threshold) == pytest.approx(float(from_torch.threshold), rel=1e-5)
    np.testing.assert_array_equal(from_tf.indices.numpy(), from_torch.indices.numpy())


def test_student_t_fixed_dof_matches_torch() -> None:
    x = reference.gradient_like(20_000, "float64")
    a = distq_tf.sparsify(tf.constant(x), 0.001, "student_t", dof=5)
    b = distq_torch.sparsify(torch.from_numpy(x), 0.001, "student_t", dof=5)
    assert float(a.threshold) == pytest.approx(float(b.threshold), rel=1e-6)


def test_closed_loop_matches_the_torch_frontend() -> None:
    controller = distq_torch.RatioController(0.001)
    state = initial_loop_state(0.001)
    for selected in [9000, 4000, 900, 0, 1500, 1000, 1020]:
        assert float(tf.exp(state[0])) == pytest.approx(controller.fit_ratio("w"), rel=1e-12)
        controller.update("w", selected, 1_000_000)
        state = update_loop_state(state, selected, 1_000_000, 0.001)
    assert float(tf.exp(state[0])) == pytest.approx(controller.fit_ratio("w"), rel=1e-12)


def test_tensor_ratio_in_tf_function_does_not_retrace() -> None:
    x = tf.constant(reference.gradient_like(10_000, "float32"))
    select = tf.function(lambda ratio: tf.size(distq_tf.sparsify(x, ratio).indices))
    counts = [int(select(tf.constant(r, tf.float64))) for r in (0.1, 0.01, 0.001)]
    assert counts[0] > counts[1] > counts[2] > 0
    assert select.experimental_get_tracing_count() == 1


class TestBadInput:
    def test_nan_and_inf_are_always_selected(self) -> None:
        x = reference.gradient_like(100_000, "float32")
        x[[5, 77, 90_000]] = [np.nan, np.inf, -np.inf]
        result = distq_tf.sparsify(tf.constant(x), 0.01)
        assert {5, 77, 90_000} <= set(result.indices.numpy().tolist())
        assert float(result.threshold) == pytest.approx(reference.fit(x, "normal", 0.01)[1], rel=1e-5)

    @pytest.mark.parametrize("family", FAMILIES)
    def test_empty_and_all_zero(self, family: str) -> None:
        assert int(tf.size(distq_tf.sparsify(tf.zeros([0]), 0.01, family).indices)) == 0
        assert int(tf.size(distq_tf.sparsify(tf.zeros([5000]), 0.01, family).indices)) == 0

    @pytest.mark.parametrize("dtype", [tf.int32, tf.int64, tf.bool, tf.complex64])
    def test_non_floating_dtype_is_a_type_error(self, dtype: tf.DType) -> None:
        with pytest.raises(TypeError, match="float32, float64, float16 or bfloat16"):
            distq_tf.sparsify(tf.zeros([10], dtype), 0.01)

    @pytest.mark.parametrize("ratio", [0.0, -0.1, 1.5, float("nan")])
    def test_ratio_out_of_range(self, ratio: float) -> None:
        with pytest.raises(ValueError, match="ratio"):
            distq_tf.sparsify(tf.ones([10]), ratio)
        with pytest.raises(tf.errors.InvalidArgumentError, match="ratio"):
            distq_tf.sparsify(tf.ones([10]), tf.constant(ratio, tf.float64))

    def test_unknown_family_and_bad_parameters(self) -> None:
        with pytest.raises(ValueError, match="unknown distribution 'gauss'"):
            distq_tf.sparsify(tf.ones([10]), 0.1, "gauss")
        with pytest.raises(ValueError, match="dof"):
            distq_tf.sparsify(tf.ones([10]), 0.1, "student_t", dof=2)
        with pytest.raises(ValueError, match="stages"):
            distq_tf.sparsify(tf.ones([10]), 0.1, stages=0)


def reduce(compression: distq_tf.DistQ, tensor: tf.Tensor, name: str | None = None) -> tf.Tensor:
    """compress, Horovod's allreduce of the placeholder, decompress: what the tape does."""
    payload, ctx = compression.compress(tensor, name=name)
    return compression.decompress(hvd.allreduce(payload, op=hvd.Average), ctx)


class TestDistQ:
    def test_defaults_match_the_torch_frontend(self) -> None:
        assert distq_tf.DistQ(ratio=0.01).config == distq_torch.DistQ(ratio=0.01).config
        assert distq_tf.DistQ(ratio=0.01).config.distribution == "auto"

    def test_round_trip_returns_the_selection(self) -> None:
        g = tf.constant(reference.gradient_like(300 * 40, "float32").reshape(300, 40))
        out = reduce(distq_tf.DistQ(ratio=0.01, warmup=None, error_feedback=False, closed_loop=False), g)
        selection = distq_tf.sparsify(g, 0.01, DistQConfig.distribution)
        expected = np.zeros(g.shape.num_elements(), np.float32)
        expected[selection.indices.numpy()] = selection.values.numpy()
        np.testing.assert_array_equal(out.numpy(), expected.reshape(300, 40))

    def test_error_feedback_keeps_what_was_not_sent(self) -> None:
        compression = distq_tf.DistQ(ratio=0.01, warmup=None)
        g = tf.constant(reference.gradient_like(20_000, "float32"))
        total_sent = np.zeros(20_000, np.float32)
        for _ in range(4):
            total_sent += reduce(compression, g, name="w").numpy()
        residual = compression.memory.residual("w").numpy()
        np.testing.assert_allclose(total_sent + residual, 4 * g.numpy(), rtol=1e-5, atol=1e-8)
        stats = compression.stats["w"]
        assert stats.numel == 20_000 and 0 < stats.selected < 2000 and stats.threshold > 0

    @pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
    def test_half_gradients_keep_a_float32_residual(self, dtype: str) -> None:
        compression = distq_tf.DistQ(ratio=0.01)
        out = reduce(compression, tf.constant(reference.gradient_like(5000, dtype)), name="w")
        assert out.dtype == TF_DTYPES[dtype]
        assert compression.memory.residual("w").dtype == tf.float32

    def test_small_and_non_floating_tensors_go_dense(self) -> None:
        compression = distq_tf.DistQ(ratio=0.01)
        for tensor in (tf.ones([10]), tf.ones([5000], tf.int32)):
            payload, ctx = compression.compress(tensor, name="small")
            assert ctx is None and payload is tensor

    def test_error_feedback_needs_a_name_in_eager_mode(self) -> None:
        with pytest.raises(ValueError, match="needs a gradient name"):
            distq_tf.DistQ(ratio=0.01).compress(tf.ones([5000]))

    def test_a_gradient_that_changes_shape_is_refused(self) -> None:
        compression = distq_tf.DistQ(ratio=0.01)
        reduce(compression, tf.ones([5000]), name="w")
        with pytest.raises(ValueError, match="use a new DistQ"):
            compression.compress(tf.ones([6000]), name="w")

    def test_invalid_configuration(self) -> None:
        with pytest.raises(ValueError, match="ratio"):
            distq_tf.DistQ(ratio=0)
        with pytest.raises(ValueError, match="value_encoding"):
            distq_tf.DistQ(ratio=0.1, value_encoding="int8")

    def test_adasum_is_refused(self) -> None:
        with tf.GradientTape() as tape, pytest.raises(ValueError, match="Adasum"):
            distq_tf.DistributedGradientTape(tape, compression=distq_tf.DistQ(ratio=0.01), op=hvd.Adasum)

    def test_keras_variables_map_to_their_tf_variables(self) -> None:
        layer = keras.layers.Dense(3)
        layer.build((None, 2))
        assert all(isinstance(distq_tf.backing_variable(v), tf.Variable) for v in layer.trainable_variables)
        with pytest.raises(TypeError, match=r"tf\.Variable or a Keras variable"):
            distq_tf.backing_variable(tf.ones([2]))


class TestDistQState:
    def trained(self, ratio: float = 0.01) -> distq_tf.DistQ:
        compression = distq_tf.DistQ(ratio=ratio)
        for _ in range(2):
            reduce(compression, tf.constant(reference.gradient_like(5000, "float32")), name="w")
        return compression

    def test_state_dict_is_a_snapshot_that_restores(self) -> None:
        compression = self.trained()
        state = compression.state_dict()
        saved = state["error_feedback"]["residuals"]["w"].copy()
        reduce(compression, tf.constant(reference.gradient_like(5000, "float32")), name="w")
        np.testing.assert_array_equal(state["error_feedback"]["residuals"]["w"], saved)
        restored = distq_tf.DistQ(ratio=0.01)
        restored.load_state_dict(state)
        np.testing.assert_array_equal(restored.memory.residual("w").numpy(), saved)
        np.testing.assert_array_equal(restored.controller.loops["w"].numpy(), state["closed_loop"]["loops"]["w"])
        # Loading into a DistQ that has trained replaces its state, and restarts what the state lacks.
        compression.load_state_dict(state)
        np.testing.assert_array_equal(compression.memory.residual("w").numpy(), saved)
        compression.load_state_dict({"error_feedback": {"residuals": {}}, "closed_loop": {"target": 0.01, "loops": {}}})
        assert not compression.memory.residual("w").numpy().any()

    def test_bad_states_change_nothing(self) -> None:
        compression = self.trained()
        state = compression.state_dict()
        before = compression.memory.residual("w").numpy().copy()
        wrong_size = {"error_feedback": {"residuals": {"w": np.ones(7, np.float32)}},
                      "closed_loop": state["closed_loop"]}
        broken_loop = {"error_feedback": state["error_feedback"],
                       "closed_loop": {"target": 0.01, "loops": {"w": np.ones(3)}}}
        for bad, match in ((wrong_size, "another model"), (broken_loop, "4 floating-point"),
                           ({"error_feedback": {}}, "DistQ state"), ({"all_ranks": [state] * 2}, "saved by 2 ranks")):
            with pytest.raises(ValueError, match=match):
                compression.load_state_dict(bad)
            np.testing.assert_array_equal(compression.memory.residual("w").numpy(), before)

    def test_another_ratio_restarts_the_closed_loop_only(self) -> None:
        compression = self.trained()
        other = distq_tf.DistQ(ratio=0.05)
        other.load_state_dict(compression.state_dict(all_ranks=True))
        np.testing.assert_array_equal(other.memory.residual("w").numpy(), compression.memory.residual("w").numpy())
        assert "w" not in other.controller.loops

    @pytest.mark.parametrize("traced", [False, True], ids=["eager", "function"])
    def test_warmup_fits_at_each_step_of_the_schedule(self, traced: bool) -> None:
        # The twin of tests/unit/test_warmup.py's torch test: a dense step, then the decay, then the target.
        warmup = horovod_distq.Warmup(steps=3, dense_steps=1)
        compression = distq_tf.DistQ(ratio=0.01, warmup=warmup, error_feedback=False, closed_loop=False)
        g = tf.constant(reference.gradient_like(20_000, "float32"))

        def step(gradient: tf.Tensor) -> tf.Tensor:
            return reduce(compression, gradient, name="w")

        step = tf.function(step) if traced else step
        for ratio in [*warmup.ratios(0.01), 0.01, 0.01]:
            selection = distq_tf.sparsify(g, ratio, DistQConfig.distribution)
            expected = np.zeros(20_000, np.float32)
            expected[selection.indices.numpy()] = selection.values.numpy()
            np.testing.assert_array_equal(step(g).numpy(), expected, err_msg=f"ratio {ratio}")
        assert compression.state_dict()["warmup"] == {"steps": {"w": 6}}

    @staticmethod
    def resumed_exactly(settings: dict, stop: int) -> tuple[distq_tf.DistQ, dict]:
        """Checks that a DistQ(**settings) loading the state of one trained on the first ``stop`` of
        5 gradients sends on the rest exactly what one trained on all 5 without a break sends;
        returns the resumed DistQ and the state it loaded."""
        gradients = [tf.constant(reference.gradient_like(20_000, "float32", seed=seed)) for seed in range(5)]
        uninterrupted = distq_tf.DistQ(**settings)
        expected = [reduce(uninterrupted, g, name="w").numpy() for g in gradients]
        before = distq_tf.DistQ(**settings)
        for g in gradients[:stop]:
            reduce(before, g, name="w")
        state = before.state_dict()
        resumed = distq_tf.DistQ(**settings)
        resumed.load_state_dict(state)
        for g, sent in zip(gradients[stop:], expected[stop:]):
            np.testing.assert_array_equal(reduce(resumed, g, name="w").numpy(), sent)
        return resumed, state

    def test_a_resumed_warmup_goes_on_with_its_schedule(self) -> None:
        resumed, state = self.resumed_exactly({"ratio": 0.01, "warmup": 4}, stop=2)
        with pytest.raises(ValueError, match="warm-up"):
            resumed.load_state_dict({**state, "warmup": {"steps": {"w": -3}}})
        assert resumed.state_dict()["warmup"] == {"steps": {"w": 5}}

    def test_momentum_correction_resumes_exactly(self) -> None:
        _, state = self.resumed_exactly({"ratio": 0.01, "momentum": 0.9}, stop=2)
        assert set(state["error_feedback"]["velocities"]) == {"w"}

    def test_unnamed_eager_gradients_keep_one_state_per_size(self) -> None:
        compression = distq_tf.DistQ(ratio=0.01, error_feedback=False)
        for _ in range(10):
            for n in (5000, 3000):
                reduce(compression, tf.constant(reference.gradient_like(n, "float32")))
        assert sorted(compression.controller.loops) == ["unnamed.0.3000", "unnamed.0.5000"]


def test_log_to_writes_the_last_steps_stats_to_tensorboard(tmp_path) -> None:
    compression = distq_tf.DistQ(ratio=0.01)
    writer = tf.summary.create_file_writer(str(tmp_path))
    for step in range(3):
        reduce(compression, tf.constant(reference.gradient_like(5000, "float32")), name="w")
        written = compression.log_to(writer, step)
    writer.close()
    logged = logged_scalars(tmp_path)
    stats = compression.stats["w"]
    for tag, expected in (("distq/w/selected", stats.selected), ("distq/w/threshold", stats.threshold),
                          ("distq/step/bytes_sent", compression.bytes_sent)):
        assert [step for step, _ in logged[tag]] == [0, 1, 2], tag
        assert logged[tag][-1][1] == pytest.approx(expected, rel=1e-6) == written[tag], tag


def logged_scalars(logdir) -> dict[str, list[tuple[int, float]]]:
    logged: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(logdir.iterdir()):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                logged.setdefault(value.tag, []).append((event.step, float(tf.make_ndarray(value.tensor))))
    return logged


def test_the_keras_callback_logs_every_nth_batch_of_fit(tmp_path) -> None:
    compression = distq_tf.DistQ(ratio=0.01)
    callback = distq_tf.DistQTensorBoard(compression, tmp_path, every=2)
    thresholds = []

    class DistQStep(keras.callbacks.Callback):  # a step of DistQ before each batch's end, as a tape would run it
        def on_train_batch_end(self, batch, logs=None) -> None:
            reduce(compression, tf.constant(reference.gradient_like(5000, "float32", seed=batch)), name="w")
            thresholds.append(compression.stats["w"].threshold)

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.zeros((40, 4)), np.zeros((40, 1)), batch_size=8, epochs=1, verbose=0,
              callbacks=[DistQStep(), callback])
    logged = logged_scalars(tmp_path)
    assert [step for step, _ in logged["distq/w/threshold"]] == [0, 2, 4]
    assert [value for _, value in logged["distq/w/threshold"]] == pytest.approx(thresholds[::2], rel=1e-6)
    assert callback.step == 5
    with pytest.raises(ValueError, match="every"):
        distq_tf.DistQTensorBoard(compression, tmp_path, every=0)
