"""DistQ for TensorFlow: the compressor ``hvd.DistributedGradientTape(compression=...)`` accepts."""

from __future__ import annotations

import dataclasses
import math
import os
import threading
import zlib
from collections.abc import Sequence
from typing import Any

import horovod.tensorflow as hvd
import tensorflow as tf

from horovod_distq.compressor import DistQCompressor, SparseContext
from horovod_distq.config import DistQConfig, document_settings
from horovod_distq.families import DEFAULT_SAMPLE_SIZE
from horovod_distq.local_adam import LocalAdam
from horovod_distq.tensorflow import world
from horovod_distq.tensorflow.control import RatioController
from horovod_distq.tensorflow.encoding import encode
from horovod_distq.tensorflow.error_feedback import ErrorFeedback, residual_dtype
from horovod_distq.tensorflow.exchange import AllgatherExchange
from horovod_distq.tensorflow.naming import GradientNames, collective_name, named_like_gradient, variable_name
from horovod_distq.tensorflow.ops import sparsify
from horovod_distq.tensorflow.warmup import WarmupCounter
from horovod_distq.warmup import Warmup

# How long the first traced step waits for every rank to join the settings check (seconds).
AGREEMENT_TIMEOUT_VARIABLE = "HOROVOD_DISTQ_AGREEMENT_TIMEOUT"
AGREEMENT_TIMEOUT_SECONDS = 300.0


@document_settings
class DistQ(DistQCompressor, tf.Module):
    """Horovod compressor for TensorFlow: sends each large gradient as the (index, value) pairs
    beyond a fitted threshold (:class:`horovod_distq.compressor.DistQCompressor` has the behaviour).

    Pass it to ``hvd.DistributedGradientTape``, to :func:`horovod_distq.tensorflow.DistributedGradientTape`
    (which also takes Keras 3 variables and names the state after them, and sends a step's pairs in
    one allgather), or to the Keras optimizer of :mod:`horovod_distq.tensorflow.keras`. Under
    Horovod's own tape each compressed gradient travels in its own allgather. Works eagerly and
    inside ``tf.function``; make it outside any ``tf.function``. Its state lives in
    ``tf.Variable``s created on first use (or by :meth:`build`): ``tf.train.Checkpoint(distq=compression)``
    saves and restores this rank's, and ``state_dict()`` gives NumPy copies (every rank's with
    ``all_ranks=True``).

    Args:
        {settings}
        process_set: the process set the tape reduces over (Horovod does not tell compressors).

    Raises:
        ValueError: an invalid setting, or made inside a ``tf.function``.
        TypeError: a parameter the family does not take.

    Example:
        >>> compression = DistQ(ratio=0.01)
        >>> tape = horovod_distq.tensorflow.DistributedGradientTape(tape, compression=compression)
        >>> tf.train.Checkpoint(model=model, distq=compression).save(path)       # per rank
        >>> state = compression.state_dict(all_ranks=True)                       # or on rank 0
    """

    _sparsify = staticmethod(sparsify)
    _encode = staticmethod(encode)

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
        if tf.inside_function():
            raise ValueError(
                "make DistQ outside any tf.function (e.g. beside the model): it keeps state across steps in "
                "variables, and a tf.function that makes one per call would make new ones every trace"
            )
        config = DistQConfig(
            ratio=ratio, distribution=distribution, error_feedback=error_feedback, min_numel=min_numel,
            sample_size=sample_size, value_encoding=value_encoding, stages=stages, closed_loop=closed_loop,
            exchange=exchange, warmup=warmup, momentum=momentum, adam=adam, family_params=family_params,
        )
        config.refuse_two_phase("TensorFlow")
        tf.Module.__init__(self, name="distq")
        DistQCompressor.__init__(
            self,
            config,
            names=GradientNames(),
            memory=ErrorFeedback(config.momentum, config.adam),
            controller=RatioController(config.ratio),
            schedule=WarmupCounter(config.warmup_factors),
            exchange=AllgatherExchange(process_set),
        )
        # Per gradient, [selected, threshold] of its last step, for stats.
        self.selections: dict[str, tf.Variable] = {}
        self._settings_agreed = False

    # DistQ's Python branches on static facts only (dtypes, sizes, settings): AutoGraph, which
    # Horovod's tape applies to the compressor inside its tf.cond, has nothing to convert there.
    @tf.autograph.experimental.do_not_convert
    def compress(self, tensor: tf.Tensor, name: str | None = None) -> tuple[tf.Tensor, SparseContext | None]:
        if not self._settings_agreed:
            self._agree_on_settings()
        return super().compress(tensor, name)

    def _agree_on_settings(self, variables_key: int = 0) -> None:
        """Checks, once, that every rank was given the settings that decide which gradients are
        sparse and how their values travel, by one eager allgather when the first step is traced
        (or in :meth:`build`, which also checks the variables: ``variables_key``).

        TensorFlow runs a step's collectives in parallel: where ranks disagree on compressing a
        gradient, Horovod's shape check fails that collective, and a rank that leaves the step
        before starting its other collectives leaves its peers waiting in them. So the
        disagreement must be found before the step runs, on every rank. A rank that hands its tape
        no DistQ never joins this check: the others give up after AGREEMENT_TIMEOUT_SECONDS.

        Raises:
            ValueError: the ranks' settings differ (on every rank).
            RuntimeError: not every rank joined within the time limit.
        """
        process_set = self.exchange.process_set
        # Under Horovod's elastic mode a joining worker checks alone, so no separate collective
        # there: the exchange headers' checksum still stops ranks whose gradients travel differently.
        if hvd.is_initialized() and process_set.included() and process_set.size() > 1 and not world.elastic_mode():
            timeout = float(os.environ.get(AGREEMENT_TIMEOUT_VARIABLE, AGREEMENT_TIMEOUT_SECONDS))
            keys = _allgather_within([self.config.agreement_key(), variables_key], process_set, timeout)
            if keys is None:
                raise RuntimeError(
                    f"DistQ: not every rank joined the settings check of the first step within {timeout:g} s. "
                    "Every rank must hand its tape a DistQ (a rank with another compressor, or none, never "
                    f"joins). If ranks reach their first step further apart, set {AGREEMENT_TIMEOUT_VARIABLE}."
                )
            self.config.check_agreement(keys[0::2])
            if len(set(keys[1::2])) > 1:
                raise ValueError(
                    "DistQ: the ranks' trainable variables differ in names, shapes or dtypes, or in which of them go "
                    f"sparse (a checksum by rank: {keys[1::2]}); every rank must train the same model with the "
                    "same settings"
                )
        self._settings_agreed = True

    @tf.autograph.experimental.do_not_convert
    def decompress(self, tensor: tf.Tensor, ctx: SparseContext | None) -> tf.Tensor:
        # The pairs travel only once the placeholder's allreduce has succeeded: where it fails
        # (ranks disagree on compressing this gradient), no rank is left waiting in the allgather.
        with tf.control_dependencies([tensor]):
            return super().decompress(tensor, ctx)

    def _is_parameter(self, tensor: tf.Tensor) -> bool:
        return False  # distq's tape refuses Adasum; gradients reach compress() as tensors

    def _numel(self, tensor: tf.Tensor) -> int | None:
        return tensor.shape.num_elements()

    def _is_floating(self, tensor: tf.Tensor) -> bool:
        return tensor.dtype.is_floating

    def _element_size(self, tensor: tf.Tensor) -> int:
        return tensor.dtype.size

    def _dtype_name(self, tensor: tf.Tensor) -> str:
        return tensor.dtype.name

    def _flatten(self, tensor: tf.Tensor) -> tf.Tensor:
        return tf.reshape(tensor, [-1])

    def _count(self, indices: tf.Tensor) -> tf.Tensor:
        return tf.size(indices, out_type=tf.int64)

    def use_local_adam(self, adam: LocalAdam) -> None:
        """Switches local Adam on (``adam=adam``; an "auto" warm-up becomes local Adam's), for
        :func:`horovod_distq.tensorflow.keras.DistributedOptimizer`, which moves an Adam
        optimizer's moments here.

        Args:
            adam: the settings, from :func:`horovod_distq.tensorflow.move_adam`.

        Raises:
            ValueError: the compressor has state already (it has been used or built), or its
                settings exclude local Adam (momentum correction, local Adam given, no error feedback).
        """
        if self.selections or self._settings_agreed:  # state exists from the first build or step
            raise ValueError("DistQ has been used or built already: local Adam can only be switched on before")
        if self.config.transforms_gradients:
            raise ValueError("DistQ has momentum correction or local Adam already")
        self.config = dataclasses.replace(self.config, adam=adam)
        self.memory = ErrorFeedback(self.config.momentum, self.config.adam)
        self.schedule = WarmupCounter(self.config.warmup_factors)

    def build(self, variables: Sequence[Any]) -> None:
        """Creates, eagerly, the state of each of ``variables``' gradients that takes the sparse
        path, and checks the ranks' settings (a collective: every rank calls it), so that the first
        traced step creates no variable and ``tf.function`` traces it once, not twice. It also
        checks that every rank's variables have the same names, shapes and dtypes, and that the
        ranks send the same gradients sparse.

        Args:
            variables: the trainable variables (``tf.Variable`` or Keras 3), as the optimizer builds.

        Raises:
            ValueError: the ranks' settings, or their variables, differ (on every rank).

        Example:
            >>> compression.build(model.trainable_variables)   # before the first step
        """
        described = []
        for variable in variables:
            spec = tf.TensorSpec(variable.shape, variable.dtype)
            name, sparse = variable_name(variable), self.compresses(spec)
            # What the ranks must agree on, including which gradients go sparse (exchange="auto"
            # decides with each rank's ratio).
            described.append(f"{name}:{spec.shape}:{spec.dtype.name}:{sparse}")
            if self.config.transforms_gradients and spec.dtype.is_floating:  # dense gradients too
                self.memory.prepare_direction(name, spec.shape.num_elements(), spec.dtype)
            if not sparse:
                continue
            if self.config.error_feedback:
                self.memory.prepare(name, spec.shape.num_elements(), spec.dtype)
            if self.config.closed_loop:
                self.controller.prepare(name)
            if self.config.warmup_schedule is not None:
                self.schedule.prepare(name)
            self._selection_record(name)
        # Ranks whose models differ would reduce differently grouped gradients: found here, not in a stall.
        self._agree_on_settings(zlib.crc32("\n".join(described).encode()))

    def _record_selection(self, name: str, selected: tf.Tensor, threshold: tf.Tensor) -> tf.Variable:
        record = self._selection_record(name)
        record.assign(tf.stack([tf.cast(selected, tf.float64), tf.cast(threshold, tf.float64)]))
        return record

    def _selection_record(self, name: str) -> tf.Variable:
        record = self.selections.get(name)
        if record is None:
            with tf.init_scope():
                record = tf.Variable(tf.constant([-1.0, math.nan], tf.float64), trainable=False, name="selection")
            self.selections[name] = record
        return record

    def _read_selection(self, record: tf.Variable) -> tuple[int, float]:
        selected, threshold = record.numpy().tolist()
        return int(selected), threshold

    def _op_name(self, tensor: tf.Tensor) -> str | None:
        name = collective_name(tensor)
        return name and "Distq_" + name

    def _placeholder(self, tensor: tf.Tensor) -> tf.Tensor:
        with named_like_gradient(tensor) as name:
            return tf.ones([1], tf.float32, name=name)

    def _write_scalars(self, writer: tf.summary.SummaryWriter, scalars: dict[str, float], step: int) -> None:
        with writer.as_default():
            for tag, value in scalars.items():
                tf.summary.scalar(tag, value, step=step)

    def _ranks(self) -> int | tf.Tensor:
        return world.ranks(self.exchange.process_set)

    def _planned_ranks(self) -> int | None:
        return None if world.size_changes_between_runs() else super()._planned_ranks()

    def _scatter_scaled(
        self, ctx: SparseContext, indices: tf.Tensor, values: tf.Tensor, placeholder: tf.Tensor, size: int | tf.Tensor
    ) -> tf.Tensor:
        dtype = residual_dtype(ctx.dtype)
        scaled = tf.cast(values, dtype) * tf.cast(placeholder / tf.cast(size, placeholder.dtype), dtype)  # [k] * [1]
        dense = tf.scatter_nd(tf.expand_dims(indices, 1), scaled, [ctx.queued.layout.numel])
        return tf.cast(tf.reshape(dense, ctx.shape), ctx.dtype)


def _allgather_within(values: list[int], process_set: hvd.ProcessSet, timeout: float) -> list[int] | None:
    """Every rank's ``values`` (int64, eagerly), or None when not all ranks joined within ``timeout`` s."""
    outcome: list[Any] = []

    def gather() -> None:
        try:
            outcome.append(hvd.allgather(tf.constant(values, tf.int64), process_set=process_set).numpy().tolist())
        except Exception as error:
            outcome.append(error)

    # In a thread of its own, so that a collective no peer joins cannot hold the step for ever.
    thread = threading.Thread(target=gather, name="distq-settings-check", daemon=True)
    thread.start()
    thread.join(timeout)
    if outcome and isinstance(outcome[0], Exception):
        raise outcome[0]
    return outcome[0] if outcome else None
