"""DistQ under Horovod's elastic mode (``hvd.elastic.run``): its state in the elastic commits.

Horovod's elastic ``State`` objects save the model and optimizer on ``commit()``, roll them back
with ``restore()`` when a step fails (a worker died), and broadcast them from rank 0 with
``sync()`` after workers joined or left. DistQ's state does not fit the broadcast: each rank's
residuals hold what that rank's own gradients did not send. So on ``sync()`` every rank keeps its
own (a joining worker starts with none), and only what the interrupted step left behind (its
pending exchange) is dropped. The settings are re-agreed in every step's exchange anyway, and the
exchange reads the world size when it runs.
"""

from __future__ import annotations

from typing import Any


class DistQStateHandler:
    """Commits, restores and re-synchronises one DistQ with an elastic ``State``.

    Args:
        compression: a frontend's ``DistQ``.

    Example:
        >>> handler = DistQStateHandler(compression)
        >>> handler.save()      # on state.commit(): a copy of this rank's residuals and loops
        >>> handler.restore()   # on state.restore(): back to that copy, the failed step dropped
    """

    def __init__(self, compression: Any) -> None:
        self.value = compression
        self.save()

    def save(self) -> None:
        """Keeps a copy of this process's state (``state_dict()`` returns copies). It is restored
        into the same process, whose rank a reset may have renumbered since: so it names no rank."""
        self._saved = {**self.value.state_dict(), "rank": None}

    def restore(self) -> None:
        """Returns to the last saved state and drops the failed step's pending exchange."""
        self.value.discard_step()
        self.value.load_state_dict(self._saved)

    def sync(self) -> None:
        """After a reset: drops the interrupted step's pending exchange and keeps this rank's state
        (no broadcast: a rank's residuals are its own)."""
        self.value.discard_step()

    def set_value(self, compression: Any) -> None:
        """Tracks another DistQ (``state.distq = ...`` with Horovod's handler-based states)."""
        self.value = compression
        self.save()


def register(state: Any, compression: Any) -> Any:
    """Makes an elastic ``State``'s ``commit()``, ``restore()`` and ``sync()`` cover ``compression``.

    Args:
        state: a Horovod elastic state (``hvd.elastic.TorchState``, ``hvd.elastic.TensorFlowState``,
            ``hvd.elastic.TensorFlowKerasState``, ``hvd.elastic.ObjectState``, ...).
        compression: the ``DistQ`` the training function uses.

    Returns:
        ``state``, for chaining.

    Example:
        >>> state = register(hvd.elastic.TorchState(model=model, optimizer=optimizer, step=0), compression)
        >>> @hvd.elastic.run
        ... def train(state): ...
    """
    handler = DistQStateHandler(compression)
    for method in ("save", "restore", "sync"):
        setattr(state, method, _after(getattr(handler, method), getattr(state, method)))
    return state


def _after(first: Any, then: Any) -> Any:
    def both() -> None:
        first()
        then()

    return both
