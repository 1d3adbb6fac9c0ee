"""DistQ for PyTorch: the compressor ``hvd.DistributedOptimizer(compression=...)`` accepts, and the
torch tensor operations it shares with the DDP hook."""

from __future__ import annotations

from typing import Any

import horovod.torch as hvd
import torch

from horovod_distq.compressor import DistQCompressor, ExchangeRole, NamesRole, SparseContext
from horovod_distq.config import DistQConfig, document_settings
from horovod_distq.exchange_policy import ALLGATHER, DENSE, TWO_PHASE
from horovod_distq.families import DEFAULT_SAMPLE_SIZE
from horovod_distq.local_adam import LocalAdam
from horovod_distq.selection import SparseSelection
from horovod_distq.torch.control import RatioController
from horovod_distq.torch.encoding import dtype_name, encode
from horovod_distq.torch.error_feedback import ErrorFeedback, residual_dtype
from horovod_distq.torch.exchange import AllgatherExchange, RoundStats
from horovod_distq.torch.naming import ParameterNames
from horovod_distq.torch.ops import PendingSelection, defers_count, sparsify, sparsify_pending
from horovod_distq.torch.two_phase_exchange import TwoPhaseExchange
from horovod_distq.torch.warmup import WarmupCounter
from horovod_distq.warmup import Warmup


class TorchCompressor(DistQCompressor):
    """DistQ's tensor operations on torch tensors, under any exchange: the Horovod compressor
    (:class:`DistQ`) and the DDP hook's state (``horovod_distq.torch.ddp.DistQState``) add theirs."""

    _sparsify = staticmethod(sparsify)
    _encode = staticmethod(encode)

    def __init__(self, config: DistQConfig, *, names: NamesRole, exchange: ExchangeRole) -> None:
        """Args: the settings, and the two roles that differ between the Horovod compressor and the
        DDP hook (how gradients are named, how pairs travel); error feedback, the closed loop and the
        warm-up counts are torch's own for both."""
        super().__init__(
            config,
            names=names,
            memory=ErrorFeedback(config.momentum, config.adam),
            controller=RatioController(config.ratio),
            schedule=WarmupCounter(config.warmup_factors),
            exchange=exchange,
        )

    def _select_queued(self, tensor: torch.Tensor, ratio: float) -> tuple[Any, torch.Tensor | None]:
        # A subclass that selects otherwise (its own select()) has its count read at once.
        if not defers_count(tensor) or type(self).select is not TorchCompressor.select:
            return self.select(tensor, ratio), None
        pending = sparsify_pending(tensor, ratio, self.config.distribution, stages=self.config.fit_stages,
                                   sample_size=self.config.sample_size, **self.config.family_params)
        return pending, pending.count

    def _resolved(self, selection: Any, selected: int) -> SparseSelection:
        return selection.resolve(selected) if isinstance(selection, PendingSelection) else selection

    def _is_parameter(self, tensor: torch.Tensor) -> bool:
        return tensor.requires_grad

    def _numel(self, tensor: torch.Tensor) -> int:
        return tensor.numel()

    def _is_floating(self, tensor: torch.Tensor) -> bool:
        return tensor.is_floating_point()

    def _element_size(self, tensor: torch.Tensor) -> int:
        return tensor.element_size()

    def _dtype_name(self, tensor: torch.Tensor) -> str:
        return dtype_name(tensor.dtype)

    def _flatten(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.reshape(-1)

    def _count(self, indices: torch.Tensor) -> int:
        return indices.numel()

    def _record_selection(self, name: str, selected: int, threshold: torch.Tensor) -> tuple[int, torch.Tensor]:
        return selected, threshold

    def _read_selection(self, record: tuple[int, torch.Tensor]) -> tuple[int, float]:
        selected, threshold = record
        return selected, float(threshold)

    def _placeholder(self, tensor: torch.Tensor) -> torch.Tensor:
        return torch.ones(1, dtype=torch.float32, device=tensor.device)

    def _write_scalars(self, writer: Any, scalars: dict[str, float], step: int) -> None:
        for tag, value in scalars.items():
            writer.add_scalar(tag, value, step)

    def _scatter_scaled(
        self, ctx: SparseContext, indices: torch.Tensor, values: torch.Tensor, placeholder: torch.Tensor, size: int
    ) -> torch.Tensor:
        dtype = residual_dtype(ctx.dtype)
        dense = torch.zeros(ctx.shape.numel(), dtype=dtype, device=placeholder.device)
        dense.index_add_(0, indices, values.to(dtype) * (placeholder.to(dtype) / size))
        return dense.view(ctx.shape).to(ctx.dtype)


@document_settings
class DistQ(TorchCompressor):
    """Horovod compressor for PyTorch: sends each large gradient as the (index, value) pairs beyond
    a fitted threshold (:class:`horovod_distq.compressor.DistQCompressor` has the behaviour).

    Pass it to ``hvd.DistributedOptimizer(compression=...)``. The pairs of all gradients of a step
    travel in one Horovod allgather (ranks may compress in different orders), or with
    ``exchange="two_phase"`` in one alltoall and one allgather
    (:mod:`horovod_distq.torch.two_phase_exchange`); under ``exchange="auto"``, its
    ``exchange_policy`` (:mod:`horovod_distq.exchange_policy`; None: the byte rule alone) chooses
    each step's exchange, dense included, from measured step times. Error feedback is
    keyed by the parameter names the optimizer was given (``named_parameters=``); ``state_dict()``
    holds the residuals and the closed-loop state as tensors, for ``torch.save``.

    Args:
        {settings}
        process_set: the process set the optimizer uses (Horovod does not tell compressors).

    Raises:
        ValueError: an invalid setting.
        TypeError: a parameter the family does not take.

    Example:
        >>> compression = DistQ(ratio=0.01)
        >>> opt = hvd.DistributedOptimizer(opt, named_parameters=model.named_parameters(),
        ...                                compression=compression)
        >>> ...  # train; then
        >>> compression.stats["fc.weight"].achieved_ratio
        >>> state = compression.state_dict(all_ranks=True)   # every rank; rank 0 saves it
        >>> if hvd.rank() == 0:
        ...     torch.save({"model": model.state_dict(), "distq": state}, path)
    """

    def __init__(
        self,
        ratio: float,
        distribution: str = "auto",
        error_feedback: bool = True,
        min_numel: int = 1024,
        sample_size: int = DEFAULT_SAMPLE_SIZE,
        value_encoding: str = "auto",
        stages: int | None = None,
        closed_loop: bool = True,
        exchange: str = "auto",
        warmup: Warmup | int | str | None = "auto",
        momentum: float = 0.0,
        adam: LocalAdam | bool | None = None,
        *,
        process_set: hvd.ProcessSet = hvd.global_process_set,
        **family_params: Any,
    ) -> None:
        config = DistQConfig(
            ratio=ratio, distribution=distribution, error_feedback=error_feedback, min_numel=min_numel,
            sample_size=sample_size, value_encoding=value_encoding, stages=stages, closed_loop=closed_loop,
            exchange=exchange, warmup=warmup, momentum=momentum, adam=adam, family_params=family_params,
        )
        if config.exchange == "two_phase" or (config.exchange == "auto" and config.two_phase_possible):
            exchange = TwoPhaseExchange(process_set, lambda tensor, ratio: self.select(tensor, ratio))
        else:
            exchange = AllgatherExchange(process_set)
        super().__init__(config, names=ParameterNames(), exchange=exchange)
        if isinstance(exchange, TwoPhaseExchange):
            exchange.two_phase = config.exchange == "two_phase"  # under "auto": set per step
            if config.error_feedback:
                exchange.keep_unselected_in(self.memory)

    def _measured_exchanges(self) -> tuple[str, ...]:
        if isinstance(self.exchange, TwoPhaseExchange):
            return (ALLGATHER, TWO_PHASE, DENSE)
        return (ALLGATHER, DENSE)

    def _use_exchange(self, exchange: str) -> None:
        if isinstance(self.exchange, TwoPhaseExchange):
            self.exchange.two_phase = exchange == TWO_PHASE

    @property
    def last_round(self) -> RoundStats | None:
        """The last exchange round on this rank: tensors, bytes sent and received."""
        return self.exchange.last_round
