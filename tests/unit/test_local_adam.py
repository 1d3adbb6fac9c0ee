"""Local Adam: its settings, ``move_adam`` in torch and Keras (refusing what it cannot take over,
changing nothing), its checkpoint format, and that local Adam sent dense under the SGD that
``move_adam`` makes trains exactly as the Adam optimizer it came from, on one worker."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch

import horovod_distq.tensorflow as tf_distq
from horovod_distq import LocalAdam
from horovod_distq.config import DistQConfig
from horovod_distq.local_adam import local_adam_from, moved_adam
from horovod_distq.state import checked_adam_moments
from horovod_distq.tensorflow.error_feedback import ErrorFeedback as TensorFlowErrorFeedback
from horovod_distq.torch import DistQ, move_adam
from horovod_distq.torch.error_feedback import ErrorFeedback
from tests.reference import LocalAdamReference


def test_settings_are_checked() -> None:
    assert local_adam_from(True) == LocalAdam() and local_adam_from(None) is None and local_adam_from(False) is None
    for bad in ({"beta1": 1.0}, {"beta2": -0.1}, {"eps": 0.0}, {"eps": float("nan")}, {"beta1": True}):
        with pytest.raises(ValueError, match="LocalAdam"):
            LocalAdam(**bad)
    with pytest.raises(ValueError, match="adam must be"):
        local_adam_from(0.9)
    with pytest.raises(ValueError, match="not both"):
        DistQConfig(ratio=0.01, adam=True, momentum=0.9)
    with pytest.raises(ValueError, match="error_feedback=True"):
        DistQConfig(ratio=0.01, adam=True, error_feedback=False)
    assert DistQConfig(ratio=0.01, adam=True).adam == LocalAdam()


def test_the_rules() -> None:
    assert moved_adam([(0.9, 0.99)] * 2, [1e-6] * 2, refused={}, optimizer="Adam") == LocalAdam(0.9, 0.99, 1e-6)
    with pytest.raises(ValueError, match="different"):
        moved_adam([(0.9, 0.99), (0.8, 0.99)], [1e-6, 1e-6], refused={}, optimizer="Adam")
    with pytest.raises(ValueError, match="amsgrad"):
        moved_adam([(0.9, 0.99)], [1e-6], refused={"amsgrad": True, "maximize": False}, optimizer="Adam")


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))


@pytest.mark.parametrize("adam_class", [torch.optim.Adam, torch.optim.AdamW])
def test_torch_local_adam_sent_dense_is_adam(adam_class: type) -> None:
    """SGD from move_adam, fed local Adam's directions (what a dense step sends), moves the
    parameters as the Adam or AdamW optimizer itself does, weight decay included."""
    weight_decay = 0.1 if adam_class is torch.optim.AdamW else 0.0
    reference, moved = _model(), _model()
    adam = adam_class(reference.parameters(), lr=0.01, betas=(0.8, 0.99), weight_decay=weight_decay)
    sgd, settings = move_adam(adam_class(moved.parameters(), lr=0.01, betas=(0.8, 0.99), weight_decay=weight_decay))
    assert settings == LocalAdam(0.8, 0.99, 1e-8) and isinstance(sgd, torch.optim.SGD)
    memory = ErrorFeedback(adam=settings)
    generator = torch.Generator().manual_seed(1)
    for _ in range(6):
        x = torch.randn(4, 6, generator=generator)
        for model, optimizer in ((reference, adam), (moved, sgd)):
            optimizer.zero_grad()
            model(x).pow(2).sum().backward()
        for name, parameter in moved.named_parameters():
            parameter.grad = memory.flush(name, parameter.grad)
        adam.step()
        sgd.step()
    for expected, actual in zip(reference.parameters(), moved.parameters(), strict=True):
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)


def test_torch_directions_match_the_numpy_model_and_a_checkpoint_resumes_them() -> None:
    memory, reference = ErrorFeedback(adam=LocalAdam()), LocalAdamReference()
    generator = torch.Generator().manual_seed(2)
    for step in range(4):
        if step == 2:  # a checkpoint, loaded into a fresh one
            state = memory.state_dict()
            assert state["adam"]["steps"] == {"w": 2}
            memory = ErrorFeedback(adam=LocalAdam())
            memory.load_state_dict(state)
        gradient = torch.randn(50, generator=generator)
        np.testing.assert_allclose(memory.flush("w", gradient).numpy(), reference.step("w", gradient.numpy(), None),
                                   rtol=1e-5, atol=1e-6)


def test_torch_16_bit_gradients_keep_float32_moments() -> None:
    memory = ErrorFeedback(adam=LocalAdam())
    direction = memory.flush("w", torch.full((8,), 1e-3, dtype=torch.float16))
    assert direction.dtype == torch.float16
    assert memory.state_dict()["adam"]["second_moments"]["w"].dtype == torch.float32
    torch.testing.assert_close(direction.float(), torch.ones(8), rtol=1e-3, atol=0)


def test_torch_refusals_change_nothing() -> None:
    model = _model()
    with pytest.raises(ValueError, match="amsgrad"):
        move_adam(torch.optim.Adam(model.parameters(), amsgrad=True))
    with pytest.raises(ValueError, match="L2 weight_decay"):
        move_adam(torch.optim.Adam(model.parameters(), weight_decay=0.1))
    with pytest.raises(ValueError, match="maximize"):
        move_adam(torch.optim.Adam(model.parameters(), maximize=True))
    with pytest.raises(ValueError, match="different"):
        move_adam(torch.optim.Adam([{"params": model[0].parameters(), "betas": (0.5, 0.9)},
                                    {"params": model[2].parameters()}]))
    with pytest.raises(TypeError, match="SGD"):
        move_adam(torch.optim.SGD(model.parameters(), lr=0.1))
    stepped = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 6)).sum().backward()
    stepped.step()
    with pytest.raises(ValueError, match="first step"):
        move_adam(stepped)


def test_torch_groups_keep_their_learning_rates() -> None:
    model = _model()
    sgd, _ = move_adam(torch.optim.AdamW([{"params": model[0].parameters(), "lr": 0.1},
                                          {"params": model[2].parameters()}], lr=0.01, weight_decay=0.05))
    assert [(g["lr"], g["weight_decay"], g["momentum"]) for g in sgd.param_groups] == [(0.1, 0.05, 0), (0.01, 0.05, 0)]
    assert DistQ(0.01, adam=True).memory.adam == LocalAdam()


@pytest.mark.parametrize("adam_class", [keras.optimizers.Adam, keras.optimizers.AdamW])
def test_keras_local_adam_sent_dense_is_adam(adam_class: type) -> None:
    """Keras SGD from move_adam, fed local Adam's directions, moves a variable as Keras' Adam or
    AdamW does (Keras adds eps before the bias correction of the second moment: a tiny eps)."""
    settings = {"learning_rate": 0.01, "beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-12}
    if adam_class is keras.optimizers.AdamW:
        settings["weight_decay"] = 0.1
    sgd, local = tf_distq.move_adam(adam_class(**settings))
    assert isinstance(sgd, keras.optimizers.SGD) and local == LocalAdam(0.8, 0.99, 1e-12)
    assert sgd.weight_decay == settings.get("weight_decay") and float(sgd.learning_rate) == pytest.approx(0.01)
    adam = adam_class(**settings)
    reference, moved = keras.Variable(np.linspace(-1, 1, 7)), keras.Variable(np.linspace(-1, 1, 7))
    memory = TensorFlowErrorFeedback(adam=local)
    rng = np.random.default_rng(3)
    for _ in range(6):
        gradient = tf.constant(rng.normal(size=7), tf.float32)
        adam.apply_gradients([(gradient, reference)])
        sgd.apply_gradients([(memory.flush("v", gradient), moved)])
    np.testing.assert_allclose(moved.numpy(), reference.numpy(), rtol=1e-5, atol=1e-6)


def test_keras_refusals() -> None:
    for optimizer, message in ((keras.optimizers.Adam(amsgrad=True), "amsgrad"),
                               (keras.optimizers.Adam(clipnorm=1.0), "clipping")):
        with pytest.raises(ValueError, match=message):
            tf_distq.move_adam(optimizer)
    with pytest.raises(TypeError, match="SGD"):
        tf_distq.move_adam(keras.optimizers.SGD(0.1))
    used = keras.optimizers.Adam()
    used.build([keras.Variable([1.0])])
    with pytest.raises(ValueError, match="used"):
        tf_distq.move_adam(used)


def test_keras_checkpoint_round_trip() -> None:
    memory = TensorFlowErrorFeedback(adam=LocalAdam())
    for _ in range(3):
        memory.flush("w", tf.random.normal([9]))
    state = memory.state_dict()
    restored = TensorFlowErrorFeedback(adam=LocalAdam())
    restored.restore(restored.validated(state))
    gradient = tf.random.normal([9])
    np.testing.assert_array_equal(restored.flush("w", gradient).numpy(), memory.flush("w", gradient).numpy())


def test_checkpoint_format_is_checked() -> None:
    array = np.zeros(3, np.float32)
    assert checked_adam_moments({"residuals": {}}, lambda a: True).steps == {}
    state = {"adam": {"first_moments": {"w": array}, "second_moments": {"w": array}, "steps": {"w": 2}}}
    assert checked_adam_moments(state, lambda a: True).steps == {"w": 2}
    for bad, message in (({"first_moments": {"w": array}, "second_moments": {}, "steps": {}}, "different gradients"),
                         ({"first_moments": {"w": array}, "second_moments": {"w": array}, "steps": {"w": 0}},
                          "positive integer"),
                         ({"first_moments": {}}, "must be a dict")):
        with pytest.raises(ValueError, match=message):
            checked_adam_moments({"adam": bad}, lambda a: True)
