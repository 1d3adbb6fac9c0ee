"""What DistQ reports to TensorBoard: its stats of the last step as named scalars, for both frontends."""

from __future__ import annotations

from collections.abc import Mapping

from horovod_distq.stats import TensorStats

PREFIX = "distq"


def step_scalars(stats: Mapping[str, TensorStats], bytes_sent: int) -> dict[str, float]:
    """The scalars of one step: per compressed gradient its achieved ratio, threshold, selected
    count and bytes sent; for the step, the bytes sent and the bytes a dense step would send.

    Args:
        stats: a compressor's ``stats``.
        bytes_sent: its ``bytes_sent`` (which also counts the exchange's round header).

    Returns:
        Tag -> value, tags as ``distq/<gradient name>/<quantity>`` and ``distq/step/<quantity>``.

    Example:
        >>> step_scalars({"fc.weight": TensorStats(1000, 10, 0.5, 84, 4000)}, 100)["distq/fc.weight/achieved_ratio"]
        0.01
    """
    scalars: dict[str, float] = {}
    for name, record in sorted(stats.items()):
        if record.dense:
            continue
        tag = f"{PREFIX}/{name}"
        scalars[f"{tag}/achieved_ratio"] = record.achieved_ratio
        scalars[f"{tag}/threshold"] = float(record.threshold)
        scalars[f"{tag}/selected"] = float(record.selected)
        scalars[f"{tag}/bytes_sent"] = float(record.bytes_sent)
    dense_bytes = sum(record.dense_bytes for record in stats.values())
    scalars[f"{PREFIX}/step/bytes_sent"] = float(bytes_sent)
    scalars[f"{PREFIX}/step/dense_bytes"] = float(dense_bytes)
    scalars[f"{PREFIX}/step/bytes_fraction"] = bytes_sent / dense_bytes if dense_bytes else 0.0
    return scalars
