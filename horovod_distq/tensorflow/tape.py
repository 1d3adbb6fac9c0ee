"""``DistributedGradientTape``: Horovod's tape, taking Keras 3 variables, with DistQ in one round a step.

Horovod 0.28.1's tape keys gradients by ``variable.ref()``, which Keras 3 variables lack, so
``hvd.DistributedGradientTape(...).gradient(loss, model.trainable_variables)`` fails on a Keras 3
model (Horovod issue 4290). This tape hands Horovod the ``tf.Variable`` behind each Keras variable
(its ``.value``) and otherwise leaves everything to Horovod's tape (local sources, groups, process
sets), except the reduction of a DistQ step: all of its gradients in one round
(:class:`horovod_distq.tensorflow.reduction.GradientReducer`) instead of one ``tf.cond`` and
allreduce per gradient.
"""

from __future__ import annotations

from typing import Any

import horovod.tensorflow as hvd
import tensorflow as tf

from horovod_distq.tensorflow.compressor import DistQ
from horovod_distq.tensorflow.naming import backing_variable, variable_name
from horovod_distq.tensorflow.reduction import GradientReducer


def DistributedGradientTape(
    gradtape: tf.GradientTape, compression: Any = hvd.Compression.none, **horovod_options: Any
) -> tf.GradientTape:
    """Wraps a ``tf.GradientTape`` like ``hvd.DistributedGradientTape``, for Keras 3 models too.

    Args:
        gradtape: the tape that recorded the forward pass.
        compression: a :class:`DistQ` (or any Horovod compressor).
        **horovod_options: the other arguments of ``hvd.DistributedGradientTape`` (``op``,
            ``gradient_predivide_factor``, ``sparse_as_dense``, ``groups``, ``process_set``, ...).

    Returns:
        Horovod's distributed tape, whose ``gradient``, ``register_local_source`` and
        ``get_local_and_global_gradients`` also take Keras 3 variables. With a :class:`DistQ`,
        each gradient's error-feedback and closed-loop state is named after its variable, and a
        step's gradients travel in one round (without ``groups``; with them, Horovod's per-gradient
        path). On one worker nothing is reduced or compressed, as Horovod's tape does.

    Raises:
        ValueError: ``op=hvd.Adasum`` with a :class:`DistQ` (Adasum reduces parameters, not sums).

    Example:
        >>> with tf.GradientTape() as tape:
        ...     loss = loss_fn(model(x), y)
        >>> tape = DistributedGradientTape(tape, compression=DistQ(ratio=0.01))
        >>> grads = tape.gradient(loss, model.trainable_variables)
        >>> optimizer.apply_gradients(zip(grads, model.trainable_variables))
    """
    if isinstance(compression, DistQ) and horovod_options.get("op") == hvd.Adasum:
        raise ValueError("DistQ sends sparse sums; op=hvd.Adasum is not supported with it")
    tape = hvd.DistributedGradientTape(gradtape, compression=compression, **horovod_options)
    _KerasVariables(tape, compression, horovod_options).install()
    return tape


class _KerasVariables:
    """Horovod tape methods that take Keras 3 variables, map them to their ``tf.Variable`` for
    Horovod, and name DistQ's gradients after them.

    With a :class:`DistQ` (and no ``groups``), the gradients are reduced in one round a step by
    :class:`horovod_distq.tensorflow.reduction.GradientReducer` instead of Horovod's allreduce of
    each gradient in a ``tf.cond`` of its own: the same sums, with the same collectives whatever
    the number of gradients, and a smaller traced graph.

    Args:
        tape: Horovod's distributed tape, whose methods this wraps.
        compression: the tape's compressor.
        horovod_options: the tape's other arguments (``sparse_as_dense``: IndexedSlices gradients
            are compressed too; ``op``, ``gradient_predivide_factor``, ``process_set``, ``groups``).
    """

    def __init__(self, tape: tf.GradientTape, compression: Any, horovod_options: dict[str, Any]) -> None:
        self.tape = tape
        self.compression = compression
        self.sparse_as_dense = horovod_options.get("sparse_as_dense", False)
        self.process_set = horovod_options.get("process_set", hvd.global_process_set)
        self.reducer = None
        if isinstance(compression, DistQ) and horovod_options.get("groups") is None:
            self.reducer = GradientReducer(
                compression, horovod_options.get("op", hvd.Average),
                horovod_options.get("gradient_predivide_factor", 1.0), self.process_set,
            )
        self.horovod_gradient = tape.gradient
        self.horovod_register_local_source = tape.register_local_source
        self.horovod_split = tape.get_local_and_global_gradients
        self.horovod_allreduce = tape._allreduce_grads
        self.names: dict[int, str] = {}

    def install(self) -> None:
        self.tape.gradient = self.gradient
        self.tape.register_local_source = self.register_local_source
        self.tape.get_local_and_global_gradients = self.get_local_and_global_gradients
        self.tape._allreduce_grads = self.allreduce_grads

    def backing_variables(self, sources: list) -> list[tf.Variable]:
        variables = [backing_variable(s) for s in sources]
        self.names.update((id(v), variable_name(s)) for v, s in zip(variables, sources) if v is not s)
        return variables

    def gradient(self, target, sources, output_gradients=None, use_generic_names=False):
        return self.horovod_gradient(target, self.backing_variables(sources), output_gradients, use_generic_names)

    def register_local_source(self, source):
        return self.horovod_register_local_source(backing_variable(source))

    def get_local_and_global_gradients(self, target, sources, output_gradients=None, use_generic_names=False):
        variables = self.backing_variables(sources)
        originals = {id(v): s for v, s in zip(variables, sources)}
        local, global_ = self.horovod_split(target, variables, output_gradients, use_generic_names)
        return [(originals[id(v)], g) for v, g in local], [(originals[id(v)], g) for v, g in global_]

    def allreduce_grads(self, grads, variables, use_generic_names=False):
        if not isinstance(self.compression, DistQ):
            return self.horovod_allreduce(grads, variables, use_generic_names)
        if self.reducer is not None:
            if self.sparse_as_dense:
                grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]
            return self.reducer(grads, variables, [self.names.get(id(v), variable_name(v)) for v in variables])
        # Horovod calls compress() once per dense gradient, in order; sparse ones it allgathers itself.
        compressed = [
            v for g, v in zip(grads, variables)
            if g is not None and (self.sparse_as_dense or not isinstance(g, tf.IndexedSlices))
        ]
        names = [self.names.get(id(v), variable_name(v)) for v in compressed]
        with self.compression.names.given(names, compressed):
            return self.horovod_allreduce(grads, variables, use_generic_names)
