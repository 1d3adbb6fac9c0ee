"""What the torch and TensorFlow checks in this folder share; no framework import.

The checks are pytest files that every rank runs, in the same order, under ``horovodrun -np 2``
(``tests/launch.py``); ``conftest.py`` starts Horovod and keeps the ranks in step.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import pytest

SETTINGS_MESSAGE = "Give every rank the same DistQ settings"
# Settings that decide which tensors are sparse, or how values travel, with the value each rank
# takes: rank 0 would compress a 64x32 weight, rank 1 send it dense; rank 0 send float16, rank 1 signs.
DISAGREEING_SETTINGS = {"min_numel": (100, 10_000), "value_encoding": ("float16", "sign")}


# What Horovod says when ranks reduce different tensors under one name (a placeholder on one rank,
# the dense gradient on the other): shapes differ, or (TensorFlow's float64 placeholder) dtypes.
MISMATCH_MESSAGES = ("Mismatched ALLREDUCE tensor shapes", "Mismatched data types")


def disagreement_reported(error_type: type[Exception]) -> AbstractContextManager[Any]:
    """Expects ``error_type`` telling the user to give every rank the same settings, from DistQ's
    checks or from Horovod's check of the tensors reduced under one name."""
    return pytest.raises(error_type, match="|".join(map(re.escape, (SETTINGS_MESSAGE, *MISMATCH_MESSAGES))))


def assert_identical_on_every_rank(arrays: Iterable[Any], all_ranks: Callable[[Any], list[Any]]) -> None:
    """Every rank holds the same ``arrays`` (parameters), as ``all_ranks`` gathers them."""
    for index, array in enumerate(arrays):
        copies = [np.asarray(copy) for copy in all_ranks(array)]
        assert all(np.array_equal(copies[0], c) for c in copies[1:]), f"parameter {index} differs between ranks"


def same_run(parameters: Iterable[Any], expected: Iterable[Any], ranks: int) -> bool:
    """Whether two runs of ``ranks`` ranks ended at the same ``parameters``.

    Bit-identical on 2 ranks. On more, Horovod's allreduce of the dense gradients may add the ranks'
    values in another order from one run to the next (the order follows the fusion buffer's layout),
    so the runs agree to rounding only: far closer than a rank's lost residual moves them.
    """
    pairs = [(np.asarray(a), np.asarray(b)) for a, b in zip(parameters, expected, strict=True)]
    if ranks == 2:
        return all(np.array_equal(a, b) for a, b in pairs)
    return all(np.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in pairs)
