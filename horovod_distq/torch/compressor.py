"""DistQ: the compressor ``hvd.DistributedOptimizer(compression=...)`` accepts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import horovod.torch as hvd
import torch

from horovod_distq.config import DistQConfig
from horovod_distq.stats import TensorStats
from horovod_distq.torch._caller import horovod_parameter_name
from horovod_distq.torch.control import RatioController
from horovod_distq.torch.encoding import encode
from horovod_distq.torch.error_feedback import ErrorFeedback, accumulation_dtype
from horovod_distq.torch.exchange import QueuedTensor, RoundStats, StepExchange
from horovod_distq.torch.ops import SparseSelection, sparsify

# What compress() returns in place of a sparse gradient: Horovod allreduces it with the
# optimizer's op and scale factors, which tells decompress() how to scale the gathered sum.
_PLACEHOLDER_BYTES = 4


@dataclass(frozen=True)
class _SparseContext:
    """What decompress() needs to rebuild one sparse gradient."""

    name: str
    shape: torch.Size
    dtype: torch.dtype


class DistQ:
    """Sends each large gradient as the (index, value) pairs beyond a fitted threshold.

    A Horovod compressor: pass it as ``compression=`` to an unmodified
    ``hvd.DistributedOptimizer``. For each gradient with at least ``min_numel`` entries it adds
    the error-feedback residual, fits ``distribution``, selects about ``ratio`` of the entries and
    encodes their values; the pairs of all gradients of a step travel in one Horovod allgather;
    every rank then sums all pairs and applies the optimizer's reduction (op=Average or Sum,
    ``gradient_predivide_factor``). Smaller gradients and non-floating ones are left to Horovod's
    dense allreduce.

    Args:
        ratio: target fraction of entries sent per compressed gradient, in (0, 1].
        distribution: family of ``horovod_distq.FAMILIES`` the threshold comes from.
        error_feedback: add what was not sent to the next step's gradient (claim 9).
        min_numel: gradients with fewer entries go dense.
        sample_size: strided sample size for medians and quartiles.
        value_encoding: how values travel: "auto" (the gradient's dtype), "float32", "float16",
            "bfloat16" or "sign" (sign in the index, one scale per sign); see
            ``horovod_distq.VALUE_ENCODINGS``. With error feedback the encoding error stays in the residual.
        stages: peaks-over-threshold stages of the fit (see :func:`sparsify`); None: 3 for
            ``distribution="auto"``, else 1.
        closed_loop: per tensor, correct the ratio fed to the fit from the ratio it achieved in
            earlier steps (:class:`horovod_distq.torch.RatioController`), so the achieved ratio converges
            to ``ratio`` over a few steps. Costs no pass over the tensor.
        process_set: the process set the optimizer uses (Horovod does not tell compressors).
        **family_params: the family's parameters (``dof`` for ``student_t``).

    Raises:
        ValueError: an invalid setting; or, on every rank, ranks of ``process_set`` given different
            ``min_numel`` or ``value_encoding`` (checked by one allgather when Horovod is initialized,
            so make the compressor on every rank, in the same order).

    Example:
        >>> compression = DistQ(ratio=0.01, distribution="normal")
        >>> opt = hvd.DistributedOptimizer(opt, named_parameters=model.named_parameters(),
        ...                                compression=compression)
        >>> ...  # train; then
        >>> compression.stats["fc.weight"].achieved_ratio
        >>> torch.save({"model": model.state_dict(), "distq": compression.state_dict()}, path)
    """

    def __init__(
        self,
        ratio: float,
        distribution: str = "normal",
        error_feedback: bool = True,
        min_numel: int = 1024,
        sample_size: int = 4096,
        value_encoding: str = "auto",
        stages: int | None = None,
        closed_loop: bool = True,
        process_set: hvd.ProcessSet = hvd.global_process_set,
        **family_params: Any,
    ) -> None:
        self.config = DistQConfig(
            ratio=ratio,
            distribution=distribution,
            error_feedback=error_feedback,
            min_numel=min_numel,
            sample_size=sample_size,
            value_encoding=value_encoding,
            stages=stages,
            closed_loop=closed_loop,
            family_params=family_params,
        )
        if hvd.is_initialized() and process_set.included() and process_set.size() > 1:
            # One allgather when the compressor is made, so ranks given different settings fail here.
            keys = hvd.allgather(torch.tensor([self.config.agreement_key()]), process_set=process_set)
            self.config.check_agreement(keys.tolist())
        self.memory = ErrorFeedback()
        self.controller = RatioController(self.config.ratio)
        self.exchange = StepExchange(process_set)
        self._stats: dict[str, TensorStats] = {}
        self._unnamed = 0

    @property
    def stats(self) -> dict[str, TensorStats]:
        """Per parameter name, what its gradient did in its last compression on this rank."""
        return dict(self._stats)

    @property
    def last_round(self) -> RoundStats | None:
        """The last exchange round on this rank: tensors, collective calls, bytes sent and received."""
        return self.exchange.last_round

    @property
    def bytes_sent(self) -> int:
        """Bytes this rank put into collectives for its last step: dense allreduces, the 4-byte
        placeholders of compressed tensors, and its exchange buffer (header and pairs)."""
        dense = sum(s.bytes_sent for s in self._stats.values() if s.dense)
        compressed = sum(1 for s in self._stats.values() if not s.dense)
        exchanged = self.last_round.bytes_sent if self.last_round is not None else 0
        return dense + compressed * _PLACEHOLDER_BYTES + exchanged

    def compresses(self, tensor: torch.Tensor) -> bool:
        """Whether ``tensor`` takes the sparse path (else it goes dense)."""
        return tensor.is_floating_point() and tensor.numel() >= max(self.config.min_numel, 1)

    def compress(self, tensor: torch.Tensor, name: str | None = None) -> tuple[torch.Tensor, _SparseContext | None]:
        """Selects and queues a gradient's pairs for the step's exchange; returns the placeholder to allreduce.

        Args:
            tensor: the gradient.
            name: its parameter name; found from Horovod's optimizer when omitted.

        Returns:
            ``(tensor_to_allreduce, ctx)`` as Horovod's Compressor interface expects.
        """
        if tensor.requires_grad:
            raise ValueError("DistQ compresses gradients; op=hvd.Adasum hands it parameters and is not supported")
        name = name if name is not None else horovod_parameter_name(tensor)
        if not self.compresses(tensor):
            if name is not None:
                nbytes = tensor.numel() * tensor.element_size()
                self._stats[name] = TensorStats(tensor.numel(), tensor.numel(), None, nbytes, nbytes)
            return tensor, None
        if name is None:
            if self.config.error_feedback:
                raise ValueError(
                    "DistQ(error_feedback=True) needs the parameter name: use it as "
                    "hvd.DistributedOptimizer(..., compression=DistQ(...)) or call compress(tensor, name=...)"
                )
            # Without names, ranks must compress in the same order for these to match.
            name = f"unnamed.{self._unnamed}"
            self._unnamed += 1
        selected_from = self.memory.accumulate(name, tensor) if self.config.error_feedback else tensor
        selection = self.select(selected_from, name)
        if self.config.closed_loop:
            self.controller.update(name, selection.indices.numel(), tensor.numel())
        pairs = encode(self.config.value_encoding, selection.indices, selection.values, tensor.dtype)
        if self.config.error_feedback:
            self.memory.keep_unsent(name, selected_from, selection.indices, selection.values, pairs.decoded)
        queued = QueuedTensor(self.config.value_encoding, selection.indices.dtype, tensor.dtype, tensor.numel(), pairs)
        self.exchange.submit(name, queued)
        self._stats[name] = TensorStats(
            numel=tensor.numel(),
            selected=selection.indices.numel(),
            threshold=float(selection.threshold),
            bytes_sent=sum(segment.numel() for segment in pairs.segments()) + _PLACEHOLDER_BYTES,
            dense_bytes=tensor.numel() * tensor.element_size(),
        )
        placeholder = torch.ones(1, dtype=torch.float32, device=tensor.device)
        return placeholder, _SparseContext(name, tensor.shape, tensor.dtype)

    def select(self, tensor: torch.Tensor, name: str) -> SparseSelection:
        """The entries of gradient ``name`` to send: the fitted-threshold selection of :func:`sparsify`."""
        ratio = self.controller.fit_ratio(name) if self.config.closed_loop else self.config.ratio
        return sparsify(
            tensor,
            ratio,
            self.config.distribution,
            stages=self.config.fit_stages,
            sample_size=self.config.sample_size,
            **self.config.family_params,
        )

    def decompress(self, tensor: torch.Tensor, ctx: _SparseContext | None) -> torch.Tensor:
        """Runs the step's exchange (on its first call) and returns the reduced gradient.

        Args:
            tensor: Horovod's allreduce result of what :meth:`compress` returned.
            ctx: the context :meth:`compress` returned.

        Returns:
            The reduced gradient, in the gradient's dtype, shape and device.
        """
        if ctx is None:
            return tensor
        indices, values = self.exchange.collect(ctx.name)
        dtype = accumulation_dtype(ctx.dtype)
        # The placeholder came back as size (op=Sum) or 1 (op=Average, any predivide factor); the
        # scale is applied to the gathered values, not to the dense sum (k entries, not n).
        scale = tensor.to(dtype) / self.exchange.process_set.size()
        dense = torch.zeros(ctx.shape.numel(), dtype=dtype, device=tensor.device)
        dense.index_add_(0, indices, values.to(dtype) * scale)
        return dense.view(ctx.shape).to(ctx.dtype)

    def state_dict(self) -> dict[str, Any]:
        """Error-feedback residuals and closed-loop state, to save beside the model and optimizer."""
        return {"error_feedback": self.memory.state_dict(), "closed_loop": self.controller.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores what :meth:`state_dict` saved."""
        self.memory.load_state_dict(state["error_feedback"])
        self.controller.load_state_dict(state["closed_loop"])
