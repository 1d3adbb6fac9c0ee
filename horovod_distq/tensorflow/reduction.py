"""One step's gradients reduced across ranks at once: what the Keras optimizer of
:mod:`horovod_distq.tensorflow.keras` runs inside ``model.fit``'s traced train step.

Horovod's tape reduces each gradient inside a ``tf.cond`` of its own (one allreduce, and with
DistQ one allgather, per gradient), which makes a traced step's graph and its first trace grow
with every gradient. :class:`GradientReducer` passes every gradient tensor through the compressor,
sends what comes out (the gradients DistQ leaves uncompressed, and the placeholders of those it
sparsifies) in one grouped allreduce per dtype, then DistQ's pairs of every compressed gradient in
one grouped allgather: the same collectives whatever the number of layers. ``tf.IndexedSlices``
gradients (an embedding's, already sparse as TensorFlow hands them over) skip the compressor and
travel as Horovod sends them.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import horovod.tensorflow as hvd
import tensorflow as tf
from tensorflow.python.ops.control_flow_util import GraphOrParentsInXlaContext
from tensorflow.python.ops.control_flow_v2_func_graphs import CondBranchFuncGraph

from horovod_distq.tensorflow import world
from horovod_distq.tensorflow.compressor import DistQ
from horovod_distq.tensorflow.naming import backing_variable, variable_name


class GradientReducer:
    """Reduces a step's gradients across the ranks of a process set, as Horovod's tape would.

    Args:
        compression: a :class:`DistQ`, a Horovod compressor (``hvd.Compression.fp16``), or None
            (dense, ``hvd.Compression.none``).
        op: ``hvd.Average`` or ``hvd.Sum``.
        gradient_predivide_factor: with ``hvd.Average``, divide by this before the sum and by
            size / factor after it, as Horovod does.
        process_set: the ranks to reduce over.

    Raises:
        ValueError: an op other than Average and Sum, a predivide factor without Average or not
            positive, or a DistQ made for another process set.

    Example:
        >>> reduce = GradientReducer(DistQ(ratio=0.01))
        >>> grads = reduce(grads, model.trainable_variables)   # inside the train step
    """

    def __init__(
        self,
        compression: Any = None,
        op: Any = hvd.Average,
        gradient_predivide_factor: float = 1.0,
        process_set: hvd.ProcessSet = hvd.global_process_set,
    ) -> None:
        if op not in (hvd.Average, hvd.Sum):
            raise ValueError("the gradients can be reduced with op=hvd.Average or hvd.Sum only")
        if gradient_predivide_factor != 1.0 and op != hvd.Average:
            raise ValueError("gradient_predivide_factor needs op=hvd.Average")
        if not gradient_predivide_factor > 0:
            raise ValueError(f"gradient_predivide_factor must be positive, got {gradient_predivide_factor}")
        if isinstance(compression, DistQ) and compression.exchange.process_set != process_set:
            raise ValueError("make the DistQ with the process_set its gradients are reduced over")
        self.compression = hvd.Compression.none if compression is None else compression
        self.op = op
        # Horovod's split of an average: the C++ side divides the postscale factor by the size.
        self.prescale_factor = 1.0 / gradient_predivide_factor if op == hvd.Average else 1.0
        self.postscale_factor = gradient_predivide_factor if op == hvd.Average else 1.0
        self.process_set = process_set

    def build(self, variables: Sequence[Any]) -> None:
        """Creates a DistQ's state for ``variables`` eagerly (see ``DistQ.build``); nothing otherwise."""
        if isinstance(self.compression, DistQ):
            self.compression.build(variables)

    def __call__(
        self, gradients: Sequence[Any], variables: Sequence[Any], names: Sequence[str] | None = None
    ) -> list[Any]:
        """Every rank's gradients reduced, in the order given.

        Args:
            gradients: this rank's gradients (tensors, ``tf.IndexedSlices`` or None), one per variable.
            variables: the variables (``tf.Variable`` or Keras 3).
            names: the names that key DistQ's state, one per variable; by default the variables'.

        Returns:
            The reduced gradients, None where the gradient was None. ``tf.IndexedSlices`` (an
            embedding's) travel as Horovod sends them, by allgather.

        On one worker (or a rank outside the process set) the gradients come back untouched,
        nothing compressed, as Horovod's tape and optimizers do.

        Raises:
            RuntimeError: called inside an XLA-compiled function (``jit_compile=True``), or inside
                a ``tf.cond`` branch (each rank would decide alone whether to reduce).
        """
        _refuse_xla()
        _refuse_a_branch_of_this_rank()
        reduces = world.reduces(self.process_set)
        if reduces is False:
            return list(gradients)  # as Horovod: one worker has nothing to reduce, nothing compressed
        reduced: list[Any] = [None] * len(gradients)
        present = [i for i, g in enumerate(gradients) if g is not None]
        # Positions of the tf.IndexedSlices gradients and of the plain tensors. Only the tensors go
        # through the compressor: DistQ sparsifies them, while slices hold only the rows they touch.
        slices = [i for i in present if isinstance(gradients[i], tf.IndexedSlices)]
        tensors = [i for i in present if not isinstance(gradients[i], tf.IndexedSlices)]
        if slices:
            # Horovod allgathers IndexedSlices (its scale factors do not apply; the average is the same).
            reduced_slices = hvd.grouped_allreduce([gradients[i] for i in slices], op=self.op,
                                                   process_set=self.process_set)
            for i, gradient in zip(slices, reduced_slices):
                reduced[i] = gradient
        if tensors:
            names = [variable_name(v) for v in variables] if names is None else list(names)
            local = [gradients[i] for i in tensors]

            def reduce_tensors() -> list[tf.Tensor]:
                return self._reduce_tensors(local, [variables[i] for i in tensors], [names[i] for i in tensors])

            # A traced step under Horovod's elastic mode decides when it runs, as Horovod's tape does
            # there: the same trace serves one worker (nothing reduced) and several.
            summed = reduce_tensors() if reduces is True else tf.cond(reduces, reduce_tensors, lambda: local)
            for i, gradient in zip(tensors, summed):
                reduced[i] = gradient
        return reduced

    def _reduce_tensors(self, gradients: list[tf.Tensor], variables: list[Any], names: list[str]) -> list[tf.Tensor]:
        """The step's gradient tensors reduced through the compressor. With DistQ, each gradient it
        sparsifies travels as a placeholder in the grouped allreduce and as pairs in the step's one
        allgather, the others whole in the allreduce; a Horovod compressor's output (fp16, ...)
        travels whole in the allreduce."""
        distq = self.compression if isinstance(self.compression, DistQ) else None
        backing = [backing_variable(v) for v in variables]
        with distq.names.given(names, backing) if distq else nullcontext(), \
                distq.exchange.one_round() if distq else nullcontext():
            compressed, contexts = zip(*(self.compression.compress(g) for g in gradients))
            summed = self._grouped_allreduce(list(compressed))
            # The pairs travel only once every allreduce of the step has succeeded: where ranks
            # disagree on a gradient, its allreduce fails and no rank waits in the allgather.
            with tf.control_dependencies(summed):
                return [self.compression.decompress(t, ctx) for t, ctx in zip(summed, contexts)]

    def _grouped_allreduce(self, tensors: list[tf.Tensor]) -> list[tf.Tensor]:
        # Horovod's grouped allreduce takes one dtype: one group per dtype, in dtype-name order on every rank.
        positions = sorted(range(len(tensors)), key=lambda i: tensors[i].dtype.name)
        result: list[Any] = [None] * len(tensors)
        for _, group in itertools.groupby(positions, key=lambda i: tensors[i].dtype.name):
            group = list(group)
            summed = hvd.grouped_allreduce(
                [tensors[i] for i in group], op=self.op, prescale_factor=self.prescale_factor,
                postscale_factor=self.postscale_factor, process_set=self.process_set,
            )
            for i, tensor in zip(group, summed):
                result[i] = tensor
        return result


def _refuse_a_branch_of_this_rank() -> None:
    """A reduction inside a ``tf.cond`` runs on the ranks whose own data took that branch: the
    others would wait for it (Keras's LossScaleOptimizer applies inside a cond on this rank's
    gradients being finite)."""
    if not tf.executing_eagerly() and isinstance(tf.compat.v1.get_default_graph(), CondBranchFuncGraph):
        raise RuntimeError(
            "horovod-distq: the gradients would be reduced inside a tf.cond that each rank decides alone "
            "(with mixed precision, Keras's LossScaleOptimizer applies inside one). Wrap the loss-scale "
            "optimizer instead: DistributedOptimizer(keras.optimizers.LossScaleOptimizer(optimizer)), so "
            "that the gradients are reduced before the finiteness check"
        )


def _refuse_xla() -> None:
    if not tf.executing_eagerly() and GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()):
        raise RuntimeError(
            "horovod-distq: Horovod's collectives and DistQ's ops have no XLA kernels; compile the model "
            "with jit_compile=False (Keras turns XLA on by default where a GPU is present)"
        )
