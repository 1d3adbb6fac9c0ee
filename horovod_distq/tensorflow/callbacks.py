"""Keras 3 callbacks for ``model.fit`` under Horovod: the start from one rank's variables, metrics
averaged over ranks, and DistQ's state saved beside the model.

Horovod 0.28.1's ``horovod.tensorflow.keras.callbacks`` fail on Keras 3 (its variables have no
``ref()``, and the broadcast assigns to symbolic tensors); these do the same jobs on Keras 3.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterable
from typing import Any

import horovod.tensorflow as hvd
import keras

from horovod_distq.tensorflow.compressor import DistQ
from horovod_distq.tensorflow.naming import backing_variable


def broadcast_variables(
    variables: Iterable[Any], root_rank: int = 0, process_set: hvd.ProcessSet = hvd.global_process_set
) -> None:
    """``hvd.broadcast_variables`` for Keras 3 variables too (eagerly): every rank takes ``root_rank``'s values.

    Args:
        variables: ``tf.Variable``s or Keras 3 variables, in the same order on every rank.
        root_rank: the rank whose values win.
        process_set: the ranks that take part.

    Example:
        >>> broadcast_variables(model.variables, root_rank=0)
    """
    unique = list({id(v): v for v in map(backing_variable, variables)}.values())
    if unique:
        hvd.broadcast_variables(unique, root_rank=root_rank, process_set=process_set)


class BroadcastGlobalVariablesCallback(keras.callbacks.Callback):
    """Starts every rank from ``root_rank``'s model and optimizer variables when ``fit`` begins.

    Args:
        root_rank: the rank whose initial values every rank takes.
        process_set: the ranks that take part.

    Example:
        >>> model.fit(x, y, callbacks=[BroadcastGlobalVariablesCallback(root_rank=0)])
    """

    def __init__(self, root_rank: int = 0, process_set: hvd.ProcessSet = hvd.global_process_set) -> None:
        super().__init__()
        self.root_rank = root_rank
        self.process_set = process_set
        self.broadcast_done = False

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self.broadcast_done:
            return  # a later fit() continues from where the ranks agree already
        variables = list(self.model.variables)
        optimizer = self.model.optimizer
        if optimizer is not None:
            if not optimizer.built:
                optimizer.build(self.model.trainable_variables)
            variables += optimizer.variables
        broadcast_variables(variables, self.root_rank, self.process_set)
        self.broadcast_done = True


class MetricAverageCallback(keras.callbacks.Callback):
    """Replaces each epoch's metrics (training and validation) by their average over the ranks,
    so that every rank's logs, history and checkpoint decisions are the same.

    Args:
        process_set: the ranks to average over.

    Raises:
        ValueError: at the end of an epoch, when the ranks report different metrics.

    Example:
        >>> model.fit(x, y, validation_data=..., callbacks=[MetricAverageCallback()])
    """

    def __init__(self, process_set: hvd.ProcessSet = hvd.global_process_set) -> None:
        super().__init__()
        self.process_set = process_set

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is None:
            return
        metrics = {name: float(value) for name, value in sorted(logs.items())}
        gathered = hvd.allgather_object(metrics, name="distq.metric_average", process_set=self.process_set)
        if any(set(g) != set(metrics) for g in gathered):
            raise ValueError(f"the ranks report different metrics: {[sorted(g) for g in gathered]}")
        logs.update({name: sum(g[name] for g in gathered) / len(gathered) for name in metrics})


class DistQCheckpoint(keras.callbacks.Callback):
    """Saves every rank's DistQ state at the end of each epoch, in one file that rank 0 writes.

    Put it beside Keras's ``ModelCheckpoint``: the residuals hold what each rank's gradients have
    not sent yet, so a training resumed from the model alone loses them. Every rank gathers the
    state (a collective); rank 0 writes it with pickle (load only files you trust).

    Args:
        compression: the DistQ the optimizer reduces with.
        filepath: where to write; ``{epoch}`` (counted from 1, as ModelCheckpoint does) and the
            epoch's metrics may appear in it, e.g. ``"ckpt/distq-{epoch:02d}.pkl"``.

    Example:
        >>> callbacks = [keras.callbacks.ModelCheckpoint("ckpt/model-{epoch:02d}.weights.h5",
        ...                                              save_weights_only=True),
        ...              DistQCheckpoint(compression, "ckpt/distq-{epoch:02d}.pkl")]
        >>> # to resume, on every rank:
        >>> model.load_weights("ckpt/model-02.weights.h5")
        >>> DistQCheckpoint.restore(compression, "ckpt/distq-02.pkl")
    """

    def __init__(self, compression: DistQ, filepath: str | os.PathLike) -> None:
        super().__init__()
        if not isinstance(compression, DistQ):
            raise TypeError(f"expected a horovod_distq.tensorflow.DistQ, got {type(compression).__name__}")
        self.compression = compression
        self.filepath = os.fspath(filepath)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        state = self.compression.state_dict(all_ranks=True)
        if self.compression.exchange.process_set.rank() != 0:
            return
        path = self.filepath.format(epoch=epoch + 1, **(logs or {}))
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        partial = path + ".partial"
        with open(partial, "wb") as file:
            pickle.dump(state, file, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(partial, path)  # a crash mid-write never leaves a truncated checkpoint

    @staticmethod
    def restore(compression: DistQ, path: str | os.PathLike) -> None:
        """Loads a file this callback wrote into ``compression`` (this rank's part). No collective.

        Raises:
            ValueError: the file holds no DistQ state, or one gathered from another number of ranks.
        """
        with open(path, "rb") as file:
            compression.load_state_dict(pickle.load(file))
