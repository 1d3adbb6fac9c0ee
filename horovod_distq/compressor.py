"""DistQ's behaviour, once for both frontends.

:class:`DistQCompressor` is the Horovod compressor minus the tensor operations: the settings and
their validation, which gradients take the sparse path, the naming fallback, the order of a
step (error feedback, fit, closed loop, encoding, exchange), the per-tensor stats and bytes, and
the checkpoint of its state (one rank's, or every rank's for a rank-0 checkpoint). ``horovod_distq.torch.DistQ`` and
``horovod_distq.tensorflow.DistQ`` subclass it and supply the tensor operations (the hooks at
the end of the class), as Horovod's ``common/basics.py`` is one class each framework instantiates.
"""

from __future__ import annotations

import functools
import threading
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, TypeVar, runtime_checkable

from horovod_distq.config import DistQConfig
from horovod_distq.encodings import DTYPE_BYTES
from horovod_distq.exchange_cost import cheaper_than_dense
from horovod_distq.exchange_policy import ALLGATHER, DENSE, TWO_PHASE, ExchangePolicy
from horovod_distq.selection import SparseSelection
from horovod_distq.state import ALL_RANKS, deserialize_gathered, rank_part, readable_rank, serialize
from horovod_distq.stats import TensorStats
from horovod_distq.telemetry import step_scalars
from horovod_distq.wire import TensorLayout

# What compress() returns in place of a sparse gradient: one float32 of ones. Horovod allreduces it
# with the optimizer's op and scale factors, which tells decompress() how to scale the gathered sum.
PLACEHOLDER_BYTES = 4

# Residuals of 16-bit gradients are kept in float32: the small entries they hold are the ones
# 16-bit arithmetic would round away.
_ACCUMULATION_DTYPES = {"float16": "float32", "bfloat16": "float32"}


def accumulation_dtype(gradient_dtype: str) -> str:
    """The dtype name error feedback accumulates a gradient of ``gradient_dtype`` in."""
    return _ACCUMULATION_DTYPES.get(gradient_dtype, gradient_dtype)


class EncodedPairs(NamedTuple):
    """One tensor's pairs as they travel, and the values the receivers will decode.

    Attributes:
        indices: flattened positions (for a sign encoding, negative entries as ``~index``).
        values: values in the wire dtype (empty for a sign encoding).
        scales: float32 ``[positive scale, negative scale]`` for a sign encoding, else empty.
        decoded: float values every receiver reconstructs, for error feedback.
    """

    indices: Any
    values: Any
    scales: Any
    decoded: Any

    def wire_parts(self) -> tuple[Any, Any, Any]:
        """The tensors that go on the wire, in order."""
        return self.indices, self.values, self.scales


@runtime_checkable
class ErrorFeedbackRole(Protocol):
    """What a frontend's ``ErrorFeedback`` does: residuals keyed by gradient name, buffers owned by it.

    Keyed by name, never by a gradient tensor: optimizers free and re-create gradients every step.
    """

    def accumulate(self, name: str, gradient: Any) -> Any:
        """Adds ``gradient`` (with momentum correction its velocity, with local Adam its direction)
        to the residual of ``name`` and returns the sum (the accumulated gradient of claim 9), to
        select from before :meth:`keep_unsent`."""

    def keep_unsent(self, name: str, indices: Any, selected: Any, sent: Any) -> None:
        """Makes the accumulated gradient of ``name`` minus what was sent its residual.

        Args:
            name: the gradient name, accumulated by :meth:`accumulate` this step.
            indices: flattened positions that were selected.
            selected: the accumulated entries at those positions.
            sent: the values the receivers decode at those positions (after any encoding), so
                the encoding error stays in the residual. Where an accumulated entry was not
                finite the residual restarts at 0 instead of carrying NaN into every later step.
        """

    def flush(self, name: str, gradient: Any) -> Any:
        """``gradient`` (with momentum correction its velocity, with local Adam its direction) plus the residual
        of ``name`` if it has one (in the gradient's dtype and shape), the residual then zero or
        dropped: what a step sending ``name`` dense sends."""

    def residual(self, name: str) -> Any:
        """The residual kept for ``name``, or None."""

    def state_dict(self) -> dict[str, Any]:
        """Copies of the residuals (``horovod_distq.state`` has the format)."""

    def validated(self, state: Any) -> Any:
        """What :meth:`restore` would load from a :meth:`state_dict`, checked; ValueError if unfit."""

    def restore(self, validated: Any) -> None:
        """Replaces every residual with what :meth:`validated` returned (absent ones start at zero)."""


@runtime_checkable
class RatioControllerRole(Protocol):
    """What a frontend's ``RatioController`` does: the closed loop of ``csrc/core/control.h`` per gradient."""

    def fit_ratio(self, name: str) -> Any:
        """The ratio to pass to the fit for ``name`` this step."""

    def update(self, name: str, selected: Any, numel: int, target: Any = None) -> None:
        """Records what the fit at :meth:`fit_ratio` selected and moves the fit ratio towards
        ``target`` (by default the controller's own)."""

    def state_dict(self) -> dict[str, Any]:
        """The target and a copy of every gradient's loop state."""

    def validated(self, state: Any) -> Any:
        """What :meth:`restore` would load from a :meth:`state_dict`, checked; ValueError if unfit."""

    def restore(self, validated: Any) -> None:
        """Replaces every loop state with what :meth:`validated` returned (absent ones start afresh)."""


@runtime_checkable
class WarmupRole(Protocol):
    """What a frontend's ``WarmupCounter`` does: counts each gradient's steps and gives the warm-up's
    factor on its ratio (``horovod_distq.warmup``)."""

    def factor(self, name: str) -> Any:
        """This step's factor on the ratio of ``name`` (1 once its warm-up is over); counts the step."""

    def capped(self, ratio: Any) -> Any:
        """``ratio``, at most 1."""

    def state_dict(self) -> dict[str, Any]:
        """Each gradient's step count, as ints."""

    def validated(self, state: Any) -> Any:
        """What :meth:`restore` would load from a :meth:`state_dict` (None: nothing), checked; ValueError if unfit."""

    def restore(self, validated: Any) -> None:
        """Replaces every step count with what :meth:`validated` returned (absent ones start at 0)."""


@runtime_checkable
class ExchangeRole(Protocol):
    """What a frontend's exchange does: moves every rank's pairs to every rank."""

    process_set: Any
    # Bytes of headers per compressed tensor, and per step for ``tensors`` compressed tensors.
    tensor_header_bytes: int

    def round_header_bytes(self, tensors: int) -> int: ...

    def submit(self, queued: QueuedTensor) -> None:
        """Hands over this rank's pairs of one gradient (in ``compress()``)."""

    def collect(self, ctx: SparseContext) -> tuple[Any, Any]:
        """Every rank's pairs of one gradient (in ``decompress()``): int64 indices and values."""

    def queued_tensors(self) -> int:
        """How many tensors this rank has submitted to the round not yet collected."""

    def gather_bytes(self, payload: bytes) -> bytes:
        """Every rank's ``payload`` concatenated in rank order (one eager allgather)."""

    def discard(self) -> None:
        """Forgets the pairs submitted and not yet collected."""


@runtime_checkable
class NamesRole(Protocol):
    """What a frontend's naming does: which parameter a gradient handed to ``compress()`` belongs to."""

    how_to_name: str  # what to do when no name can be found, for the error message

    def of(self, tensor: Any) -> str | None:
        """The gradient's name, or None when it cannot be told."""


class QueuedTensor:
    """One compressed gradient's pairs as this rank sends them, and their layout.

    A selection whose count is still on the device (a GPU's) is queued pending: its pairs are made
    once the exchange has read the step's pending counts together (:meth:`resolve`), so that the
    compress path reads the device once per step rather than once per gradient.

    Args:
        layout: what every receiver needs to parse the pairs.
        pairs: the frontend's encoded pairs (indices, values, scales, decoded); None when pending.
        count: a pending selection's count, in the frontend's device memory.
        finish: makes a pending selection's pairs from its count, as read on the host.
    """

    __slots__ = ("_finish", "_pairs", "count", "layout")

    def __init__(self, layout: TensorLayout, pairs: Any = None, *, count: Any = None,
                 finish: Callable[[int], Any] | None = None) -> None:
        if (pairs is None) == (finish is None):
            raise ValueError("a queued tensor has its pairs, or a count and a way to finish them")
        self.layout = layout
        self._pairs = pairs
        self.count = count
        self._finish = finish

    @property
    def pending(self) -> bool:
        """Whether the pairs wait for their count to be read (:meth:`resolve`)."""
        return self._pairs is None

    @property
    def pairs(self) -> Any:
        """The encoded pairs.

        Raises:
            RuntimeError: the tensor is still pending.
        """
        if self._pairs is None:
            raise RuntimeError(f"DistQ: the pairs of {self.layout.name!r} were read before their count")
        return self._pairs

    def resolve(self, selected: int) -> None:
        """Makes a pending tensor's pairs, given its count as read on the host."""
        self._pairs = self._finish(selected)
        self._finish = None
        self.count = None


class SparseContext(NamedTuple):
    """What decompress() needs to rebuild one sparse gradient.

    Attributes:
        queued: the pairs this rank sent.
        shape: the gradient's shape.
        dtype: the gradient's framework dtype.
        op_name: a graph name for the gradient's collectives (TensorFlow traces); None otherwise.
    """

    queued: QueuedTensor
    shape: Any
    dtype: Any
    op_name: str | None = None


class DistQCompressor(ABC):
    """Sends each large gradient as the (index, value) pairs beyond a fitted threshold.

    The behaviour of a Horovod compressor, whatever the framework: for each gradient with at least
    ``min_numel`` entries it adds the error-feedback residual, fits ``distribution``, selects about
    ``ratio`` of the entries and encodes their values; the pairs travel by Horovod's allgather, and
    every rank sums all pairs and applies the optimizer's reduction (op=Average or Sum,
    ``gradient_predivide_factor``). Smaller gradients and non-floating ones are left to Horovod's
    dense allreduce. Users make a frontend's compressor (``horovod_distq.torch.DistQ``,
    ``horovod_distq.tensorflow.DistQ``), which takes the settings of :class:`DistQConfig` by name.

    Making one runs no collective, so ranks may make it in any order, before or after
    ``hvd.init()``. Ranks whose settings (or compressors) disagree on which gradients are sparse,
    or how their values travel, fail in the step on every rank: in Horovod's allreduce, whose
    shapes then differ, or in DistQ's check of the exchange headers (TensorFlow checks the
    settings when the first step is traced; see its ``DistQ``).

    Args:
        config: the settings.
        names: tells which parameter a gradient handed to ``compress()`` belongs to (:class:`NamesRole`).
        memory: the error-feedback residuals (:class:`ErrorFeedbackRole`).
        controller: the closed loop on the ratio (:class:`RatioControllerRole`).
        schedule: the warm-up's step counts (:class:`WarmupRole`).
        exchange: moves every rank's pairs to every rank (:class:`ExchangeRole`).

    Raises:
        TypeError: a role object lacks what its role needs.

    Example:
        >>> compression = horovod_distq.torch.DistQ(ratio=0.01)
        >>> opt = hvd.DistributedOptimizer(opt, named_parameters=model.named_parameters(),
        ...                                compression=compression)
        >>> ...  # train; then
        >>> compression.stats["fc.weight"].achieved_ratio
    """

    # Bytes of what compress() hands back for a sparse gradient, which the caller allreduces.
    placeholder_bytes = PLACEHOLDER_BYTES

    def __init__(
        self,
        config: DistQConfig,
        *,
        names: NamesRole,
        memory: ErrorFeedbackRole,
        controller: RatioControllerRole,
        schedule: WarmupRole,
        exchange: ExchangeRole,
    ) -> None:
        self.config = config
        self.names = _checked_role(names, NamesRole, "names")
        self.memory = _checked_role(memory, ErrorFeedbackRole, "memory")
        self.controller = _checked_role(controller, RatioControllerRole, "controller")
        self.schedule = _checked_role(schedule, WarmupRole, "schedule")
        self.exchange = _checked_role(exchange, ExchangeRole, "exchange")
        self._dense_stats: dict[str, TensorStats] = {}
        self._selections: dict[str, tuple[TensorLayout, Any]] = {}
        self._loop_thread: threading.Thread | None = None
        self._warned_ratio_below_one_entry: set[str] = set()
        candidates = self._measured_exchanges()
        # exchange="auto" where the frontend can time its steps: chosen per step from measured times.
        self.exchange_policy = (
            ExchangePolicy(candidates, len(config.warmup_factors) - 1, self.exchange.gather_bytes)
            if config.exchange == "auto" and candidates else None
        )

    def state_dict(self, all_ranks: bool = False) -> dict[str, Any]:
        """Error-feedback residuals, closed-loop state and warm-up steps (copies), to save beside the model.

        All three are per rank: a rank's residuals hold what its own gradients did not send yet,
        so each rank must load its own state back (the state records the rank it was saved on, and
        loading it on another rank warns).

        Args:
            all_ranks: gather every rank's state into the result, so that one file written by
                rank 0 resumes every rank exactly. This is a collective: every rank of the
                process set calls it, at the same point of training (as ``hvd.broadcast_object``).

        Returns:
            This rank's state, or ``{"all_ranks": [state of rank 0, state of rank 1, ...]}``
            (the format: ``horovod_distq.state``).

        Example:
            >>> state = compression.state_dict(all_ranks=True)     # on every rank
            >>> if hvd.rank() == 0:
            ...     torch.save({"model": model.state_dict(), "distq": state}, "ckpt.pt")
        """
        own = {"error_feedback": self.memory.state_dict(), "closed_loop": self.controller.state_dict(),
               "warmup": self.schedule.state_dict(), "rank": readable_rank(self.exchange.process_set)}
        if not all_ranks:
            return own
        gathered = self.exchange.gather_bytes(serialize(own))
        return {ALL_RANKS: deserialize_gathered(gathered, self.exchange.process_set.size())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores what :meth:`state_dict` returned, all or nothing; from an all-ranks state,
        this rank's own part. Runs no collective.

        Residuals, loop states and warm-up counts absent from ``state`` start afresh; a closed-loop
        state saved for another ``ratio`` starts afresh too (the ratio it learnt to fit at no longer applies).

        Args:
            state: this rank's ``state_dict()`` (a per-rank checkpoint), or anything rank's
                ``state_dict(all_ranks=True)`` (a rank-0 checkpoint) under the same world size.

        Raises:
            ValueError: ``state`` is not a DistQ state, or was gathered from another number of
                ranks; nothing is changed.

        Example:
            >>> compression.load_state_dict(torch.load("ckpt.pt")["distq"])   # on every rank
        """
        own = rank_part(state, self.exchange.process_set)
        # Every part is checked before any is restored.
        residuals = self.memory.validated(own["error_feedback"])
        loops = self.controller.validated(own["closed_loop"])
        steps = self.schedule.validated(own.get("warmup"))
        self.memory.restore(residuals)
        self.controller.restore(loops)
        self.schedule.restore(steps)

    def discard_step(self) -> None:
        """Drops what an interrupted step left in the exchange (pairs compressed, not yet
        decompressed), so that the next step starts clean: after a collective failed, or on an
        elastic reset (``horovod_distq.elastic``). The residuals keep what the step accumulated.
        Under ``exchange="auto"`` the choice of exchange starts afresh, as on every rank."""
        self.exchange.discard()
        if self.exchange_policy is not None:
            self.exchange_policy.reset()

    @property
    def stats(self) -> dict[str, TensorStats]:
        """Per gradient name, what it did in its last step on this rank (read eagerly)."""
        result = dict(self._dense_stats)
        for name, (layout, record) in self._selections.items():
            selected, threshold = self._read_selection(record)
            if selected < 0:
                continue  # traced, but no step has run yet
            result[name] = TensorStats(
                numel=layout.numel,
                selected=selected,
                threshold=threshold,
                bytes_sent=self.exchange.tensor_header_bytes + layout.segment_bytes(selected) + self.placeholder_bytes,
                dense_bytes=layout.numel * DTYPE_BYTES[layout.gradient_dtype],
            )
        return result

    @property
    def bytes_sent(self) -> int:
        """Bytes this rank put into collectives in its last step: dense allreduces, the placeholders
        of compressed gradients and their exchange (headers and pairs)."""
        stats = self.stats.values()
        compressed = sum(1 for s in stats if not s.dense)
        return sum(s.bytes_sent for s in stats) + self.exchange.round_header_bytes(compressed)

    def log_to(self, writer: Any, step: int, all_ranks: bool = False) -> dict[str, float]:
        """Writes the last step's stats to TensorBoard (:func:`horovod_distq.telemetry.step_scalars`).

        Args:
            writer: torch's ``SummaryWriter`` or a ``tf.summary`` file writer.
            step: the training step to log them at.
            all_ranks: log on every rank (give each its own log directory); by default rank 0 only.

        Returns:
            What was written (empty on ranks that do not log).

        Example:
            >>> writer = torch.utils.tensorboard.SummaryWriter("runs/tb")
            >>> compression.log_to(writer, step)   # after optimizer.step()
        """
        if not self.logs_here(all_ranks):
            return {}
        scalars = step_scalars(self.stats, self.bytes_sent)
        self._write_scalars(writer, scalars, step)
        return scalars

    def logs_here(self, all_ranks: bool = False) -> bool:
        """Whether :meth:`log_to` writes on this rank: rank 0 only, or every rank with ``all_ranks``."""
        return all_ranks or self.exchange.process_set.rank() == 0

    def compresses(self, tensor: Any, exchange: str | None = None) -> bool:
        """Whether ``tensor`` takes the sparse path (else it goes dense): a floating tensor of at
        least ``min_numel`` entries, always under ``exchange="sparse"`` and ``"two_phase"``, never
        under ``"dense"``; under ``"auto"`` when the step's exchange (:meth:`step_exchange`) is not
        dense and the tensor's pairs cost no more bytes than its dense allreduce at the process
        set's size.

        Args:
            tensor: the gradient.
            exchange: the step's exchange ("allgather", "two_phase", "dense"); by default the current step's.
        """
        numel = self._numel(tensor)
        if not (self._is_floating(tensor) and numel is not None and numel >= max(self.config.min_numel, 1)):
            return False
        exchange = self.step_exchange() if exchange is None else exchange
        if exchange == DENSE or self.config.exchange != "auto":
            return exchange != DENSE
        ranks = self._planned_ranks()
        if ranks is None:
            return True  # a choice made for one world size would not hold for the next: sparse
        return cheaper_than_dense(exchange, numel, self.config.ratio, ranks, self.config.value_encoding,
                                  self._dtype_name(tensor))

    def step_exchange(self) -> str:
        """How the current step's compressed gradients travel: "allgather", "two_phase" or "dense"
        (``exchange`` as set, or under "auto" the choice of :attr:`exchange_policy`)."""
        if self.config.exchange == "auto":
            return self.exchange_policy.mode if self._policy_applies() else ALLGATHER
        return {"sparse": ALLGATHER, "two_phase": TWO_PHASE, "dense": DENSE}[self.config.exchange]

    def _policy_applies(self) -> bool:
        # On one rank there is nothing to exchange and nothing to measure.
        return self.exchange_policy is not None and self.exchange.process_set.size() > 1

    def compress(self, tensor: Any, name: str | None = None) -> tuple[Any, SparseContext | None]:
        """Selects and encodes a gradient's pairs for the exchange; returns what Horovod allreduces.

        Args:
            tensor: the gradient.
            name: a name for its error-feedback and closed-loop state; by default the parameter's
                name, found from Horovod's optimizer or tape.

        Returns:
            ``(tensor_to_allreduce, ctx)`` as Horovod's Compressor interface expects: the gradient
            itself and None for a dense gradient, else a placeholder and a :class:`SparseContext`.
        """
        if self._is_parameter(tensor):
            raise ValueError("DistQ compresses gradients; op=hvd.Adasum hands it parameters and is not supported")
        self._check_single_loop()
        name = name if name is not None else self.names.of(tensor)
        if name is not None and self._policy_applies():
            self.exchange_policy.mode_for(name, self.exchange.process_set.size())
        exchange = self.step_exchange()
        if not self.compresses(tensor, exchange):
            self._record_dense(name, tensor)
            return self._dense_gradient(name, tensor), None
        name = self._sparse_name(name, self._numel(tensor))
        layout = TensorLayout(name, self._numel(tensor), self.config.value_encoding, self._dtype_name(tensor))
        self._warn_if_nothing_would_be_sent(layout)
        accumulated = self.memory.accumulate(name, tensor) if self.config.error_feedback else self._flatten(tensor)
        ratio = self.controller.fit_ratio(name) if self.config.closed_loop else self.config.ratio
        target = self.config.ratio
        if self.config.warmup_schedule is not None:
            # The loop keeps learning the family's bias: it fits at its ratio times the warm-up's
            # factor and is told the target was the target times that factor.
            factor = self.schedule.factor(name)
            ratio, target = self.schedule.capped(ratio * factor), target * factor
        selection, count = self._select_queued(accumulated, ratio)
        finish = functools.partial(self._finish_selection, name, layout, selection, target, tensor.dtype)
        if count is None:
            queued = QueuedTensor(layout, finish(self._count(selection.indices)))
        else:
            queued = QueuedTensor(layout, count=count, finish=finish)
        self._dense_stats.pop(name, None)
        self._use_exchange(exchange)
        self.exchange.submit(queued)
        return self._placeholder(tensor), SparseContext(queued, tensor.shape, tensor.dtype, self._op_name(tensor))

    def select(self, tensor: Any, ratio: Any) -> SparseSelection:
        """The entries of an (accumulated) gradient to send: the frontend's ``sparsify`` fitted at
        ``ratio`` with this compressor's family and settings. A subclass may select otherwise.

        Args:
            tensor: the gradient plus its residual.
            ratio: the ratio to fit at (the closed loop's, or the target).

        Returns:
            A :class:`horovod_distq.selection.SparseSelection`.
        """
        return self._sparsify(
            tensor,
            ratio,
            self.config.distribution,
            stages=self.config.fit_stages,
            sample_size=self.config.sample_size,
            **self.config.family_params,
        )

    def _select_queued(self, tensor: Any, ratio: Any) -> tuple[Any, Any]:
        """What compress() selects: ``(selection, None)`` where the count is known on the host now,
        or a frontend's pending selection and its count in device memory, which the exchange reads
        with the step's other counts. A frontend with device selections overrides it."""
        return self.select(tensor, ratio), None

    def _finish_selection(
        self, name: str, layout: TensorLayout, selection: Any, target: Any, dtype: Any, selected: Any
    ) -> Any:
        """What needs a selection's count: the closed loop's step, the encoded pairs, error feedback
        and the stats record. At once in compress(), or for a pending selection once its count is
        read (before the exchange packs its pairs, and so before the next step reads its residual).

        Returns:
            The encoded pairs.
        """
        selection = self._resolved(selection, selected)
        if self.config.closed_loop:
            self.controller.update(name, selected, layout.numel, target)
        pairs = self._encode(self.config.value_encoding, selection.indices, selection.values, dtype)
        if self.config.error_feedback:
            self.memory.keep_unsent(name, selection.indices, selection.values, pairs.decoded)
        self._selections[name] = (layout, self._record_selection(name, selected, selection.threshold))
        return pairs

    def _resolved(self, selection: Any, selected: Any) -> SparseSelection:
        """The :class:`SparseSelection` of what :meth:`_select_queued` returned, given its count."""
        return selection

    def decompress(self, tensor: Any, ctx: SparseContext | None) -> Any:
        """Receives every rank's pairs of a sparse gradient and returns the reduced gradient.

        Args:
            tensor: Horovod's allreduce result of what :meth:`compress` returned.
            ctx: the context :meth:`compress` returned.

        Returns:
            The reduced gradient, in the gradient's dtype, shape and device.
        """
        if ctx is None:
            return tensor
        indices, values = self.exchange.collect(ctx)
        # The placeholder came back as size (op=Sum) or 1 (op=Average, any predivide factor); the
        # scale is applied to the gathered values, not to the dense sum (k entries, not n).
        return self._scatter_scaled(ctx, indices, values, tensor, self._ranks())

    def _ranks(self) -> Any:
        """The number of ranks a step's pairs come from, as the reduction computes with it."""
        return self.exchange.process_set.size()

    def _measured_exchanges(self) -> tuple[str, ...]:
        """The exchanges ``exchange="auto"`` chooses between by measured step times; empty where
        the frontend cannot time its steps (a traced step), which keeps the byte rule."""
        return ()

    def _use_exchange(self, exchange: str) -> None:
        """Sets up the exchange object for a step whose compressed gradients travel by ``exchange``;
        an exchange object that serves one exchange only needs nothing."""
        return None

    def _planned_ranks(self) -> int | None:
        """The number of ranks ``exchange="auto"`` plans for; None where the step being built
        runs at changing world sizes (TensorFlow's traced steps under Horovod's elastic mode)."""
        return self.exchange.process_set.size()

    def _check_single_loop(self) -> None:
        """One DistQ serves one training loop: its exchange pairs each step's compress() and
        decompress() calls, and Horovod names collectives in order, so a second thread calling in
        would mix two loops' steps (Horovod then reports duplicate names, or worse, nothing)."""
        current = threading.current_thread()
        owner = self._loop_thread
        if owner is not None and owner is not current and owner.is_alive():
            raise RuntimeError(
                f"DistQ: compress() called from thread {current.name!r} while thread {owner.name!r} trains "
                "with this DistQ; one DistQ serves one training loop: make one per loop"
            )
        self._loop_thread = current

    def _warn_if_nothing_would_be_sent(self, layout: TensorLayout) -> None:
        """Warns once per gradient whose target count, ratio x entries, is below one entry: such a
        gradient sends (about) nothing per step, and with error feedback its residual grows until
        single entries stand out, which is the documented behaviour (nothing is forced through)."""
        if layout.numel * self.config.ratio >= 1 or layout.name in self._warned_ratio_below_one_entry:
            return
        self._warned_ratio_below_one_entry.add(layout.name)
        warnings.warn(
            f"DistQ: ratio={self.config.ratio:g} of {layout.numel} entries of {layout.name!r} is below one entry "
            "a step: it sends only the entries its fit sees as outliers (often none), and what it does not "
            "send accumulates in the residual. Raise the ratio, or min_numel to send this gradient dense.",
            stacklevel=3,
        )

    def _record_dense(self, name: str | None, tensor: Any) -> None:
        numel = self._numel(tensor)
        if name is not None:
            self._selections.pop(name, None)  # it went sparse before (a smaller world, another exchange)
        if name is not None and numel is not None:
            nbytes = numel * self._element_size(tensor)
            self._dense_stats[name] = TensorStats(numel, numel, None, nbytes, nbytes)

    def _dense_gradient(self, name: str | None, tensor: Any) -> Any:
        """What a dense gradient sends: itself (with momentum correction its velocity, with local
        Adam its direction), plus what earlier sparse steps left unsent (when the process set grew
        past the crossover, or ``exchange`` changed): sent whole, so error feedback stays exact;
        the residual is then spent."""
        if not self.config.error_feedback or not self._is_floating(tensor):
            return tensor
        if name is None:
            if self.config.transforms_gradients:
                raise ValueError(f"DistQ(momentum=...) and DistQ(adam=...) need every gradient's name: "
                                 f"{self.names.how_to_name}")
            return tensor
        if not self.config.transforms_gradients and self.memory.residual(name) is None:
            return tensor
        return self.memory.flush(name, tensor)

    def _sparse_name(self, name: str | None, numel: int) -> str:
        if name is not None:
            return name
        if self.config.error_feedback:
            raise ValueError(f"DistQ(error_feedback=True) needs a gradient name: {self.names.how_to_name}")
        # Without names, a gradient is known by its size and its place in the step's round, so the
        # closed loop and stats keep one entry per gradient of a step, not one per call. Where
        # gradients travel one by one (no round), the place is always 0: same-size gradients share.
        return f"unnamed.{self.exchange.queued_tensors()}.{numel}"

    # The tensor operations each frontend supplies, besides ``_sparsify`` and ``_encode``, its
    # ops.py and encoding.py functions. Its role objects live in naming.py, error_feedback.py,
    # control.py and exchange.py.

    @abstractmethod
    def _is_parameter(self, tensor: Any) -> bool:
        """Whether ``tensor`` is a parameter rather than a gradient (what Adasum hands compressors)."""
        ...

    @abstractmethod
    def _numel(self, tensor: Any) -> int | None:
        ...

    @abstractmethod
    def _is_floating(self, tensor: Any) -> bool:
        ...

    @abstractmethod
    def _element_size(self, tensor: Any) -> int:
        ...

    @abstractmethod
    def _dtype_name(self, tensor: Any) -> str:
        ...

    @abstractmethod
    def _flatten(self, tensor: Any) -> Any:
        ...

    @abstractmethod
    def _count(self, indices: Any) -> Any:
        """The number of selected entries: an int, or a scalar tensor in a traced step."""
        ...

    @abstractmethod
    def _record_selection(self, name: str, selected: Any, threshold: Any) -> Any:
        """Keeps a step's count and threshold (without a host synchronisation); returns the record."""
        ...

    @abstractmethod
    def _read_selection(self, record: Any) -> tuple[int, float]:
        """(selected, threshold) of a record, as Python numbers; selected < 0 before the first step."""
        ...

    @abstractmethod
    def _placeholder(self, tensor: Any) -> Any:
        ...

    def _op_name(self, tensor: Any) -> str | None:
        return None

    @abstractmethod
    def _write_scalars(self, writer: Any, scalars: dict[str, float], step: int) -> None:
        """Writes ``scalars`` (tag -> value) at ``step`` with the framework's summary writer."""
        ...

    @abstractmethod
    def _scatter_scaled(self, ctx: SparseContext, indices: Any, values: Any, placeholder: Any, size: int) -> Any:
        """The dense gradient: every rank's values summed at their indices, times ``placeholder / size``."""
        ...


Role = TypeVar("Role")


def _checked_role(role_object: Role, role: type, argument: str) -> Role:
    """``role_object`` if it has every method and attribute of ``role``; else TypeError naming what is missing,
    so a frontend that forgets part of a role fails when it is made, not at its first step."""
    if isinstance(role_object, role):
        return role_object
    wanted = {name for name in vars(role) if not name.startswith("_")} | set(getattr(role, "__annotations__", {}))
    missing = sorted(name for name in wanted if not hasattr(role_object, name))
    raise TypeError(
        f"DistQCompressor({argument}=...) must provide {role.__name__}; {type(role_object).__name__} lacks "
        f"{', '.join(missing) or 'nothing by name (check its members)'}"
    )
