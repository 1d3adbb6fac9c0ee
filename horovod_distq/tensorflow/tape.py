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


def _variable_name(variable: Any) -> str:
    # Keras 3 paths ("sequential/dense/kernel") are unique within a model; tf.Variable names end in ":0".
    path = getattr(variable, "path", None)
    return path if isinstance(path, str) else variable.name.split(":")[0]


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
    horovod_gradient = tape.gradient
    horovod_register_local_source = tape.register_local_source
    horovod_split = tape.get_local_and_global_gradients
    horovod_allreduce = tape._allreduce_grads
    compresses_sparse_gradients = horovod_options.get("sparse_as_dense", False)
    names: dict[int, str] = {}

    def backing_variables(sources):
        variables = [backing_variable(s) for s in sources]
        names.update((id(v), _variable_name(s)) for v, s in zip(variables, sources) if v is not s)
        return variables

    def gradient(target, sources, output_gradients=None, use_generic_names=False):
        return horovod_gradient(target, backing_variables(sources), output_gradients, use_generic_names)

    def register_local_source(source):
        return horovod_register_local_source(backing_variable(source))

    def get_local_and_global_gradients(target, sources, output_gradients=None, use_generic_names=False):
        variables = backing_variables(sources)
        originals = {id(v): s for v, s in zip(variables, sources)}
        local, global_ = horovod_split(target, variables, output_gradients, use_generic_names)
        return [(originals[id(v)], g) for v, g in local], [(originals[id(v)], g) for v, g in global_]

    def allreduce_grads(grads, variables, use_generic_names=False):
        if not isinstance(compression, DistQ):
            return horovod_allreduce(grads, variables, use_generic_names)
        # Horovod calls compress() once per dense gradient, in order; sparse ones it allgathers itself.
        compressed = [
            names.get(id(v), _variable_name(v))
            for g, v in zip(grads, variables)
            if g is not None and (compresses_sparse_gradients or not isinstance(g, tf.IndexedSlices))
        ]
        with compression.names_for_next_gradients(compressed):
            return horovod_allreduce(grads, variables, use_generic_names)

    tape.gradient = gradient
    tape.register_local_source = register_local_source
    tape.get_local_and_global_gradients = get_local_and_global_gradients
    tape._allreduce_grads = allreduce_grads
    return tape
