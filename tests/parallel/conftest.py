"""Horovod for the checks in this folder, each run by pytest on every rank (see common.py).

Each check imports ``horovod.torch`` or ``horovod.tensorflow`` as ``hvd``; the fixtures use that one.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Iterator
from types import ModuleType

import pytest

# Seconds: three times the slowest test here (the TensorFlow dtype disagreement under MPI, about
# 40 s on 2 cores), counting the wait for the other rank; shorter than the outer tests' timeouts
# but the 120 s one of the disagreement checks, which stays the backstop there.
TEST_LIMIT_SECONDS = 120


@pytest.fixture(scope="module", autouse=True)
def horovod(request: pytest.FixtureRequest) -> ModuleType:
    """The check's ``hvd``, initialised."""
    hvd = request.module.hvd
    hvd.init()
    assert hvd.size() >= 2, "run with horovodrun -np 2 (or more; tests/launch.py)"
    return hvd


@pytest.fixture(autouse=True)
def lockstep(request: pytest.FixtureRequest, horovod: ModuleType) -> Iterator[None]:
    """Every rank starts each test together, checks that it is the same test everywhere, and
    gives up on Horovod if the test overruns.

    When a test fails on one rank between two collectives, the other rank waits in a collective
    that its peer never joins, and the failed rank waits here. Horovod's stall check does not end
    that under Gloo, so a watchdog does: past TEST_LIMIT_SECONDS it shuts Horovod down, which
    fails the waiting collectives on every rank; each later test then fails here at once, and
    each rank goes on to report its failures.
    """
    here = request.node.nodeid
    watchdog = threading.Timer(TEST_LIMIT_SECONDS, _shut_down, (horovod, here))
    watchdog.daemon = True
    watchdog.start()
    try:
        everywhere = _test_on_every_rank(horovod, here)
        if isinstance(everywhere, Exception):  # Horovod was shut down: see the first failure
            pytest.fail(f"the ranks could not start this test together: {everywhere}", pytrace=False)
        assert everywhere == [here] * horovod.size(), f"the ranks are running different tests: {everywhere}"
        yield
    finally:
        watchdog.cancel()


def _test_on_every_rank(hvd: ModuleType, test: str) -> list[str] | Exception:
    try:
        return hvd.allgather_object(test, name="lockstep." + re.sub(r"\W", "_", test))
    except Exception as error:
        return error


def _shut_down(hvd: ModuleType, test: str) -> None:
    print(f"{test} is still running after {TEST_LIMIT_SECONDS} s; shutting Horovod down so that no rank "
          "waits in a collective for ever", file=sys.stderr, flush=True)
    hvd.shutdown()
