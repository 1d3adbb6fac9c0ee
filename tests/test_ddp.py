"""DistQ's DDP communication hook under ``torchrun --nproc_per_node 2`` with Gloo: every rank runs tests/ddp/."""

from __future__ import annotations

from tests.launch import pytest_under_torchrun


def test_ddp_hook_matches_dense_reference() -> None:
    # 4 encodings, local Adam against NumPy, no_sync, error feedback, 2 graph options, 2 disagreeing
    # settings, a rank that cannot compress, a rank-0 checkpoint resumed exactly, residuals sent by a
    # dense step, the pickled state.
    pytest_under_torchrun("tests/ddp/ddp_hook_check.py", passed=19, timeout=300)
