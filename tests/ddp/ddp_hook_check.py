"""Checks DistQ's DDP communication hook under ``torchrun --nproc_per_node 2`` with Gloo.

Every rank runs this file with pytest (tests/test_ddp.py). Each test compares what DDP produced
with an independent dense computation: each rank's raw gradients come from plain autograd on an
unwrapped copy of the model, are exchanged with a dense allgather, and the expected result is
built from them with the NumPy reference selection rule.
"""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from horovod_distq import LocalAdam
from horovod_distq.torch.ddp import DistQState, distq_hook
from tests.parallel.common import DISAGREEING_SETTINGS, SETTINGS_MESSAGE, assert_identical_on_every_rank
from tests.reference import LocalAdamReference
from tests.torch_reference import selected_part

RATIO = 0.05
ENCODINGS = ("float32", "float16", "bfloat16", "sign")
# Small buckets, so that a step has several (from the second step on: DDP rebuilds its buckets after the first).
BUCKET_CAP_MB = 0.001


class Net(torch.nn.Module):
    """Two sparse weights (8192 and 1280 entries), two dense biases; optionally a branch no loss reaches."""

    def __init__(self, unused_branch: bool = False) -> None:
        super().__init__()
        self.hidden = torch.nn.Linear(64, 128)
        self.out = torch.nn.Linear(128, 10)
        self.unused = torch.nn.Linear(64, 32) if unused_branch else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.hidden(x)))


def make_model(unused_branch: bool = False) -> Net:
    torch.manual_seed(0)  # identical initial parameters on every rank
    return Net(unused_branch)


def wrap(model: torch.nn.Module, state: DistQState, **ddp_options) -> DistributedDataParallel:
    ddp = DistributedDataParallel(model, bucket_cap_mb=BUCKET_CAP_MB, **ddp_options)
    ddp.register_comm_hook(state, distq_hook)
    return ddp


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1000 * dist.get_rank() + step)
    return torch.randn(32, 64, generator=generator), torch.randint(0, 10, (32,), generator=generator)


def loss_of(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(model(x), y)


def raw_gradients(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """This rank's gradients by plain autograd on a copy of ``model``: no DDP, no hook."""
    shadow = copy.deepcopy(model)
    names, params = zip(*shadow.named_parameters())
    grads = torch.autograd.grad(loss_of(shadow, x, y), params, allow_unused=True)
    return {n: torch.zeros_like(p) if g is None else g.detach() for n, p, g in zip(names, params, grads)}


def all_ranks(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's copy of a tensor, by a dense allgather."""
    gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, tensor.contiguous())
    return gathered


def average(contributions: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(contributions).sum(0) / dist.get_world_size()


def check_close(actual: torch.Tensor, expected: torch.Tensor, what: str, atol: float = 1e-7) -> None:
    if not torch.allclose(actual, expected, rtol=1e-5, atol=atol):
        worst = (actual - expected).abs().max().item()
        raise AssertionError(f"rank {dist.get_rank()}: {what}: max abs difference {worst:g}")


def expected_average(state: DistQState, raw: dict[str, torch.Tensor], model: torch.nn.Module,
                     ) -> dict[str, torch.Tensor]:
    """Without error feedback or closed loop: the reference selection of every rank's gradient, averaged."""
    expected = {}
    for name, param in model.named_parameters():
        ranks = all_ranks(raw[name])
        expected[name] = average([selected_part(g, state) for g in ranks] if state.compresses(param) else ranks)
    return expected


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_hook_matches_dense_reference(encoding: str) -> None:
    model = make_model()
    state = DistQState(model, ratio=RATIO, warmup=None, error_feedback=False, closed_loop=False,
                       value_encoding=encoding)
    ddp = wrap(model, state)
    for step in range(3):  # the first step with one bucket, the others with DDP's rebuilt ones
        x, y = batch(step)
        raw = raw_gradients(model, x, y)
        ddp.zero_grad()
        loss_of(ddp, x, y).backward()
        for name, expected in expected_average(state, raw, model).items():
            check_close(model.get_parameter(name).grad, expected, f"{name} step {step} encoding {encoding}")
    sparse = [name for name, p in model.named_parameters() if state.compresses(p)]
    assert sparse == ["hidden.weight", "out.weight"]
    assert all(state.stats[name].threshold is not None for name in sparse)
    assert state.exchange.last_round is not None


def test_local_adam_matches_a_numpy_model() -> None:
    """DistQState(adam=...), 4 steps: every gradient DDP hands the optimizer against local Adam
    re-done in NumPy for every rank (a large eps: Adam's first directions are otherwise all +-1,
    and which of equals is selected is a tie)."""
    model = make_model()
    state = DistQState(model, ratio=RATIO, warmup=None, closed_loop=False, adam=LocalAdam(eps=0.01))
    ddp = wrap(model, state)
    ranks = [LocalAdamReference(eps=0.01) for _ in range(dist.get_world_size())]
    for step in range(4):
        x, y = batch(step)
        raw = raw_gradients(model, x, y)
        ddp.zero_grad()
        loss_of(ddp, x, y).backward()
        for name, param in model.named_parameters():
            select = (lambda a: selected_part(torch.from_numpy(a), state).numpy()) if state.compresses(param) else None
            sent = [rank.step(name, g.numpy(), select) for rank, g in zip(ranks, all_ranks(raw[name]))]
            check_close(param.grad, average([torch.from_numpy(s) for s in sent]), f"{name} step {step}", atol=1e-6)
    assert set(state.state_dict()["error_feedback"]["adam"]["steps"].values()) == {4}


def test_no_sync_compresses_the_accumulated_gradient() -> None:
    model = make_model()
    state = DistQState(model, ratio=RATIO, warmup=None, error_feedback=False, closed_loop=False)
    ddp = wrap(model, state)
    (x0, y0), (x1, y1) = batch(0), batch(1)
    raw = [raw_gradients(model, x0, y0), raw_gradients(model, x1, y1)]
    with ddp.no_sync():
        loss_of(ddp, x0, y0).backward()
    loss_of(ddp, x1, y1).backward()
    accumulated = {name: raw[0][name] + raw[1][name] for name in raw[0]}
    for name, expected in expected_average(state, accumulated, model).items():
        check_close(model.get_parameter(name).grad, expected, f"{name} after no_sync")


def train_checking_error_feedback(model: torch.nn.Module, state: DistQState, steps: int, **ddp_options) -> list[float]:
    """Trains ``steps`` steps, checking at each that every rank's sent part is the reference selection
    of its accumulated gradient, that nothing is lost (sent + residual == accumulated), and that DDP
    got the average of what the ranks sent. Returns the losses."""
    ddp = wrap(model, state, **ddp_options)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for step in range(steps):
        x, y = batch(step)
        raw = raw_gradients(model, x, y)
        before = {name: state.memory.residual(name) for name in raw}
        before = {name: torch.zeros_like(raw[name]) if r is None else r.clone() for name, r in before.items()}
        fit_ratios = {name: state.controller.fit_ratio(name) for name in raw}
        optimizer.zero_grad()
        loss = loss_of(ddp, x, y)
        loss.backward()
        losses.append(loss.item())
        for name, param in model.named_parameters():
            if param.grad is None:  # DDP leaves an unused parameter's gradient alone
                assert not raw[name].any() and name.startswith("unused."), name
                continue
            if not state.compresses(param):
                check_close(param.grad, average(all_ranks(raw[name])), f"{name} step {step}: dense average")
                continue
            accumulated = raw[name] + before[name]
            residual = state.memory.residual(name)
            sent = accumulated - residual
            check_close(sent, selected_part(accumulated, state, fit_ratios[name]), f"{name} step {step}: sent")
            check_close(param.grad, average(all_ranks(sent)), f"{name} step {step}: reduced gradient")
        optimizer.step()
    assert_identical_on_every_rank([p.detach().clone() for p in model.parameters()], all_ranks)
    return losses


def test_error_feedback_sends_exactly_what_it_accumulated() -> None:
    model = make_model()
    state = DistQState(model, ratio=RATIO, warmup=None)
    losses = train_checking_error_feedback(model, state, steps=8)
    assert losses[-1] < losses[0], losses
    assert 0 < state.bytes_sent < sum(s.dense_bytes for s in state.stats.values()) / 3


@pytest.mark.parametrize("options", [{"find_unused_parameters": True}, {"static_graph": True}],
                         ids=["find_unused_parameters", "static_graph"])
def test_ddp_graph_options(options: dict) -> None:
    model = make_model(unused_branch=True)
    state = DistQState(model, ratio=RATIO, warmup=None, min_numel=1000)  # the unused 2048-entry weight is sparse
    train_checking_error_feedback(model, state, steps=4, **options)
    assert state.stats["unused.weight"].selected == 0


@pytest.mark.parametrize("setting", sorted(DISAGREEING_SETTINGS))
def test_ranks_that_disagree_fail_on_every_rank(setting: str) -> None:
    value = DISAGREEING_SETTINGS[setting][dist.get_rank()]
    model = make_model()
    ddp = wrap(model, DistQState(model, ratio=RATIO, warmup=None, **{setting: value}))
    x, y = batch(0)
    with pytest.raises(ValueError, match=SETTINGS_MESSAGE):
        loss_of(ddp, x, y).backward()
    # Every rank failed at the same point, before any collective whose sizes would differ: the
    # process group is still in step, as the tests after this one show.


def test_a_rank_that_cannot_compress_fails_every_rank() -> None:
    model = make_model()
    # Rank 1: another module.
    state = DistQState(model if dist.get_rank() == 0 else make_model(), ratio=RATIO, warmup=None)
    ddp = wrap(model, state)
    x, y = batch(0)
    message = "could not compress" if dist.get_rank() == 0 else "not one of the module's"
    with pytest.raises(RuntimeError, match=message):
        loss_of(ddp, x, y).backward()


def run_steps(model: torch.nn.Module, state: DistQState, optimizer: torch.optim.Optimizer, steps: range) -> None:
    ddp = wrap(model, state)
    for step in steps:
        x, y = batch(step)
        optimizer.zero_grad()
        loss_of(ddp, x, y).backward()
        optimizer.step()


def test_a_rank0_checkpoint_resumes_every_rank_exactly() -> None:
    uninterrupted = make_model()
    state = DistQState(uninterrupted, ratio=RATIO, warmup=None)
    run_steps(uninterrupted, state, torch.optim.SGD(uninterrupted.parameters(), lr=0.1), range(6))

    model = make_model()
    state = DistQState(model, ratio=RATIO, warmup=None)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    run_steps(model, state, optimizer, range(3))
    saved = {"model": model.state_dict(), "distq": state.state_dict(all_ranks=True)}
    file = io.BytesIO()
    if dist.get_rank() == 0:
        torch.save(saved, file)
    everywhere: list[bytes | None] = [file.getvalue()]
    dist.broadcast_object_list(everywhere, src=0)  # rank 0's file, read by every rank
    loaded = torch.load(io.BytesIO(everywhere[0]))

    resumed = make_model()
    resumed.load_state_dict(loaded["model"])
    state = DistQState(resumed, ratio=RATIO, warmup=None)
    state.load_state_dict(loaded["distq"])
    run_steps(resumed, state, torch.optim.SGD(resumed.parameters(), lr=0.1), range(3, 6))
    for (name, expected), actual in zip(uninterrupted.named_parameters(), resumed.parameters()):
        assert torch.equal(actual, expected), f"rank {dist.get_rank()}: {name} differs from the uninterrupted run"


def test_a_dense_step_sends_what_sparse_steps_left() -> None:
    """Sparse steps leave residuals; a state with exchange="dense" that loads them sends each
    gradient plus its residual, averaged over the ranks, and keeps no residual after."""
    model = make_model()
    sparse = DistQState(model, ratio=RATIO, warmup=None, exchange="sparse")
    run_steps(model, sparse, torch.optim.SGD(model.parameters(), lr=0.1), range(3))
    residuals = {name: sparse.memory.residual(name).clone() for name in ("hidden.weight", "out.weight")}
    dense = DistQState(model, ratio=RATIO, warmup=None, exchange="dense")
    dense.load_state_dict(sparse.state_dict())
    x, y = batch(3)
    raw = raw_gradients(model, x, y)
    ddp = wrap(model, dense)
    model.zero_grad()
    loss_of(ddp, x, y).backward()
    for name, parameter in model.named_parameters():
        sent = raw[name] + residuals[name] if name in residuals else raw[name]
        check_close(parameter.grad, average(all_ranks(sent)), f"{name}: gradient plus residual, averaged")
        assert dense.memory.residual(name) is None, name


def test_the_state_pickles_without_process_group_or_module() -> None:
    model = make_model()
    state = DistQState(model, ratio=RATIO, warmup=None, value_encoding="float16")
    run_steps(model, state, torch.optim.SGD(model.parameters(), lr=0.1), range(2))
    restored = pickle.loads(pickle.dumps(state))
    assert restored.config == state.config and restored.process_group is None
    for name, residual in state.state_dict()["error_feedback"]["residuals"].items():
        assert torch.equal(restored.memory.residual(name), residual)
    with pytest.raises(RuntimeError, match="not one of the module's"):
        run_steps(make_model(), restored, torch.optim.SGD(model.parameters(), lr=0.1), range(1))
    restored.attach(model)
    run_steps(model, restored, torch.optim.SGD(model.parameters(), lr=0.1), range(2, 3))


def test_the_device_path_reads_each_buckets_counts_at_once() -> None:
    """The GPU's path, run on the CPU: the counts of a bucket's compressed gradients stay where the
    kernel left them until the bucket's round reads them in one copy, and training ends bit for bit
    where the path that reads each count at once ends."""
    from horovod_distq.torch import ops

    def trained() -> list[torch.Tensor]:
        model = make_model()
        ddp = DistributedDataParallel(model)  # DDP's default buckets: the whole model in one
        ddp.register_comm_hook(DistQState(model, ratio=RATIO, warmup=None), distq_hook)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for step in range(4):
            optimizer.zero_grad()
            loss_of(ddp, *batch(step)).backward()
            optimizer.step()
        return [p.detach().clone() for p in model.parameters()]

    expected = trained()
    reads: list[int] = []
    read_counts = ops.read_counts
    ops.DEFERRED_COUNT_DEVICES.add("cpu")
    ops.read_counts = lambda counts: reads.append(len(counts)) or read_counts(counts)
    try:
        actual = trained()
    finally:
        ops.read_counts = read_counts
        ops.DEFERRED_COUNT_DEVICES.discard("cpu")
    assert reads == [2] * 4, reads  # both compressed weights' counts in one read a step
    assert all(torch.equal(a, e) for a, e in zip(actual, expected))


@pytest.mark.parametrize("encoding", ["float32", "bfloat16"])
def test_two_phase_exchange_loses_nothing(encoding: str) -> None:
    """exchange="two_phase" through the hook, several buckets a step, against dense sums of every
    rank's gradients and residuals: each step applies about the target count of entries (the
    owners select again), outside them every rank keeps all it accumulated, and nothing is lost:
    sum over ranks of (accumulated - residual) == ranks x the averaged gradient DDP hands back."""
    model = make_model()
    state = DistQState(model, ratio=RATIO, warmup=None, value_encoding=encoding, exchange="two_phase")
    ddp = wrap(model, state)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(6):
        x, y = batch(step)
        raw = raw_gradients(model, x, y)
        before = {name: state.memory.residual(name) for name in raw}
        before = {name: torch.zeros_like(raw[name]) if r is None else r.clone() for name, r in before.items()}
        optimizer.zero_grad()
        loss_of(ddp, x, y).backward()
        for name, param in model.named_parameters():
            if not state.compresses(param):
                check_close(param.grad, average(all_ranks(raw[name])), f"{name} step {step}: dense average")
                continue
            accumulated = raw[name] + before[name]
            residual = state.memory.residual(name)
            delivered = torch.stack(all_ranks(accumulated - residual)).sum(0)
            check_close(delivered, dist.get_world_size() * param.grad, f"{name} step {step}: sent != applied",
                        atol=1e-6)
            applied = param.grad != 0
            check_close(torch.where(applied, 0.0, residual), torch.where(applied, 0.0, accumulated),
                        f"{name} step {step}: an entry not applied left a residual")
            target = RATIO * param.numel()
            assert 0.5 * target <= int(applied.sum()) <= 1.5 * target, (name, step, int(applied.sum()), target)
        assert state.exchange.last_round.bytes_received > 0
        optimizer.step()
    assert_identical_on_every_rank([p.detach().clone() for p in model.parameters()], all_ranks)


def test_a_misrouted_share_fails_on_every_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    """exchange="two_phase": rank 1 hands all its pairs to rank 0, half of them entries rank 0 does
    not own. Rank 0's check fails; it still joins the second phase (with a header naming no round),
    so rank 1 fails there too instead of waiting."""
    from horovod_distq import wire
    from horovod_distq.torch import ddp_exchange
    from horovod_distq.torch.exchange import pack_round

    def all_to_rank_0(round_layout, pairs, ranks):
        nothing = [type(p)(p.indices[:0], p.values[:0], p.scales, p.decoded[:0]) for p in pairs]
        shares = [torch.cat(pack_round(round_layout, pairs if owner == 0 else nothing)) for owner in range(ranks)]
        return torch.cat(shares), [share.numel() for share in shares]

    if dist.get_rank() == 1:
        monkeypatch.setattr(ddp_exchange, "split_by_owner", all_to_rank_0)
    model = make_model()
    ddp = wrap(model, DistQState(model, ratio=RATIO, warmup=None, exchange="two_phase"))
    expected = "it does not own" if dist.get_rank() == 0 else "rank 0 compressed other tensors"
    with pytest.raises(wire.DistQExchangeError, match=expected):
        loss_of(ddp, *batch(0)).backward()
