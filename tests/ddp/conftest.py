"""torch.distributed for the checks in this folder, each run by pytest on every rank under
``torchrun --nproc_per_node 2`` (``tests/launch.py``), with Gloo."""

from __future__ import annotations

import datetime
from collections.abc import Iterator

import pytest
import torch.distributed as dist

RANKS = 2
# A collective that a peer never joins fails after this long (Gloo's own timeout), so a check
# that breaks on one rank ends on both instead of hanging; well below the outer test's timeout.
COLLECTIVE_TIMEOUT = datetime.timedelta(seconds=60)


@pytest.fixture(scope="session", autouse=True)
def process_group() -> Iterator[None]:
    dist.init_process_group("gloo", timeout=COLLECTIVE_TIMEOUT)
    assert dist.get_world_size() == RANKS, f"run with torchrun --nproc_per_node {RANKS}"
    yield
    dist.destroy_process_group()


@pytest.fixture(autouse=True)
def lockstep(request: pytest.FixtureRequest, process_group: None) -> None:
    """Every rank starts each test together, and checks that it is the same test everywhere."""
    everywhere: list[str | None] = [None] * RANKS
    dist.all_gather_object(everywhere, request.node.nodeid)
    assert everywhere == [request.node.nodeid] * RANKS, f"the ranks are running different tests: {everywhere}"
