"""``DistributedGradientTape``: Horovod's tape, taking Keras 3 variables and naming DistQ's state.

Horovod 0.28.1's tape keys gradients by ``variable.ref()``, which Keras 3 variables lack, so
``hvd.DistributedGradientTape(...).gradient(loss, model.trainable_variables)`` fails on a Keras 3
model (Horovod issue 4290). This tape hands Horovod the ``tf.Variable`` behind each Keras variable
(its ``.value``) and otherwise leaves everything to Horovod's tape: op, scale factors, groups,
local sources, process sets.
"""

from __future__ import annotations

from typing import Any

import horovod.tensorflow as hvd
import tensorflow as tf

from horovod_distq.tensorflow.compressor import DistQ
from horovod_distq.tensorflow.naming import variable_name


def backing_variable(variable: Any) -> tf.Variable:
    """The ``tf.Variable`` a ``tf.Variable`` or a Keras 3 variable stores its value in.

    Raises:
        TypeError: neither a ``tf.Variable`` nor a Keras variable backed by one.
    """
    if isinstance(variable, tf.Variable):
        return variable
    value = getattr(variable, "value", None)
    if isinstance(value, tf.Variable):
        return value
    raise TypeError(f"expected a tf.Variable or a Keras variable, got {type(variable).__name__}")


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
        each gradient's error-feedback and closed-loop state is named after its variable.

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
    _KerasVariables(tape, compression, horovod_options.get("sparse_as_dense", False)).install()
    return tape


class _KerasVariables:
    """Horovod tape methods that take Keras 3 variables, map them to their ``tf.Variable`` for
    Horovod, and name DistQ's gradients after them.

    Args:
        tape: Horovod's distributed tape, whose methods this wraps.
        compression: the tape's compressor.
        sparse_as_dense: the tape's option: IndexedSlices gradients are compressed too.
    """

    def __init__(self, tape: tf.GradientTape, compression: Any, sparse_as_dense: bool) -> None:
        self.tape = tape
        self.compression = compression
        self.sparse_as_dense = sparse_as_dense
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
        # Horovod calls compress() once per dense gradient, in order; sparse ones it allgathers itself.
        compressed = [
            v for g, v in zip(grads, variables)
            if g is not None and (self.sparse_as_dense or not isinstance(g, tf.IndexedSlices))
        ]
        names = [self.names.get(id(v), variable_name(v)) for v in compressed]
        with self.compression.names.given(names, compressed):
            return self.horovod_allreduce(grads, variables, use_generic_names)
