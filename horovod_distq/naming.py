"""Which variable or parameter each gradient name stands for, so that one DistQ serves one model."""

from __future__ import annotations

import weakref
from typing import Any


class NameOwners:
    """Remembers the object (parameter, variable) each gradient name was found for.

    A DistQ keeps error-feedback and closed-loop state per gradient name. Two models whose
    parameters share names (two ``nn.Linear``s, two Keras models built alike) would share that
    state silently if one DistQ served both, so a second owner of a known name is refused.

    Args:
        what: the owners' kind, for the message ("parameters", "variables").

    Example:
        >>> owners = NameOwners("parameters")
        >>> owners.bind("fc.weight", model_a.fc.weight)
        >>> owners.bind("fc.weight", model_b.fc.weight)   # ValueError: one DistQ per optimizer
    """

    def __init__(self, what: str) -> None:
        self._what = what
        self._owners: dict[str, weakref.ref] = {}

    def bind(self, name: str, owner: Any) -> None:
        """Records that ``name`` is ``owner``'s gradient.

        Raises:
            ValueError: another live object was bound to ``name`` before.
        """
        known = self._owners.get(name)
        previous = known() if known is not None else None
        if previous is not None and previous is not owner:
            raise ValueError(
                f"DistQ: two {self._what} named {name!r} reached this DistQ (two models share it?); a DistQ keeps "
                "state per gradient name and serves one model and optimizer: make one DistQ per optimizer"
            )
        self._owners[name] = weakref.ref(owner)
