"""Checks DistQ inside an unmodified hvd.DistributedOptimizer.

Every rank runs this file with pytest under ``horovodrun -np 2`` (tests/test_parallel_torch.py).
Every test compares what the optimizer produced with an independent dense computation: each
rank's raw gradients are computed with plain autograd, exchanged with a dense allgather, and the
expected result is built from them with the NumPy reference selection rule.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterator

import horovod.torch as hvd
import numpy as np
import pytest
import torch

from horovod_distq import LocalAdam
from horovod_distq.exchange_policy import SETTLE_STEPS, ExchangePolicy
from horovod_distq.torch import DistQ, move_adam, ops
from tests.parallel.common import assert_identical_on_every_rank, same_run
from tests.reference import LocalAdamReference, MomentumCorrection
from tests.torch_reference import selected_part

RATIO = 0.05
ENCODINGS = ("float32", "float16", "bfloat16", "sign")


def make_model(bias: bool = True) -> torch.nn.Module:
    torch.manual_seed(0)  # identical initial parameters on every rank
    return torch.nn.Sequential(
        torch.nn.Linear(64, 128, bias=bias), torch.nn.Tanh(), torch.nn.Linear(128, 10, bias=bias)
    )


def batch(step: int, zero_input: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1000 * hvd.rank() + step)
    x = torch.randn(32, 64, generator=generator)
    y = torch.randint(0, 10, (32,), generator=generator)
    return (torch.zeros_like(x) if zero_input else x), y


def loss_of(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(model(x), y)


def raw_gradients(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """This rank's gradients by plain autograd: no hooks, no exchange."""
    names, params = zip(*model.named_parameters())
    grads = torch.autograd.grad(loss_of(model, x, y), params)
    return {name: grad.detach().clone() for name, grad in zip(names, grads)}


def all_ranks(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's copy of a tensor, by a dense allgather."""
    gathered = hvd.allgather(tensor.unsqueeze(0), name=None)
    return list(gathered)


def gradients_and_residuals(model: torch.nn.Module, shadow: torch.nn.Module, compression: DistQ, x: torch.Tensor,
                            y: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """This rank's raw gradients at the model's parameters (on ``shadow``, a copy), and its residuals
    before the step (zeros where there is none yet)."""
    shadow.load_state_dict(model.state_dict())
    raw = raw_gradients(shadow, x, y)
    before = {name: compression.memory.residual(name) for name in raw}
    return raw, {name: (r.clone() if r is not None else torch.zeros_like(raw[name])) for name, r in before.items()}


def expected_reduction(contributions: list[torch.Tensor], scale: float) -> torch.Tensor:
    return torch.stack(contributions).sum(0) * scale


def check_close(actual: torch.Tensor, expected: torch.Tensor, what: str, atol: float = 1e-7) -> None:
    if not torch.allclose(actual, expected, rtol=1e-5, atol=atol):
        worst = (actual - expected).abs().max().item()
        raise AssertionError(f"rank {hvd.rank()}: {what}: max abs difference {worst:g}")


def case(name: str, op=hvd.Average, predivide: float = 1.0, passes: int = 1, encoding: str = "auto"):
    return pytest.param(op, predivide, passes, encoding, id=name)


@pytest.mark.parametrize(("op", "predivide", "passes", "encoding"), [
    case("average"), case("sum", op=hvd.Sum), case("predivide", predivide=2.0), case("two-passes", passes=2),
    *(case(encoding, encoding=encoding) for encoding in ENCODINGS),
])
def test_average_without_error_feedback(op, predivide: float, passes: int, encoding: str) -> None:
    model = make_model()
    compression = DistQ(ratio=RATIO, warmup=None, error_feedback=False, value_encoding=encoding, closed_loop=False)
    optimizer = hvd.DistributedOptimizer(
        torch.optim.SGD(model.parameters(), lr=0.0), named_parameters=model.named_parameters(),
        compression=compression, op=op, gradient_predivide_factor=predivide, backward_passes_per_step=passes,
    )
    local = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    for step in range(passes):
        x, y = batch(step)
        for name, grad in raw_gradients(model, x, y).items():
            local[name] += grad
        loss_of(model, x, y).backward()
    optimizer.synchronize()
    scale = 1.0 / hvd.size() if op == hvd.Average else 1.0
    for name, param in model.named_parameters():
        ranks = all_ranks(local[name])
        if compression.compresses(param):
            contributions = [selected_part(g, compression) for g in ranks]
            assert compression.stats[name].threshold is not None
        else:
            contributions = ranks
            assert compression.stats[name].dense
        what = f"{name} op={op} predivide={predivide} passes={passes} encoding={encoding}"
        check_close(param.grad, expected_reduction(contributions, scale), what)
    optimizer.zero_grad()


def test_empty_selection_on_one_rank() -> None:
    model = make_model()
    compression = DistQ(ratio=RATIO, warmup=None, error_feedback=False, closed_loop=False)
    optimizer = hvd.DistributedOptimizer(
        torch.optim.SGD(model.parameters(), lr=0.0), named_parameters=model.named_parameters(),
        compression=compression,
    )
    # Rank 1 sees zero inputs, so its first-layer weight gradient is exactly zero: nothing selected.
    x, y = batch(0, zero_input=hvd.rank() == 1)
    raw = raw_gradients(model, x, y)
    loss_of(model, x, y).backward()
    optimizer.synchronize()
    if hvd.rank() == 1:
        assert compression.stats["0.weight"].selected == 0
    contributions = [selected_part(g, compression) for g in all_ranks(raw["0.weight"])]
    check_close(model[0].weight.grad, expected_reduction(contributions, 1.0 / hvd.size()), "empty selection")
    optimizer.zero_grad()


@contextlib.contextmanager
def counted_allgathers() -> Iterator[list[int]]:
    """Counts the allgather calls (plain or grouped) submitted inside the block, by wrapping Horovod's."""
    calls = [0]
    originals = {name: getattr(hvd, name) for name in ("allgather_async", "grouped_allgather_async")}

    def counting(original):
        def call(*args, **kwargs):
            calls[0] += 1
            return original(*args, **kwargs)
        return call

    for name, original in originals.items():
        setattr(hvd, name, counting(original))
    try:
        yield calls
    finally:
        for name, original in originals.items():
            setattr(hvd, name, original)


@pytest.mark.parametrize("encoding", ["auto", "float16", "sign"])
def test_error_feedback_training(encoding: str) -> None:
    """Trains a few steps with error feedback; checks accumulated == sent + residual each step,
    that each step makes one allgather for all compressed tensors, that the state restores, and
    that the ranks end with identical parameters."""
    model = make_model()
    shadow = copy.deepcopy(model)
    compression = DistQ(ratio=RATIO, warmup=None, value_encoding=encoding)
    optimizer = hvd.DistributedOptimizer(
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), named_parameters=model.named_parameters(),
        compression=compression,
    )
    for step in range(8):
        x, y = batch(step)
        raw, before = gradients_and_residuals(model, shadow, compression, x, y)
        fit_ratios = {name: compression.controller.fit_ratio(name) for name in raw}
        optimizer.zero_grad()  # Horovod's zero_grad sets gradients to None under torch 2
        assert all(p.grad is None for p in model.parameters())
        loss_of(model, x, y).backward()
        with counted_allgathers() as allgathers:
            optimizer.synchronize()
        sparse = [name for name, p in model.named_parameters() if compression.compresses(p)]
        assert allgathers == [1], allgathers
        assert compression.last_round.tensors == len(sparse) == 2
        for name, param in model.named_parameters():
            if not compression.compresses(param):
                continue
            accumulated = raw[name] + before[name]
            residual = compression.memory.residual(name)
            sent = accumulated - residual
            expected_sent = selected_part(accumulated, compression, fit_ratios[name])
            check_close(sent, expected_sent, f"{name} step {step}: sent != selection")
            check_close(sent + residual, accumulated, f"{name} step {step}: accumulated != sent + residual")
            stats = compression.stats[name]
            assert int((sent != 0).sum()) <= stats.selected
            expected = expected_reduction(all_ranks(sent), 1.0 / hvd.size())
            check_close(param.grad, expected, f"{name} step {step}: reduced gradient")
            assert stats.bytes_sent < stats.dense_bytes / 4, stats
        with optimizer.skip_synchronize():
            optimizer.step()
    state = compression.state_dict()
    restored = DistQ(ratio=RATIO, warmup=None)
    restored.load_state_dict(state)
    for name, residual in state["error_feedback"]["residuals"].items():
        assert torch.equal(restored.memory.residual(name), residual)
        assert restored.controller.fit_ratio(name) == compression.controller.fit_ratio(name)
    assert_identical_on_every_rank([p.detach().clone() for p in model.parameters()], all_ranks)
@pytest.mark.parametrize("encoding", ["float32", "bfloat16"])
def test_two_phase_exchange_loses_nothing(encoding: str) -> None:
    """exchange="two_phase", against dense sums of every rank's gradients and residuals: each step
    applies about the target count of entries (not every rank's union, as the allgather path does),
    outside them every rank keeps all it accumulated, and nothing is lost:
    sum over ranks of (accumulated - residual) == ranks x the reduced gradient."""
    model = make_model()
    shadow = copy.deepcopy(model)
    compression = DistQ(ratio=RATIO, warmup=None, value_encoding=encoding, exchange="two_phase")
    optimizer = hvd.DistributedOptimizer(
        torch.optim.SGD(model.parameters(), lr=0.1), named_parameters=model.named_parameters(), compression=compression,
    )
    for step in range(6):
        x, y = batch(step)
        raw, before = gradients_and_residuals(model, shadow, compression, x, y)
        optimizer.zero_grad()
        loss_of(model, x, y).backward()
        with counted_allgathers() as allgathers:
            optimizer.synchronize()
        assert allgathers == [1], allgathers
        for name, param in model.named_parameters():
            if not compression.compresses(param):
                continue
            accumulated = raw[name] + before[name]
            residual = compression.memory.residual(name)
            delivered = torch.stack(all_ranks(accumulated - residual)).sum(0)
            check_close(delivered, hvd.size() * param.grad, f"{name} step {step}: sent != applied", atol=1e-6)
            applied = param.grad != 0
            check_close(torch.where(applied, 0.0, residual), torch.where(applied, 0.0, accumulated),
                        f"{name} step {step}: an entry not applied left a residual")
            target = RATIO * param.numel()
            assert 0.5 * target <= int(applied.sum()) <= 1.5 * target, (name, step, int(applied.sum()), target)
        with optimizer.skip_synchronize():
            optimizer.step()
    assert_identical_on_every_rank([p.detach().clone() for p in model.parameters()], all_ranks)


# Per rank, how long a step of each exchange takes on the fake clock: alone, rank 1 would choose
# otherwise than rank 0 (the allgather over two-phase, or two-phase over dense).
AUTO_CASES = {
    "two_phase": ({"allgather": 1.0, "two_phase": 0.8, "dense": 1.2},
                  {"allgather": 1.0, "two_phase": 1.1, "dense": 1.2}),
    "dense": ({"allgather": 1.0, "two_phase": 0.9, "dense": 0.95},
              {"allgather": 1.0, "two_phase": 1.0, "dense": 0.9}),
}


@pytest.mark.parametrize("chosen", AUTO_CASES)
def test_auto_probes_agrees_and_loses_nothing(chosen: str) -> None:
    """exchange="auto" (the default) with a fake clock whose step times differ per rank: every rank
    probes the allgather, the two-phase exchange and dense after the settling steps, agrees on the
    mean of the ranks' times and runs the fastest, the same on every rank; in every step, whichever
    exchange it took, sum over ranks of (accumulated - residual) == ranks x the reduced gradient."""
    model = make_model()
    shadow = copy.deepcopy(model)
    compression = DistQ(ratio=RATIO, warmup=None)
    costs = AUTO_CASES[chosen][hvd.rank() % 2]  # on 3 hosts, rank 2 measures as rank 0
    clock = [0.0]
    compression.exchange_policy = ExchangePolicy(
        ("allgather", "two_phase", "dense"), 0, compression.exchange.gather_bytes, probe_steps=2, clock=lambda: clock[0]
    )
    optimizer = hvd.DistributedOptimizer(
        torch.optim.SGD(model.parameters(), lr=0.1), named_parameters=model.named_parameters(), compression=compression,
    )
    modes = []
    for step in range(SETTLE_STEPS + 9):
        x, y = batch(step)
        raw, before = gradients_and_residuals(model, shadow, compression, x, y)
        optimizer.zero_grad()
        loss_of(model, x, y).backward()
        optimizer.synchronize()
        modes.append(compression.step_exchange())
        for name, param in model.named_parameters():
            residual = compression.memory.residual(name)
            residual = torch.zeros_like(param) if residual is None else residual
            delivered = torch.stack(all_ranks(raw[name] + before[name] - residual)).sum(0)
            check_close(delivered, hvd.size() * param.grad, f"{name} step {step} ({modes[-1]}): sent != applied",
                        atol=1e-6)
        with optimizer.skip_synchronize():
            optimizer.step()
        clock[0] += costs[modes[-1]]
    probe = ["allgather"] * 2 + ["two_phase"] * 2 + ["dense"] * 2
    assert modes == ["allgather"] * SETTLE_STEPS + probe + [chosen] * 3, modes
    assert compression.exchange_policy.last_decision.chosen == chosen
    assert_identical_on_every_rank([p.detach().clone() for p in model.parameters()], all_ranks)


def check_against_numpy_model(model: torch.nn.Module, optimizer: torch.optim.Optimizer, compression: DistQ,
                              ranks: list, atol: float = 1e-7) -> None:
    """5 steps: every parameter's reduced gradient against the NumPy model of what each rank
    sends (``ranks``: one per rank, with a ``step(name, gradient, select)``), re-done from the
    ranks' raw gradients, sparse ones selected by the reference rule, dense ones sent whole."""
    shadow = copy.deepcopy(model)
    for step in range(5):
        x, y = batch(step)
        shadow.load_state_dict(model.state_dict())
        raw = raw_gradients(shadow, x, y)
        optimizer.zero_grad()
        loss_of(model, x, y).backward()
        optimizer.synchronize()
        for name, param in model.named_parameters():
            select = (lambda v: selected_part(torch.from_numpy(v), compression).numpy()) \
                if compression.compresses(param) else None
            sent = [rank.step(name, g.numpy(), select) for rank, g in zip(ranks, all_ranks(raw[name]))]
            check_close(param.grad, torch.from_numpy(np.mean(sent, axis=0)), f"{name} step {step}", atol)
        with optimizer.skip_synchronize():
            optimizer.step()
    assert_identical_on_every_rank([p.detach().clone() for p in model.parameters()], all_ranks)


def test_momentum_correction_matches_deep_gradient_compression() -> None:
    """DistQ(momentum=0.9) under SGD without momentum against DGC's update in NumPy (dense
    gradients send their velocity)."""
    model = make_model()
    compression = DistQ(ratio=RATIO, warmup=None, momentum=0.9, closed_loop=False)
    optimizer = hvd.DistributedOptimizer(
        torch.optim.SGD(model.parameters(), lr=0.1), named_parameters=model.named_parameters(), compression=compression,
    )
    check_against_numpy_model(model, optimizer, compression, [MomentumCorrection(0.9) for _ in range(hvd.size())])
    state = compression.state_dict()
    assert set(state["error_feedback"]["velocities"]) == {name for name, _ in model.named_parameters()}


def test_local_adam_matches_a_numpy_model() -> None:
    """DistQ(adam=...) under the SGD move_adam makes against local Adam in NumPy (sparse gradients
    selected from the accumulated directions, dense ones sending their direction). A large eps:
    Adam's first directions are otherwise all +-1, and which of equals is selected is a tie.
    Directions are about 1 in size and the reference's moments float64 (DistQ's float32): atol 1e-6."""
    model = make_model()
    sgd, adam = move_adam(torch.optim.Adam(model.parameters(), lr=0.01, eps=0.01))
    compression = DistQ(ratio=RATIO, warmup=None, adam=adam, closed_loop=False)
    optimizer = hvd.DistributedOptimizer(sgd, named_parameters=model.named_parameters(), compression=compression)
    check_against_numpy_model(model, optimizer, compression, [LocalAdamReference(eps=0.01) for _ in range(hvd.size())],
                              atol=1e-6)
    adam_state = compression.state_dict()["error_feedback"]["adam"]
    assert adam_state["steps"] == {name: 5 for name, _ in model.named_parameters()}


def local_adam_training() -> tuple[torch.nn.Module, torch.optim.Optimizer, DistQ]:
    model = make_model()
    compression = DistQ(ratio=RATIO, adam=LocalAdam())
    optimizer = hvd.DistributedOptimizer(torch.optim.SGD(model.parameters(), lr=0.01),
                                         named_parameters=model.named_parameters(), compression=compression)
    return model, optimizer, compression


def test_local_adam_resumes_exactly_and_needs_its_moments(tmp_path) -> None:
    """A rank-0 checkpoint of a local-Adam run after 4 steps resumes bit-identically over 4 more
    (moments, steps, residuals and the warm-up restored); resumed without the moments, it differs."""
    model, optimizer, compression = local_adam_training()
    train(model, optimizer, range(4))
    distq_state = compression.state_dict(all_ranks=True)
    saved_model = copy.deepcopy(model.state_dict())
    train(model, optimizer, range(4, 8))
    uninterrupted = [p.detach().clone() for p in model.parameters()]

    def resumed(state: dict) -> list[torch.Tensor]:
        model, optimizer, compression = local_adam_training()
        model.load_state_dict(saved_model)
        compression.load_state_dict(state)
        train(model, optimizer, range(4, 8))
        return [p.detach().clone() for p in model.parameters()]

    assert same_run(resumed(distq_state), uninterrupted, hvd.size()), "resumed run differs"
    without_moments = copy.deepcopy(distq_state)
    for rank_state in without_moments["all_ranks"]:
        del rank_state["error_feedback"]["adam"]
    assert not same_run(resumed(without_moments), uninterrupted, hvd.size()), "the moments did not matter?"


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, inputs: torch.Tensor) -> None:
    optimizer.zero_grad()
    model(inputs).sum().backward()
    optimizer.step()


def test_one_distq_for_two_optimizers_with_the_same_names_is_refused() -> None:
    compression = DistQ(ratio=0.01, min_numel=10)
    models = [torch.nn.Linear(64, 32), torch.nn.Linear(64, 32)]
    optimizers = [
        hvd.DistributedOptimizer(torch.optim.SGD(m.parameters(), lr=0.1), named_parameters=m.named_parameters(),
                                 compression=compression)
        for m in models
    ]
    train_step(models[0], optimizers[0], torch.randn(4, 64))
    with pytest.raises(ValueError, match="one DistQ per optimizer"):
        train_step(models[1], optimizers[1], torch.randn(4, 64))


def test_sparse_embedding_gradients_sent_as_dense_are_named() -> None:
    compression = DistQ(ratio=0.01, min_numel=10)
    model = torch.nn.Embedding(1000, 8, sparse=True)
    optimizer = hvd.DistributedOptimizer(torch.optim.SGD(model.parameters(), lr=0.1),
                                         named_parameters=model.named_parameters(), compression=compression,
                                         sparse_as_dense=True)
    for _ in range(3):
        train_step(model, optimizer, torch.randint(0, 1000, (16,)))
    assert set(compression.stats) == {"weight"} and not compression.stats["weight"].dense
    assert compression.memory.residual("weight").shape == (1000, 8)


def trained_state(exchange: str, steps: int) -> tuple[list[torch.Tensor], dict]:
    """Parameters and DistQ state after ``steps`` steps of a fresh run. Without biases, so that
    every gradient is compressed and summed in rank order: a dense allreduce of 3 or more ranks may
    sum in another order when Horovod fuses other tensors with it, which would differ in the last bit."""
    model = make_model(bias=False)
    compression = DistQ(ratio=RATIO, warmup=None, exchange=exchange)
    optimizer = hvd.DistributedOptimizer(
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), named_parameters=model.named_parameters(),
        compression=compression,
    )
    train(model, optimizer, range(steps))
    return [p.detach().clone() for p in model.parameters()], compression.state_dict()


@pytest.mark.parametrize("exchange", ["sparse", "two_phase"])
def test_the_device_path_reads_a_steps_counts_at_once(exchange: str) -> None:
    """The GPU's path, run on the CPU: each selection's count stays where the kernel left it until
    the exchange reads every count of the step in one copy (one read per step, not per gradient),
    and training ends bit for bit where the path that reads each count at once ends."""
    steps = 5
    expected_parameters, expected_state = trained_state(exchange, steps)
    reads: list[int] = []
    read_counts = ops.read_counts

    def counting(counts):
        reads.append(len(counts))
        return read_counts(counts)

    ops.DEFERRED_COUNT_DEVICES.add("cpu")
    ops.read_counts = counting
    try:
        parameters, state = trained_state(exchange, steps)
    finally:
        ops.read_counts = read_counts
        ops.DEFERRED_COUNT_DEVICES.discard("cpu")
    assert reads == [2] * steps, reads  # both compressed gradients' counts in one read a step
    for actual, expected in zip(parameters, expected_parameters):
        assert torch.equal(actual, expected)
    residuals = state["error_feedback"]["residuals"]
    assert residuals.keys() == expected_state["error_feedback"]["residuals"].keys()
    for name, residual in residuals.items():
        assert torch.equal(residual, expected_state["error_feedback"]["residuals"][name]), name
    for name, loop in state["closed_loop"]["loops"].items():
        assert torch.equal(loop, expected_state["closed_loop"]["loops"][name]), name


def distq_training() -> tuple[torch.nn.Module, torch.optim.Optimizer, DistQ]:
    model = make_model()
    compression = DistQ(ratio=RATIO, warmup=None)
    optimizer = hvd.DistributedOptimizer(
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), named_parameters=model.named_parameters(),
        compression=compression,
    )
    return model, optimizer, compression


def train(model: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: range) -> None:
    for step in steps:
        x, y = batch(step)
        optimizer.zero_grad()
        loss_of(model, x, y).backward()
        optimizer.step()


def resumed_from(checkpoint: dict, distq_state: dict) -> list[torch.Tensor]:
    """The parameters after steps 4..7 from a checkpoint taken after step 3."""
    model, optimizer, compression = distq_training()
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    compression.load_state_dict(distq_state)
    train(model, optimizer, range(4, 8))
    return [p.detach().clone() for p in model.parameters()]


def test_a_rank0_checkpoint_resumes_every_rank_exactly(tmp_path) -> None:
    """Rank 0 alone saves DistQ's gathered state, as Horovod's examples save models; every rank
    resumes from that file and ends bit-identical to the uninterrupted run. Each rank loading
    rank 0's own residuals instead (what a per-rank state saved by rank 0 gives) does not."""
    model, optimizer, compression = distq_training()
    train(model, optimizer, range(4))
    distq_state = compression.state_dict(all_ranks=True)
    path = hvd.broadcast_object(str(tmp_path / "ckpt.pt"), root_rank=0, name="checkpoint.path")
    if hvd.rank() == 0:
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "distq": distq_state}, path)
    hvd.barrier()
    train(model, optimizer, range(4, 8))
    uninterrupted = [p.detach().clone() for p in model.parameters()]

    checkpoint = torch.load(path)
    resumed = resumed_from(checkpoint, checkpoint["distq"])
    assert same_run(resumed, uninterrupted, hvd.size()), "resumed run differs"
    # Rank 0's own state on every rank: rank 1 is warned that it resumes with another rank's residuals.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rank0_only = resumed_from(checkpoint, checkpoint["distq"]["all_ranks"][0])
    warned = [str(w.message) for w in caught if "loads the state rank 0 saved" in str(w.message)]
    assert len(warned) == (hvd.rank() != 0), warned
    assert not same_run(rank0_only, uninterrupted, hvd.size()), "rank 1's residual did not matter?"

