"""DistQ as a ``torch.distributed`` DDP communication hook, from the same core as the Horovod compressor.

PyTorch ships fp16 and PowerSGD hooks for DDP; this one sparsifies. Per gradient bucket, each
gradient of at least ``min_numel`` entries goes through error feedback, the fit and selection,
the closed loop and the value encoding exactly as under Horovod (``horovod_distq.compressor``);
the bucket's pairs travel in one round (:mod:`horovod_distq.torch.ddp_exchange`; with
``exchange="two_phase"`` in two phases, each entry's owner summing and selecting again) and its smaller
gradients in one allreduce; every rank sums all pairs and divides by the world size, as DDP's
default hook averages.

Example:
    >>> model = torch.nn.parallel.DistributedDataParallel(net)
    >>> state = DistQState(net, ratio=0.01)
    >>> model.register_comm_hook(state, distq_hook)
"""

# No ``from __future__ import annotations``: DDP compares the hook's annotations with the classes
# themselves (dist.GradBucket, torch.futures.Future[torch.Tensor]) and refuses strings.
from typing import Any

import torch
import torch.distributed as dist

from horovod_distq.config import DistQConfig, document_settings
from horovod_distq.families import DEFAULT_SAMPLE_SIZE
from horovod_distq.local_adam import LocalAdam
from horovod_distq.torch.compressor import TorchCompressor
from horovod_distq.torch.ddp_exchange import ProcessGroupExchange, TwoPhaseGroupExchange
from horovod_distq.warmup import Warmup


class ModuleParameterNames:
    """Names a bucket's gradients after their parameters in the module given to :class:`DistQState`.

    Args:
        module: the model (or the DDP wrapper: its names then start with ``module.``); None leaves
            the names unknown until :meth:`attach`.
    """

    how_to_name = "make DistQState(model, ...) with the model DDP wraps"

    def __init__(self, module: torch.nn.Module | None) -> None:
        self._names: dict[torch.Tensor, str] = {}
        if module is not None:
            self.attach(module)

    def attach(self, module: torch.nn.Module) -> None:
        """Names parameters as ``module.named_parameters()`` does."""
        self._names = {parameter: name for name, parameter in module.named_parameters()}

    def of(self, tensor: torch.Tensor) -> str | None:
        """None: a bucket's gradient is named from its parameter (:meth:`of_parameter`)."""
        return None

    def of_parameter(self, parameter: torch.Tensor) -> str:
        """The name of ``parameter``.

        Raises:
            RuntimeError: the parameter is not one of the module's (or no module was attached).
        """
        name = self._names.get(parameter)
        if name is None:
            raise RuntimeError(
                f"DistQ: a parameter of shape {tuple(parameter.shape)} reached the DDP hook but is not one of the "
                f"module's given to DistQState ({len(self._names)} parameters): {self.how_to_name}, or call "
                "state.attach(model) after unpickling the state"
            )
        return name


@document_settings
class DistQState(TorchCompressor):
    """The state of :func:`distq_hook`, in the style of PyTorch's ``PowerSGDState``: the settings,
    the error-feedback residuals and closed-loop state, and the process group. It is also the
    compressor, so ``stats``, ``bytes_sent``, ``log_to()`` and ``state_dict()`` are as on
    ``horovod_distq.torch.DistQ``.

    Args:
        module: the model DDP wraps; error feedback and stats are keyed by its parameter names.
        {settings}
        process_group: the group DDP reduces over; None for the default group.

    Raises:
        ValueError: an invalid setting.
        TypeError: a parameter the family does not take.

    Works with ``no_sync()`` (the accumulated gradients are compressed at the step that syncs),
    ``find_unused_parameters`` and ``static_graph``. Ranks whose settings disagree fail in the
    first step, on every rank. Pickling (``torch.save(state)``) keeps the settings and the state
    but neither the process group (the default one on loading) nor the module: call
    :meth:`attach` after loading.

    Example:
        >>> state = DistQState(net, ratio=0.01)
        >>> ddp_model.register_comm_hook(state, distq_hook)
        >>> ...  # train; then
        >>> checkpoint = {"model": net.state_dict(), "distq": state.state_dict(all_ranks=True)}
    """

    # Nothing is allreduced in place of a sparse gradient: DDP always averages.
    placeholder_bytes = 0

    def __init__(
        self,
        module: torch.nn.Module | None,
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
        process_group: dist.ProcessGroup | None = None,
        **family_params: Any,
    ) -> None:
        config = DistQConfig(
            ratio=ratio, distribution=distribution, error_feedback=error_feedback, min_numel=min_numel,
            sample_size=sample_size, value_encoding=value_encoding, stages=stages, closed_loop=closed_loop,
            exchange=exchange, warmup=warmup, momentum=momentum, adam=adam, family_params=family_params,
        )
        if config.exchange == "two_phase":
            exchange = TwoPhaseGroupExchange(process_group, lambda tensor, ratio: self.select(tensor, ratio))
        else:
            exchange = ProcessGroupExchange(process_group)
        super().__init__(config, names=ModuleParameterNames(module), exchange=exchange)
        if isinstance(exchange, TwoPhaseGroupExchange) and config.error_feedback:
            exchange.keep_unselected_in(self.memory)

    @property
    def process_group(self) -> dist.ProcessGroup | None:
        """The process group the hook reduces over (None: the default group)."""
        return self.exchange.process_set.group

    def attach(self, module: torch.nn.Module) -> None:
        """Names gradients after ``module``'s parameters (after unpickling, or for a rebuilt model)."""
        self.names.attach(module)

    def reduce(self, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
        """The hook's work for one bucket; see :func:`distq_hook`."""
        buffer = bucket.buffer()
        dense, sparse = [], []
        try:
            for parameter, gradient in zip(bucket.parameters(), _gradient_views(buffer, bucket.parameters())):
                sent, ctx = self.compress(gradient, name=self.names.of_parameter(parameter))
                if ctx is None:
                    dense.append(gradient if sent is gradient else gradient.copy_(sent))
                else:
                    sparse.append((gradient, ctx))
            flat_dense = torch.cat([g.reshape(-1) for g in dense]) if dense else buffer.new_empty(0)
        except Exception:
            self.exchange.fail_round(buffer.device)  # the other ranks fail in this bucket too
            raise
        done = self.exchange.start_round(flat_dense, self.config, bucket.is_last())
        unit = torch.ones(1, dtype=torch.float32, device=buffer.device)

        def write_back(summed: torch.futures.Future[torch.Tensor]) -> torch.Tensor:
            average = summed.value().div_(self.exchange.process_set.size())
            for gradient, part in zip(dense, average.split([g.numel() for g in dense])):
                gradient.copy_(part.view_as(gradient))
            for gradient, ctx in sparse:
                gradient.copy_(self.decompress(unit, ctx))
            return buffer

        return done.then(write_back)

    def _placeholder(self, tensor: torch.Tensor) -> None:
        return None

    def __getstate__(self) -> dict[str, Any]:
        state = self.state_dict()
        if self.process_group is not None:
            # A rank in this group; unpickled, the state serves the default group, where it means another.
            state["rank"] = None
        return {"config": self.config, "state": state}

    def __setstate__(self, saved: dict[str, Any]) -> None:
        self.__init__(None, **saved["config"].settings())
        self.load_state_dict(saved["state"])


def distq_hook(state: DistQState, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DDP communication hook: the bucket's gradients averaged over the ranks, the large ones sparsified.

    Args:
        state: the :class:`DistQState` given to ``register_comm_hook``.
        bucket: DDP's gradient bucket.

    Returns:
        A future of the bucket's averaged, flattened gradients (the bucket's own buffer).

    Example:
        >>> ddp_model.register_comm_hook(DistQState(net, ratio=0.01), distq_hook)
    """
    return state.reduce(bucket)


def _gradient_views(buffer: torch.Tensor, parameters: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each parameter's gradient as a view into the bucket's flat buffer, where DDP lays them out
    one after the other in the order of ``bucket.parameters()``."""
    views, offset = [], 0
    for parameter in parameters:
        views.append(buffer[offset : offset + parameter.numel()].view_as(parameter))
        offset += parameter.numel()
    if offset != buffer.numel():
        raise RuntimeError(f"DistQ: a DDP bucket of {buffer.numel()} entries holds parameters of {offset}")
    return views
