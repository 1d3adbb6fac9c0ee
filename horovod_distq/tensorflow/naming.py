"""How a gradient gets its name: from the tape's variables, or from its position in the traced step.

Horovod's ``Compressor.compress(tensor)`` receives the gradient alone, but error feedback and the
closed loop keep state per gradient across steps. ``horovod_distq.tensorflow.DistributedGradientTape``
hands the names of a step's variables over (:meth:`GradientNames.given`) before Horovod calls
``compress()`` once per gradient, in order; without them (Horovod's own tape) a gradient's position
among the ``compress()`` calls of the traced step names it (``gradient.0``, ``gradient.1``, ...).
Positions restart with every trace: tf.function may trace a step twice, and Horovod compresses in
the same order every time.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import tensorflow as tf

from horovod_distq.naming import NameOwners


class GradientNames:
    """Which gradient the next ``compress()`` call is for.

    Example:
        >>> names = GradientNames()
        >>> with names.given(["dense/kernel", "dense/bias"], [kernel, bias]):
        ...     names.of(gradient)  # "dense/kernel", then "dense/bias"
    """

    how_to_name = "use it through horovod_distq.tensorflow.DistributedGradientTape or call compress(tensor, name=...)"

    def __init__(self) -> None:
        self._owners = NameOwners("variables")
        self._names: list[str] = []
        self._graph: weakref.ref | None = None
        self._position = 0

    @contextmanager
    def given(self, names: list[str], variables: list[tf.Variable]) -> Iterator[None]:
        """Names the gradients of the ``compress()`` calls made inside the block, in order.

        Args:
            names: one name per call to come; duplicates get a ``#position`` suffix.
            variables: the variable of each name.

        Raises:
            ValueError: a name was given for another variable before (one DistQ serves one model).
        """
        unique = [name if names.index(name) == i else f"{name}#{i}" for i, name in enumerate(names)]
        for name, variable in zip(unique, variables):
            self._owners.bind(name, variable)
        self._start(unique)
        try:
            yield
        finally:
            self._start([])

    def of(self, tensor: tf.Tensor) -> str | None:
        """The name of the gradient ``tensor`` of the next ``compress()`` call; None eagerly without names."""
        graph = _outermost_graph()
        if graph is None and not self._names:
            return None
        if graph is not None and (self._graph is None or self._graph() is not graph):
            self._graph, self._position = weakref.ref(graph), 0
        position = self._position
        self._position += 1
        return self._names[position] if position < len(self._names) else f"gradient.{position}"

    def _start(self, names: list[str]) -> None:
        self._names, self._graph, self._position = names, None, 0


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


def variable_name(variable: Any) -> str:
    """The name a gradient of ``variable`` gets: a Keras 3 path ("sequential/dense/kernel") is unique
    within a model; a ``tf.Variable``'s name loses its ":0"."""
    path = getattr(variable, "path", None)
    return path if isinstance(path, str) else variable.name.split(":")[0]


def collective_name(tensor: tf.Tensor) -> str | None:
    """The name Horovod gives the allreduce of ``tensor`` in a traced step (its tensor name with
    every character but letters, digits and '_' as '_', as Horovod 0.28.1's ``_normalize_name``
    writes it); None eagerly, where Horovod matches collectives by order, not by name."""
    if tf.executing_eagerly():
        return None
    return re.sub(r"[^A-Za-z0-9_]", "_", tensor.name)


@contextmanager
def named_like_gradient(gradient: tf.Tensor) -> Iterator[str | None]:
    """Creates the block's op named so that Horovod names its allreduce as it would the gradient's.

    Horovod names a traced allreduce after the tensor it reduces. A placeholder made at the top
    name scope under the yielded name (the gradient's tensor name normalized, without ":0") has a
    tensor name Horovod normalizes to the gradient's. So a rank that sends this gradient dense,
    with DistQ or with another compressor, meets the placeholder in one allreduce, whose shape
    check fails on every rank instead of each waiting in a collective only it joins.
    """
    name = collective_name(gradient)
    if name is None:
        yield None
        return
    with tf.compat.v1.get_default_graph().name_scope(None):
        yield name.removesuffix("_0")


def _outermost_graph() -> tf.Graph | None:
    if tf.executing_eagerly():
        return None
    # The outermost function graph of the trace: its parent, the process-wide graph, outlives traces.
    graph = tf.compat.v1.get_default_graph()
    while hasattr(getattr(graph, "outer_graph", None), "outer_graph"):
        graph = graph.outer_graph
    return graph
