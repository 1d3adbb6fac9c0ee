"""``move_momentum``: one line hands an SGD optimizer's momentum to DistQ's momentum correction,
in torch and Keras, and refuses what momentum correction cannot take over, changing nothing."""

from __future__ import annotations

import keras
import pytest
import torch

from horovod_distq.momentum import moved_momentum
from horovod_distq.tensorflow import move_momentum as keras_move_momentum
from horovod_distq.tensorflow.keras import DistributedOptimizer
from horovod_distq.torch import DistQ, move_momentum


def _torch_sgd(**settings) -> torch.optim.SGD:
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    return torch.optim.SGD(model.parameters(), lr=0.1, **settings)


def test_the_rules() -> None:
    assert moved_momentum([0.9, 0.9], nesterov=False, dampening=0.0, optimizer="SGD") == 0.9
    assert moved_momentum([0.0], nesterov=False, dampening=0.0, optimizer="SGD") == 0.0
    with pytest.raises(ValueError, match="different momenta"):
        moved_momentum([0.9, 0.5], nesterov=False, dampening=0.0, optimizer="SGD")
    with pytest.raises(ValueError, match="Nesterov"):
        moved_momentum([0.9], nesterov=True, dampening=0.0, optimizer="SGD")
    with pytest.raises(ValueError, match="dampening"):
        moved_momentum([0.9], nesterov=False, dampening=0.1, optimizer="SGD")
    with pytest.raises(ValueError, match="outside"):
        moved_momentum([1.0], nesterov=False, dampening=0.0, optimizer="SGD")


def test_torch_sgd_hands_its_momentum_over() -> None:
    optimizer = _torch_sgd(momentum=0.9)
    compression = DistQ(ratio=0.01, momentum=move_momentum(optimizer))
    assert compression.config.momentum == 0.9
    assert [g["momentum"] for g in optimizer.param_groups] == [0.0]
    assert move_momentum(_torch_sgd()) == 0.0


def test_torch_sgd_steps_as_sgd_without_momentum_afterwards() -> None:
    """After the move the optimizer keeps no momentum buffer: two equal steps move equally."""
    parameter = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.SGD([parameter], lr=0.5, momentum=0.9)
    move_momentum(optimizer)
    moves = []
    for _ in range(2):
        before = parameter.detach().clone()
        parameter.grad = torch.ones(3)
        optimizer.step()
        moves.append(parameter.detach() - before)
    torch.testing.assert_close(moves[0], moves[1])
    torch.testing.assert_close(moves[0], torch.full((3,), -0.5))


def test_torch_refusals_change_nothing() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    groups = torch.optim.SGD([{"params": model[0].parameters(), "momentum": 0.5},
                              {"params": model[1].parameters()}], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="different momenta"):
        move_momentum(groups)
    assert [g["momentum"] for g in groups.param_groups] == [0.5, 0.9]
    nesterov = _torch_sgd(momentum=0.9, nesterov=True)
    with pytest.raises(ValueError, match="Nesterov"):
        move_momentum(nesterov)
    assert nesterov.param_groups[0]["momentum"] == 0.9
    with pytest.raises(ValueError, match="dampening"):
        move_momentum(_torch_sgd(momentum=0.9, dampening=0.1))
    with pytest.raises(TypeError, match="Adam"):
        move_momentum(torch.optim.Adam(torch.nn.Linear(2, 2).parameters()))


def test_keras_sgd_hands_its_momentum_over_also_when_wrapped() -> None:
    optimizer = DistributedOptimizer(keras.optimizers.SGD(0.05, momentum=0.9))
    assert keras_move_momentum(optimizer) == 0.9
    assert optimizer.momentum == 0.0
    variable = keras.Variable([1.0, 2.0])
    optimizer.build([variable])
    assert optimizer.momentums == []  # Keras makes no momentum variables: the update is plain SGD


def test_keras_refusals_change_nothing() -> None:
    nesterov = keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True)
    with pytest.raises(ValueError, match="Nesterov"):
        keras_move_momentum(nesterov)
    assert nesterov.momentum == 0.9
    used = keras.optimizers.SGD(0.05, momentum=0.9)
    used.build([keras.Variable([1.0])])
    with pytest.raises(ValueError, match="built"):
        keras_move_momentum(used)
    assert used.momentum == 0.9
    with pytest.raises(TypeError, match="Adam"):
        keras_move_momentum(keras.optimizers.Adam())
