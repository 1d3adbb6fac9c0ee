"""DistQ for TensorFlow: the compressor ``hvd.DistributedGradientTape(compression=...)`` accepts."""

from __future__ import annotations

import math
import re
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import horovod.tensorflow as hvd
import tensorflow as tf

from horovod_distq import wire
from horovod_distq.config import DistQConfig
from horovod_distq.stats import TensorStats
from horovod_distq.tensorflow.encoding import encode
from horovod_distq.tensorflow.exchange import QueuedTensor, exchange
from horovod_distq.tensorflow.ops import initial_loop_state, sparsify, update_loop_state

# What compress() returns in place of a sparse gradient: Horovod allreduces it with the tape's op
# and scale factors, which tells decompress() how to scale the gathered sum.
_PLACEHOLDER_BYTES = 4


def accumulation_dtype(dtype: tf.DType) -> tf.DType:
    """Residuals of 16-bit gradients are kept in float32: the small entries they hold are the
    ones 16-bit arithmetic would round away."""
    return tf.float32 if dtype in (tf.float16, tf.bfloat16) else dtype


class _SparseContext(NamedTuple):
    """What decompress() needs to exchange and rebuild one sparse gradient."""

    shape: tf.TensorShape
    queued: QueuedTensor
    op_name: str | None


class TensorState(tf.Module):
    """The variables one compressed gradient keeps across steps (created once, on first use).

    Attributes:
        residual: error-feedback residual, flattened, in the accumulation dtype (or None).
        loop: closed-loop state, 4 float64 (or None); see ``csrc/core/control.h``.
        selected: entries this rank sent in the last step (-1 before the first).
        threshold: the last fitted threshold.
    """

    def __init__(self, numel: int, gradient_dtype: tf.DType, index_bytes: int, config: DistQConfig) -> None:
        super().__init__()
        self.numel = numel
        self.gradient_dtype = gradient_dtype
        self.index_bytes = index_bytes
        self.residual = (
            tf.Variable(tf.zeros([numel], accumulation_dtype(gradient_dtype)), trainable=False, name="residual")
            if config.error_feedback
            else None
        )
        self.loop = (
            tf.Variable(initial_loop_state(config.ratio), trainable=False, name="loop") if config.closed_loop else None
        )
        self.selected = tf.Variable(tf.constant(-1, tf.int64), trainable=False, name="selected")
        self.threshold = tf.Variable(tf.constant(math.nan, tf.float64), trainable=False, name="threshold")


class _GradientNames:
    """Which gradient the next compress() call is for.

    ``horovod_distq.tensorflow.DistributedGradientTape`` hands over the variable names of a step
    before Horovod calls compress() once per gradient, in order; without names (Horovod's own
    tape) the gradient's position among the compress() calls of the traced step names it
    (``gradient.0``, ``gradient.1``, ...). Positions restart with every trace: tf.function may
    trace a step twice, and Horovod compresses in the same order every time.
    """

    def __init__(self) -> None:
        self.names: list[str] = []
        self._graph: weakref.ref | None = None
        self._position = 0

    def start(self, names: list[str]) -> None:
        self.names, self._graph, self._position = names, None, 0

    def next(self) -> str | None:
        graph = _outermost_graph()
        if graph is None and not self.names:
            return None
        if graph is not None and (self._graph is None or self._graph() is not graph):
            self._graph, self._position = weakref.ref(graph), 0
        position = self._position
        self._position += 1
        return self.names[position] if position < len(self.names) else f"gradient.{position}"


def _outermost_graph() -> tf.Graph | None:
    if tf.executing_eagerly():
        return None
    # The outermost function graph of the trace: its parent, the process-wide graph, outlives traces.
    graph = tf.compat.v1.get_default_graph()
    while hasattr(getattr(graph, "outer_graph", None), "outer_graph"):
        graph = graph.outer_graph
    return graph


def _op_name(tensor: tf.Tensor) -> str | None:
    """A name derived from the gradient's for the tensors Horovod names its collectives after,
    so a trace or a Horovod log shows which gradient a collective carries."""
    if tf.executing_eagerly():
        return None
    return "Distq_" + re.sub(r"[^A-Za-z0-9_]", "_", tensor.name)


class DistQ(tf.Module):
    """Sends each large gradient as the (index, value) pairs beyond a fitted threshold.

    A Horovod compressor for TensorFlow: pass it as ``compression=`` to
    ``hvd.DistributedGradientTape`` or to :func:`horovod_distq.tensorflow.DistributedGradientTape`
    (which also takes Keras 3 variables and names the error-feedback state after them). For each
    gradient with at least ``min_numel`` entries it adds the error-feedback residual, fits
    ``distribution``, selects about ``ratio`` of the entries, encodes their values and sends them
    with one Horovod allgather; every rank sums all pairs and applies the tape's reduction
    (op=Average or Sum, ``gradient_predivide_factor``). Smaller and non-floating gradients go to
    Horovod's dense allreduce. Works eagerly and inside ``tf.function``; its state lives in
    ``tf.Variable``s created on first use, so ``tf.train.Checkpoint(distq=compression)`` saves and
    restores it.

    Args:
        ratio: target fraction of entries sent per compressed gradient, in (0, 1].
        distribution: family of ``horovod_distq.FAMILIES`` the threshold comes from.
        error_feedback: add what was not sent to the next step's gradient (claim 9).
        min_numel: gradients with fewer entries go dense.
        sample_size: strided sample size for medians and quartiles.
        value_encoding: how values travel: "auto" (the gradient's dtype), "float32", "float16",
            "bfloat16" or "sign"; see ``horovod_distq.VALUE_ENCODINGS``.
        stages: peaks-over-threshold stages of the fit; None: 3 for ``distribution="auto"``, else 1.
        closed_loop: per gradient, correct the ratio fed to the fit from the ratio it achieved in
            earlier steps (the compiled core's loop, state in a ``tf.Variable``).
        process_set: the process set the tape reduces over (Horovod does not tell compressors).
        **family_params: the family's parameters (``dof`` for ``student_t``).

    Raises:
        ValueError: an invalid setting; or, on every rank, ranks of ``process_set`` given different
            ``min_numel`` or ``value_encoding`` (checked by one allgather when Horovod is initialized,
            so make the compressor on every rank, in the same order).

    Example:
        >>> compression = DistQ(ratio=0.01, distribution="normal")
        >>> tape = horovod_distq.tensorflow.DistributedGradientTape(tape, compression=compression)
        >>> ...  # train; then
        >>> compression.stats["sequential/dense/kernel"].achieved_ratio
        >>> tf.train.Checkpoint(model=model, distq=compression).save(path)
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
        super().__init__(name="distq")
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
        self.process_set = process_set
        if hvd.is_initialized() and process_set.included() and process_set.size() > 1:
            # One allgather when the compressor is made, so ranks given different settings fail here
            # instead of waiting in a step's collectives.
            with tf.init_scope():
                keys = hvd.allgather(tf.constant([self.config.agreement_key()], tf.int64), process_set=process_set)
            self.config.check_agreement(keys.numpy().tolist())
        self.tensors: dict[str, TensorState] = {}
        self._dense: dict[str, TensorStats] = {}
        self._names = _GradientNames()
        self._unnamed = 0

    @property
    def stats(self) -> dict[str, TensorStats]:
        """Per gradient name, what it did in its last step on this rank (read eagerly)."""
        result = dict(self._dense)
        for name, state in self.tensors.items():
            selected = int(state.selected.numpy())
            if selected < 0:
                continue
            exchanged = wire.segment_bytes(
                self.config.value_encoding, selected, state.index_bytes, state.gradient_dtype.size
            )
            result[name] = TensorStats(
                numel=state.numel,
                selected=selected,
                threshold=float(state.threshold.numpy()),
                bytes_sent=wire.header_bytes(1) + exchanged + _PLACEHOLDER_BYTES,
                dense_bytes=state.numel * state.gradient_dtype.size,
            )
        return result

    @property
    def bytes_sent(self) -> int:
        """Bytes this rank put into collectives in its last step, over every gradient."""
        return sum(s.bytes_sent for s in self.stats.values())

    def compresses(self, tensor: tf.Tensor) -> bool:
        """Whether ``tensor`` takes the sparse path (else it goes dense)."""
        numel = tensor.shape.num_elements()
        return tensor.dtype.is_floating and numel is not None and numel >= max(self.config.min_numel, 1)

    @contextmanager
    def names_for_next_gradients(self, names: list[str]) -> Iterator[None]:
        """Names the gradients of the compress() calls made inside the block, in order.

        Args:
            names: one name per compress() call to come; duplicates get a ``#position`` suffix.
        """
        self._names.start([name if names.index(name) == i else f"{name}#{i}" for i, name in enumerate(names)])
        try:
            yield
        finally:
            self._names.start([])

    def compress(self, tensor: tf.Tensor, name: str | None = None) -> tuple[tf.Tensor, _SparseContext | None]:
        """Selects and encodes a gradient's pairs; returns the placeholder to allreduce.

        Args:
            tensor: the gradient.
            name: a name for its state; by default the tape's variable name, or its position in
                the traced step.

        Returns:
            ``(tensor_to_allreduce, ctx)`` as Horovod's Compressor interface expects.
        """
        name = name if name is not None else self._names.next()
        op_name = _op_name(tensor)
        if not self.compresses(tensor):
            if name is not None and tensor.shape.num_elements() is not None:
                nbytes = tensor.shape.num_elements() * tensor.dtype.size
                self._dense[name] = TensorStats(tensor.shape.num_elements(), tensor.shape.num_elements(), None,
                                                nbytes, nbytes)
            # Named like the sparse path's placeholder: ranks that disagree on compressing this
            # gradient meet in one Horovod allreduce, whose shape check fails on all of them.
            return (tensor if op_name is None else tf.identity(tensor, name=op_name + "_payload")), None
        if name is None:
            if self.config.error_feedback:
                raise ValueError(
                    "DistQ(error_feedback=True) needs a gradient name outside a traced step: use it "
                    "through a DistributedGradientTape or call compress(tensor, name=...)"
                )
            name = f"unnamed.{self._unnamed}"
            self._unnamed += 1
        state = self._state(name, tensor)
        flat = tf.reshape(tensor, [-1])
        accumulated = state.residual + tf.cast(flat, state.residual.dtype) if self.config.error_feedback else flat
        selection = sparsify(
            accumulated,
            tf.exp(state.loop[0]) if self.config.closed_loop else self.config.ratio,
            self.config.distribution,
            stages=self.config.fit_stages,
            sample_size=self.config.sample_size,
            **self.config.family_params,
        )
        selected = tf.size(selection.indices, out_type=tf.int64)
        if self.config.closed_loop:
            state.loop.assign(update_loop_state(state.loop, selected, state.numel, self.config.ratio))
        pairs = encode(self.config.value_encoding, selection.indices, selection.values, tensor.dtype)
        if self.config.error_feedback:
            # What the receivers decode is what was sent: the encoding error stays in the residual,
            # and a non-finite entry restarts at 0 instead of poisoning every later step.
            error = selection.values - tf.cast(pairs.decoded, accumulated.dtype)
            error = tf.where(tf.math.is_finite(error), error, tf.zeros_like(error))
            state.residual.assign(tf.tensor_scatter_nd_update(accumulated, selection.indices[:, None], error))
        state.selected.assign(selected)
        state.threshold.assign(tf.cast(selection.threshold, tf.float64))
        queued = QueuedTensor(name, state.numel, self.config.value_encoding, tensor.dtype, pairs)
        placeholder = tf.ones([1], tf.float32, name=op_name and op_name + "_payload")
        return placeholder, _SparseContext(tensor.shape, queued, op_name)

    def decompress(self, tensor: tf.Tensor, ctx: _SparseContext | None) -> tf.Tensor:
        """Allgathers every rank's pairs and returns the reduced gradient.

        Args:
            tensor: Horovod's allreduce result of what :meth:`compress` returned.
            ctx: the context :meth:`compress` returned.

        Returns:
            The reduced gradient, in the gradient's dtype and shape.
        """
        if ctx is None:
            return tensor
        # The pairs travel after the placeholder's allreduce (TensorFlow runs collectives in program
        # order), so ranks that disagree on compressing a gradient fail there instead of waiting
        # in an allgather that only some of them join.
        [(indices, values)] = exchange([ctx.queued], self.process_set, ctx.op_name and ctx.op_name + "_pairs")
        dtype = accumulation_dtype(ctx.queued.gradient_dtype)
        # The placeholder came back as size (op=Sum) or 1 (op=Average, any predivide factor); the
        # scale is applied to the gathered values, not to the dense sum (k entries, not n).
        scale = tf.cast(tensor[0], dtype) / self.process_set.size()
        dense = tf.scatter_nd(indices[:, None], tf.cast(values, dtype) * scale, [ctx.queued.numel])
        return tf.cast(tf.reshape(dense, ctx.shape), ctx.queued.gradient_dtype)

    def _state(self, name: str, tensor: tf.Tensor) -> TensorState:
        numel = tensor.shape.num_elements()
        state = self.tensors.get(name)
        if state is None:
            index_bytes = 4 if numel < 2**31 else 8
            # Variables are created once, outside any trace, as tf.function requires.
            with tf.init_scope():
                state = TensorState(numel, tensor.dtype, index_bytes, self.config)
            self.tensors[name] = state
        elif state.numel != numel or state.gradient_dtype != tensor.dtype:
            raise ValueError(
                f"DistQ: gradient {name!r} was {state.numel} x {state.gradient_dtype.name} and is now "
                f"{numel} x {tensor.dtype.name}; use a new DistQ for a changed model"
            )
        return state
