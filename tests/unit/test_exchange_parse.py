"""The exchange's parsers, torch and TensorFlow, without Horovod's collective: the ranks' headers and
payloads are built by each frontend's own packing code and concatenated as Horovod's grouped
allgather would. Round trips, the malformed buffers of issue 11, a fuzz against an independent
NumPy parse of the same bytes (``reference_parse``), which states the format of ``horovod_distq.wire``
in its own code: every outcome must be that parse's result or the DistQ error it predicts, and the
checks' one statement (``wire.RoundLayout.checks``): whatever it says, every parser says."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import horovod.tensorflow as hvd_tf
import numpy as np
import pytest
import tensorflow as tf
import torch

from horovod_distq import wire
from horovod_distq.compressor import QueuedTensor
from horovod_distq.tensorflow import encoding as tf_encoding
from horovod_distq.tensorflow import exchange as tf_exchange
from horovod_distq.torch import encoding as torch_encoding
from horovod_distq.torch import exchange as torch_exchange
from horovod_distq.wire import TensorLayout

# Every encoding, every gradient dtype, int32 and int64 indices (a numel past 2**31 needs no memory
# here: only the pairs exist), and tensors small enough for a count to be its numel.
LAYOUTS = {
    layout.name: layout
    for layout in (
        TensorLayout("auto32", 1000, "auto", "float32"),
        TensorLayout("half", 300, "float16", "float32"),
        TensorLayout("brain", 500, "bfloat16", "float64"),
        TensorLayout("sign", 64, "sign", "float32"),
        TensorLayout("full", 2**31 + 5, "float32", "float16"),
        TensorLayout("auto16", 40, "auto", "float16"),
        TensorLayout("autobf", 200, "auto", "bfloat16"),
        TensorLayout("auto64", 8, "auto", "float64"),
        TensorLayout("signbig", 2**31 + 7, "sign", "float64"),
    )
}
ROUNDS = {
    "one": ("auto32",),
    "encodings": ("auto32", "half", "brain", "sign", "full"),
    "dtypes": ("auto16", "autobf", "auto64", "signbig", "half"),
}
RANKS = [1, 2, 3]
FRAMEWORKS = ["torch", "tensorflow"]

# What the NumPy parse reads, stated apart from the package: bytes per element and the bits of values.
ELEMENT_BYTES = {"int32": 4, "int64": 8, "float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}
BITS = {2: np.uint16, 4: np.uint32, 8: np.uint64}
NUMPY_INTEGERS = {"int32": np.int32, "int64": np.int64}
SIGN_SCALES_BYTES = 8


class Gathered(NamedTuple):
    """What every rank holds after the grouped allgather: all headers, all payloads (bytes, in rank order)."""

    header: np.ndarray
    payload: np.ndarray


class Sent(NamedTuple):
    """Per tensor, every rank's pairs as the receivers must decode them (indices and float64 values)."""

    indices: list[np.ndarray]
    values: list[np.ndarray]


# --- building rounds with the frontends' own code ---------------------------------------------------


def random_selection(layout: TensorLayout, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Distinct indices into the tensor (sometimes none, sometimes all of a small one) and float64 values."""
    limit = min(layout.numel, 40)
    count = int(rng.choice([0, limit, int(rng.integers(1, limit + 1))]))
    if layout.numel <= 10 * limit:
        indices = np.sort(rng.choice(layout.numel, count, replace=False))
    else:
        indices = np.unique(rng.integers(0, layout.numel, count))
    values = rng.standard_normal(indices.size) * 10.0 ** rng.integers(-3, 6)
    return indices.astype(NUMPY_INTEGERS[layout.index_dtype]), values


def encoded(framework: str, layout: TensorLayout, indices: np.ndarray, values: np.ndarray):
    """The frontend's encoded pairs of one selection, as its compressor makes them."""
    if framework == "torch":
        dtype = torch_encoding.torch_dtype(layout.gradient_dtype)
        values_tensor = torch.from_numpy(values).to(dtype)
        return torch_encoding.encode(layout.encoding, torch.from_numpy(indices), values_tensor, dtype)
    dtype = tf.as_dtype(layout.gradient_dtype)
    return tf_encoding.encode(layout.encoding, tf.constant(indices), tf.cast(tf.constant(values), dtype), dtype)


def as_numpy(tensor) -> np.ndarray:
    if isinstance(tensor, torch.Tensor):
        return (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()
    return tensor.numpy()


def build_round(
    framework: str, round_layout: wire.RoundLayout, ranks: int, rng: np.random.Generator
) -> tuple[Gathered, Sent]:
    """Each rank's header and payload from the frontend's ``pack_round``, concatenated in rank order."""
    pack = torch_exchange.pack_round if framework == "torch" else tf_exchange.pack_round
    headers, payloads = [], []
    sent = Sent([[] for _ in round_layout.tensors], [[] for _ in round_layout.tensors])
    for _ in range(ranks):
        pairs = [encoded(framework, layout, *random_selection(layout, rng)) for layout in round_layout.tensors]
        header, payload = pack(round_layout, pairs)
        headers.append(as_numpy(header))
        payloads.append(as_numpy(payload))
        for tensor, p in enumerate(pairs):
            indices = as_numpy(p.indices).astype(np.int64)
            sent.indices[tensor].append(np.where(indices < 0, ~indices, indices))
            sent.values[tensor].append(as_numpy(p.decoded).astype(np.float64))
    gathered = Gathered(np.concatenate(headers), np.concatenate(payloads))
    return gathered, Sent([np.concatenate(i) for i in sent.indices], [np.concatenate(v) for v in sent.values])


def round_of(name: str) -> wire.RoundLayout:
    return wire.RoundLayout(tuple(LAYOUTS[n] for n in ROUNDS[name]))


# --- the parsers under test, and how they fail ------------------------------------------------------


def parse_torch(round_layout: wire.RoundLayout, ranks: int, gathered: Gathered):
    return torch_exchange.parse_round(
        round_layout, ranks, torch.from_numpy(gathered.header.copy()), torch.from_numpy(gathered.payload.copy())
    )


def parse_tensorflow(round_layout: wire.RoundLayout, ranks: int, gathered: Gathered):
    return tf_exchange.parse_round(round_layout, ranks, tf.constant(gathered.header), tf.constant(gathered.payload))


_GRAPHS: dict[tuple[wire.RoundLayout, int], Callable] = {}


def parse_tensorflow_graph(round_layout: wire.RoundLayout, ranks: int, gathered: Gathered):
    """The TensorFlow parse traced once per round and rank count, as inside the tape's ``tf.function``."""
    key = (round_layout, ranks)
    if key not in _GRAPHS:
        bytes_spec = tf.TensorSpec([None], tf.uint8)
        _GRAPHS[key] = tf.function(
            lambda header, payload: tf_exchange.parse_round(round_layout, ranks, header, payload),
            input_signature=[bytes_spec, bytes_spec],
        )
    return _GRAPHS[key](tf.constant(gathered.header), tf.constant(gathered.payload))


_ELASTIC_GRAPHS: dict[wire.RoundLayout, Callable] = {}


def parse_tensorflow_elastic(round_layout: wire.RoundLayout, ranks: int, gathered: Gathered):
    """The TensorFlow parse traced once per round, the rank count an input read when it runs: as a
    traced step under Horovod's elastic mode, whose one trace serves every world size."""
    if round_layout not in _ELASTIC_GRAPHS:
        bytes_spec = tf.TensorSpec([None], tf.uint8)
        _ELASTIC_GRAPHS[round_layout] = tf.function(
            lambda header, payload, ranks: tf_exchange.parse_round(round_layout, ranks, header, payload),
            input_signature=[bytes_spec, bytes_spec, tf.TensorSpec([], tf.int64)],
        )
    return _ELASTIC_GRAPHS[round_layout](tf.constant(gathered.header), tf.constant(gathered.payload),
                                         tf.constant(ranks, tf.int64))


PARSERS = {"torch": parse_torch, "tensorflow": parse_tensorflow, "tensorflow-graph": parse_tensorflow_graph,
           "tensorflow-elastic": parse_tensorflow_elastic}
DISTQ_ERRORS = {
    "torch": wire.DistQExchangeError,
    "tensorflow": tf.errors.InvalidArgumentError,
    "tensorflow-graph": tf.errors.InvalidArgumentError,
    "tensorflow-elastic": tf.errors.InvalidArgumentError,
}


def distq_failure(parser: str, round_layout: wire.RoundLayout, ranks: int, gathered: Gathered) -> str | None:
    """The DistQ message the parse fails with, or None when it parses; any other exception propagates."""
    try:
        PARSERS[parser](round_layout, ranks, gathered)
    except DISTQ_ERRORS[parser] as error:
        message = str(error) if parser == "torch" else error.message
        assert "DistQ: " in message, message
        return message
    return None


def value_bits(values) -> np.ndarray:
    """The raw bits of parsed values, so NaN and -0.0 compare exactly."""
    if isinstance(values, torch.Tensor):
        integer = {2: torch.int16, 4: torch.int32, 8: torch.int64}[values.element_size()]
        array = values.view(integer).numpy()
    else:
        array = tf.bitcast(values, {2: tf.uint16, 4: tf.uint32, 8: tf.uint64}[values.dtype.size]).numpy()
    return array.view(BITS[array.itemsize])


# --- the independent NumPy parse --------------------------------------------------------------------


class Rejected(Exception):
    """The NumPy parse's verdict that the bytes break the format, with the message DistQ must give."""


def value_dtype(layout: TensorLayout) -> str | None:
    """The dtype values travel in, None for the sign encoding (its values are float32 scales)."""
    if layout.encoding == "sign":
        return None
    return layout.gradient_dtype if layout.encoding == "auto" else layout.encoding


def reference_parse(
    round_layout: wire.RoundLayout, ranks: int, gathered: Gathered
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Reads the gathered bytes as the format states, walking them rank by rank.

    Returns:
        Per tensor: int64 indices and the raw bits of the values, in rank order.

    Raises:
        Rejected: with the message of the first rule (in the format's order) the bytes break.
    """
    layouts = round_layout.tensors
    header, payload = gathered.header.tobytes(), gathered.payload.tobytes()
    fields = 3 + len(layouts)
    stride = 8 * fields
    position = 0
    parsed: list[list[tuple[np.ndarray, np.ndarray]]] = []
    for rank in range(ranks):
        base = rank * stride
        if len(header) < base + 24:
            raise Rejected(wire.header_cut_message(rank, stride))
        tensors, checksum, declared = (int(v) for v in np.frombuffer(header, "<i8", 3, base))
        if tensors != len(layouts) or checksum != wire.layout_checksum(layouts):
            raise Rejected(wire.mismatch_message(rank, [layout.name for layout in layouts]))
        if len(header) < base + stride:
            raise Rejected(wire.header_cut_message(rank, stride))
        counts = [int(v) for v in np.frombuffer(header, "<i8", len(layouts), base + 24)]
        sizes = []
        for layout, count in zip(layouts, counts):
            if count < 0 or count > layout.numel:
                raise Rejected(wire.count_message(rank, layout))
            values = value_dtype(layout)
            pair = ELEMENT_BYTES[layout.index_dtype] + (ELEMENT_BYTES[values] if values else 0)
            sizes.append(count * pair + (SIGN_SCALES_BYTES if layout.encoding == "sign" else 0))
        if declared != sum(sizes):
            raise Rejected(wire.declared_payload_message(rank))
        if position + declared > len(payload):
            raise Rejected(wire.payload_cut_message(rank))
        pieces = []
        for layout, count in zip(layouts, counts):
            index_bytes = ELEMENT_BYTES[layout.index_dtype]
            indices = np.frombuffer(payload, NUMPY_INTEGERS[layout.index_dtype], count, position).astype(np.int64)
            position += count * index_bytes
            if layout.encoding == "sign":
                positive_scale, negative_scale = np.frombuffer(payload, np.float32, 2, position)
                position += SIGN_SCALES_BYTES
                values = np.where(indices < 0, -negative_scale, positive_scale).astype(np.float32).view(np.uint32)
                indices = np.where(indices < 0, -1 - indices, indices)
            else:
                width = ELEMENT_BYTES[value_dtype(layout)]
                values = np.frombuffer(payload, BITS[width], count, position)
                position += count * width
            pieces.append((indices, values))
        parsed.append(pieces)
    if len(header) != ranks * stride:
        raise Rejected(wire.header_surplus_message(ranks - 1))
    if len(payload) != position:
        raise Rejected(wire.payload_surplus_message(ranks - 1))
    for rank, pieces in enumerate(parsed):
        for layout, (indices, _) in zip(layouts, pieces):
            if indices.size and (indices.min() < 0 or indices.max() >= layout.numel):
                raise Rejected(wire.index_message(rank, layout))
    return [
        (np.concatenate([p[t][0] for p in parsed]), np.concatenate([p[t][1] for p in parsed]))
        for t in range(len(layouts))
    ]


def check_against_reference(parser: str, round_layout: wire.RoundLayout, ranks: int, gathered: Gathered) -> str:
    """Asserts the parser gives the NumPy parse's result or its DistQ error; returns which it was."""
    try:
        expected = reference_parse(round_layout, ranks, gathered)
    except Rejected as rejected:
        message = distq_failure(parser, round_layout, ranks, gathered)
        assert message is not None, f"{parser} accepted bytes that break the format: {rejected}"
        assert str(rejected) in message, f"{parser}: expected {rejected}, got {message}"
        return "rejected"
    result = PARSERS[parser](round_layout, ranks, gathered)
    assert len(result) == len(expected)
    for layout, (indices, values), (expected_indices, expected_bits) in zip(round_layout.tensors, result, expected):
        assert indices.dtype in (torch.int64, tf.int64), layout
        np.testing.assert_array_equal(np.asarray(indices), expected_indices, err_msg=f"{parser} {layout.name}")
        np.testing.assert_array_equal(value_bits(values), expected_bits, err_msg=f"{parser} {layout.name}")
    return "parsed"


# --- (a) round trips ----------------------------------------------------------------------------------


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize("packer", FRAMEWORKS)
@pytest.mark.parametrize("ranks", RANKS)
@pytest.mark.parametrize("round_name", ROUNDS)
def test_round_trip(parser: str, packer: str, ranks: int, round_name: str) -> None:
    # Either frontend's bytes parse in either frontend: one wire format.
    round_layout = round_of(round_name)
    gathered, sent = build_round(packer, round_layout, ranks, np.random.default_rng(ranks))
    result = PARSERS[parser](round_layout, ranks, gathered)
    for layout, (indices, values), expected_indices, expected_values in zip(
        round_layout.tensors, result, sent.indices, sent.values
    ):
        np.testing.assert_array_equal(np.asarray(indices), expected_indices, err_msg=layout.name)
        np.testing.assert_array_equal(as_numpy(values).astype(np.float64), expected_values, err_msg=layout.name)
    assert check_against_reference(parser, round_layout, ranks, gathered) == "parsed"


def test_header_and_payload_sizes() -> None:
    round_layout = round_of("encodings")
    gathered, sent = build_round("torch", round_layout, 1, np.random.default_rng(0))
    counts = [i.size for i in sent.indices]
    assert gathered.header.size == round_layout.header_bytes == 8 * (3 + 5)
    assert gathered.payload.size == round_layout.payload_bytes(counts)
    assert gathered.header.view(np.int64).tolist() == [5, round_layout.checksum, gathered.payload.size, *counts]
    assert torch_exchange.AllgatherExchange.round_header_bytes(5) == round_layout.header_bytes
    per_gradient = tf_exchange.AllgatherExchange()  # Horovod's tape: each gradient has its own header
    assert per_gradient.tensor_header_bytes == wire.header_bytes(1) == 32 and per_gradient.round_header_bytes(5) == 0
    with per_gradient.one_round():  # a step in one round: one header for all
        pass
    assert per_gradient.tensor_header_bytes == 0 and per_gradient.round_header_bytes(5) == round_layout.header_bytes


# --- (b) the malformed buffers of issue 11 ---------------------------------------------------------


def two_ranks() -> tuple[wire.RoundLayout, Gathered]:
    """A valid round of the "encodings" tensors from 2 ranks, each sending pairs of every tensor."""
    round_layout = round_of("encodings")
    rng = np.random.default_rng(11)
    while True:
        gathered, _ = build_round("torch", round_layout, 2, rng)
        counts = gathered.header.view(np.int64).reshape(2, -1)[:, 3:]
        if counts.min() >= 2:
            return round_layout, gathered


def edit_header(gathered: Gathered, rank: int, field: int, value: int) -> Gathered:
    header = gathered.header.view(np.int64).copy()
    header[rank * (header.size // 2) + field] = value
    return Gathered(header.view(np.uint8), gathered.payload)


def rank_header(gathered: Gathered, rank: int) -> np.ndarray:
    size = gathered.header.size // 2
    return gathered.header[rank * size : (rank + 1) * size]


def attacks() -> dict[str, tuple[Callable[[wire.RoundLayout, Gathered], Gathered], str]]:
    """Each malformed round (made from a valid 2-rank one) and the DistQ message it must raise."""
    first = LAYOUTS["auto32"]
    count = 3 + 0  # the first tensor's count field

    def counts(gathered: Gathered, rank: int) -> list[int]:
        return rank_header(gathered, rank).view(np.int64)[3:].tolist()

    def one_short_and_consistent(round_layout: wire.RoundLayout, gathered: Gathered) -> Gathered:
        # Rank 0 declares one pair fewer and a payload to match: rank 1's segments then start at a
        # byte of rank 0's last pair, and the payload ends one pair after the last declared segment.
        short = [c - (i == 0) for i, c in enumerate(counts(gathered, 0))]
        edited = edit_header(gathered, 0, count, short[0])
        return edit_header(edited, 0, wire.PAYLOAD_BYTES_FIELD, round_layout.payload_bytes(short))

    def forged_header(round_layout: wire.RoundLayout, gathered: Gathered) -> Gathered:
        # Rank 0 sends a second header, a valid one of a rank with no pairs, to stand for rank 1.
        forged = np.array(round_layout.header([0] * 5), np.int64).view(np.uint8)
        header = np.concatenate([rank_header(gathered, 0), forged, rank_header(gathered, 1)])
        return Gathered(header, gathered.payload)

    def forged_in_payload(round_layout: wire.RoundLayout, gathered: Gathered) -> Gathered:
        # The old attack: a "next rank" header inside rank 0's payload; the header cannot move now.
        forged = np.array(round_layout.header([0] * 5), np.int64).view(np.uint8)
        rank_0_bytes = round_layout.payload_bytes(counts(gathered, 0))
        payload = np.concatenate([gathered.payload[:rank_0_bytes], forged, gathered.payload[rank_0_bytes:]])
        return Gathered(gathered.header, payload)

    def index_out_of_range(round_layout: wire.RoundLayout, gathered: Gathered) -> Gathered:
        payload = gathered.payload.copy()
        rank_1_start = round_layout.payload_bytes(counts(gathered, 0))
        payload[rank_1_start : rank_1_start + 4] = np.array([first.numel], np.int32).view(np.uint8)
        return Gathered(gathered.header, payload)

    return {
        "negative count": (
            lambda r, g: edit_header(g, 1, count, -1), wire.count_message(1, first)),
        "count one short": (
            lambda r, g: edit_header(g, 1, count, counts(g, 1)[0] - 1), wire.declared_payload_message(1)),
        "count one short, payload field to match": (one_short_and_consistent, wire.payload_surplus_message(1)),
        "count past numel": (lambda r, g: edit_header(g, 0, count, first.numel + 1), wire.count_message(0, first)),
        "trailing payload bytes": (
            lambda r, g: Gathered(g.header, np.append(g.payload, np.uint8(0))), wire.payload_surplus_message(1)),
        "trailing header bytes": (
            lambda r, g: Gathered(np.append(g.header, np.uint8(0)), g.payload), wire.header_surplus_message(1)),
        "forged next-rank header": (forged_header, wire.header_surplus_message(1)),
        "forged header inside a payload": (forged_in_payload, wire.payload_surplus_message(1)),
        "truncated payload": (lambda r, g: Gathered(g.header, g.payload[:-1]), wire.payload_cut_message(1)),
        "payload cut inside rank 0": (lambda r, g: Gathered(g.header, g.payload[:10]), wire.payload_cut_message(0)),
        "truncated header": (lambda r, g: Gathered(g.header[:-1], g.payload), wire.header_cut_message(1, 64)),
        "header cut in its fixed fields": (
            lambda r, g: Gathered(g.header[:70], g.payload), wire.header_cut_message(1, 64)),
        "no header": (lambda r, g: Gathered(g.header[:0], g.payload), wire.header_cut_message(0, 64)),
        "other checksum": (
            lambda r, g: edit_header(g, 1, wire.CHECKSUM_FIELD, 7),
            wire.mismatch_message(1, list(ROUNDS["encodings"]))),
        "index out of range": (index_out_of_range, wire.index_message(1, first)),
    }


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize("attack", attacks())
def test_malformed_round_fails_naming_the_rank(parser: str, attack: str) -> None:
    round_layout, valid = two_ranks()
    mutate, expected = attacks()[attack]
    malformed = mutate(round_layout, valid)
    message = distq_failure(parser, round_layout, 2, malformed)
    assert message is not None and expected in message, message
    assert re.search(r"\brank [01]\b", message)
    assert check_against_reference(parser, round_layout, 2, malformed) == "rejected"


def test_tensorflow_parse_inside_tf_cond() -> None:
    # Horovod's tape decompresses inside a tf.cond of a tf.function: the checks hold there too.
    round_layout, valid = two_ranks()

    @tf.function
    def parse_if(header: tf.Tensor, payload: tf.Tensor, compressed: tf.Tensor) -> tf.Tensor:
        def parse() -> tf.Tensor:
            return tf.reduce_sum(tf_exchange.parse_round(round_layout, 2, header, payload)[0][0])

        return tf.cond(compressed, parse, lambda: tf.constant(-1, tf.int64))

    expected = int(reference_parse(round_layout, 2, valid)[0][0].sum())
    assert int(parse_if(valid.header, valid.payload, tf.constant(True))) == expected
    malformed = edit_header(valid, 1, 3, -1)
    assert int(parse_if(malformed.header, malformed.payload, tf.constant(False))) == -1
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(wire.count_message(1, LAYOUTS["auto32"]))):
        parse_if(malformed.header, malformed.payload, tf.constant(True))


def test_tensorflow_exchange_through_horovod() -> None:
    # The grouped allgather itself (one process): eagerly, in a tf.function and in a tf.cond.
    hvd_tf.init()
    rng = np.random.default_rng(5)
    queued = []
    for layout in (LAYOUTS["half"], LAYOUTS["sign"]):
        indices, values = random_selection(layout, rng)
        queued.append(QueuedTensor(layout, encoded("tensorflow", layout, indices, values)))

    def run() -> list[tf.Tensor]:
        return [t for pair in tf_exchange.exchange(queued, hvd_tf.global_process_set) for t in pair]

    @tf.function
    def in_cond() -> list[tf.Tensor]:
        return tf.cond(tf.constant(True), run, run)

    for result in (run(), tf.function(run)(), in_cond()):
        for q, indices, values in zip(queued, result[::2], result[1::2]):
            sent = q.pairs.indices.numpy()
            np.testing.assert_array_equal(indices.numpy(), np.where(sent < 0, ~sent, sent))
            np.testing.assert_array_equal(tf.cast(values, tf.float32).numpy(), q.pairs.decoded.numpy())


# --- (c) the fuzz -------------------------------------------------------------------------------------


def mutated(round_layout: wire.RoundLayout, ranks: int, gathered: Gathered, rng: np.random.Generator) -> Gathered:
    """One or two random edits of a valid round, biased towards the fields the checks guard."""
    header, payload = gathered.header.copy(), gathered.payload.copy()
    stride = round_layout.header_bytes
    for _ in range(int(rng.integers(1, 3))):
        kind = int(rng.integers(12))
        if kind == 0 and header.size:  # flip bits of header bytes
            spots = rng.integers(0, header.size, int(rng.integers(1, 4)))
            header[spots] ^= rng.integers(1, 256, spots.size, dtype=np.uint8)
        elif kind == 1 and payload.size:  # flip bits of payload bytes
            spots = rng.integers(0, payload.size, int(rng.integers(1, 4)))
            payload[spots] ^= rng.integers(1, 256, spots.size, dtype=np.uint8)
        elif kind == 2:  # truncate the header
            header = header[: int(rng.integers(0, header.size + 1))]
        elif kind == 3:  # truncate the payload
            payload = payload[: int(rng.integers(0, payload.size + 1))]
        elif kind == 4:  # extend the header
            header = np.concatenate([header, rng.integers(0, 256, int(rng.integers(1, 2 * stride)), dtype=np.uint8)])
        elif kind == 5:  # extend the payload
            payload = np.concatenate([payload, rng.integers(0, 256, int(rng.integers(1, 40)), dtype=np.uint8)])
        elif kind in (6, 7) and header.size >= ranks * stride:  # edit a count, maybe its payload field to match
            fields = header[: ranks * stride].view(np.int64).reshape(ranks, -1).copy()
            rank, tensor = int(rng.integers(ranks)), int(rng.integers(len(round_layout.tensors)))
            old, numel = int(fields[rank, 3 + tensor]), round_layout.tensors[tensor].numel
            choices = [-1, old - 1, old + 1, 0, numel, numel + 1, -(2**63), 2**63 - 1]
            choices.append(int(rng.integers(-(2**62), 2**62)))
            fields[rank, 3 + tensor] = choices[int(rng.integers(len(choices)))]
            if kind == 7 and all(0 <= c <= layout.numel for c, layout in zip(fields[rank, 3:], round_layout.tensors)):
                fields[rank, 2] = round_layout.payload_bytes([int(c) for c in fields[rank, 3:]])
            header = np.concatenate([fields.reshape(-1).view(np.uint8), header[ranks * stride :]])
        elif kind == 8:  # a random header for a rank, sometimes with the right fixed fields
            rank = int(rng.integers(ranks))
            fields = rng.integers(-(2**63), 2**63 - 1, round_layout.header_items, dtype=np.int64)
            if rng.random() < 0.5:
                fields[:2] = [len(round_layout.tensors), round_layout.checksum]
                fields[3:] = rng.integers(0, 3, len(round_layout.tensors))
                fields[2] = round_layout.payload_bytes(fields[3:].tolist()) if rng.random() < 0.5 else fields[2]
            header = np.concatenate([header[: rank * stride], fields.view(np.uint8), header[(rank + 1) * stride :]])
        elif kind == 9:  # a forged header inserted at a rank boundary
            forged = np.array(round_layout.header([0] * len(round_layout.tensors)), np.int64).view(np.uint8)
            at = int(rng.integers(ranks + 1)) * stride
            header = np.concatenate([header[:at], forged, header[at:]])
        elif kind == 10 and ranks > 1 and header.size >= ranks * stride:  # two ranks swap headers
            rows = header[: ranks * stride].reshape(ranks, stride)[rng.permutation(ranks)]
            header = np.concatenate([rows.reshape(-1), header[ranks * stride :]])
        elif kind == 11 and payload.size >= 4:  # a 4-byte word (an int32 index, a float) set to an edge value
            at = int(rng.integers(0, payload.size - 3))
            word = rng.choice(np.array([-1, 0, 40, 64, 300, 1000, 2**31 - 1, -(2**31)], np.int32))
            payload[at : at + 4] = np.array([word], np.int32).view(np.uint8)
    return Gathered(header, payload)


# Cases per parser: 12,600 in all, about 20 s on 2 cores (eager TensorFlow is the slowest per case).
FUZZ_CASES = {"torch": 8000, "tensorflow-graph": 4000, "tensorflow": 600}


@pytest.mark.parametrize("parser", FUZZ_CASES)
def test_fuzz_against_the_numpy_parse(parser: str) -> None:
    rng = np.random.default_rng({"torch": 1, "tensorflow-graph": 2, "tensorflow": 3}[parser])
    bases = [
        (round_of(name), ranks, *build_round(packer, round_of(name), ranks, rng))
        for name in ROUNDS
        for ranks in RANKS
        for packer in FRAMEWORKS
    ]
    outcomes = {"parsed": 0, "rejected": 0}
    for case in range(FUZZ_CASES[parser]):
        round_layout, ranks, valid, _ = bases[case % len(bases)]
        malformed = valid if case % 10 == 0 else mutated(round_layout, ranks, valid, rng)
        outcomes[check_against_reference(parser, round_layout, ranks, malformed)] += 1
    # Both outcomes must be common, or the fuzz tests one side only.
    assert min(outcomes.values()) > FUZZ_CASES[parser] // 10, outcomes


# --- (d) one statement of the checks, evaluated by every parser ---------------------------------------


class NumPyArrays:
    """``wire.ArrayOps`` in NumPy: the checks' statement evaluated by neither frontend."""

    @staticmethod
    def int64(values: Sequence[int]) -> np.ndarray:
        return np.array(values, np.int64)

    @staticmethod
    def arange(length: int) -> np.ndarray:
        return np.arange(length, dtype=np.int64)

    @staticmethod
    def sum(array: np.ndarray, axis: int) -> np.ndarray:
        return np.sum(array, axis=axis)

    @staticmethod
    def cumsum(array: np.ndarray, axis: int) -> np.ndarray:
        return np.cumsum(array, axis=axis)


def numpy_checks(
    round_layout: wire.RoundLayout, ranks: int, gathered: Gathered
) -> tuple[np.ndarray, wire.MessageTable]:
    """The statement's table for the gathered bytes, in NumPy: its conditions in order, and its messages."""
    fitted = np.zeros(ranks * round_layout.header_bytes, np.uint8)
    arrived = gathered.header[: fitted.size]
    fitted[: arrived.size] = arrived
    headers = fitted.view(np.int64).reshape(ranks, round_layout.header_items)
    table = round_layout.checks(headers, ranks, gathered.header.size, gathered.payload.size, NumPyArrays)
    per_rank = np.concatenate([check.passed for check in table.per_rank], axis=1).reshape(-1)
    passed = np.concatenate([per_rank, np.array([check.passed for check in table.totals], bool)])
    return passed, table.messages


def failing_at(position: Callable[[], Any]) -> Callable[..., wire.CheckTable]:
    """``RoundLayout.checks`` as stated, except that the check at ``position()`` of its table fails.

    ``position`` is called where the checks are built: a traced parser reads a variable there when
    it runs, so that one trace serves every position.
    """
    stated = wire.RoundLayout.checks

    def checks(self: wire.RoundLayout, headers: Any, ranks: Any, header_length: Any, payload_length: Any,
               ops: wire.ArrayOps) -> wire.CheckTable:
        table = stated(self, headers, ranks, header_length, payload_length, ops)
        failing = position()
        columns = len(table.messages.per_rank)
        per_rank, first_column = [], 0
        for check in table.per_rank:
            cell = ops.arange(ranks)[:, None] * columns + (ops.arange(len(check.messages)) + first_column)[None, :]
            per_rank.append(check._replace(passed=check.passed & (cell != failing)))
            first_column += len(check.messages)
        totals = [
            check._replace(passed=check.passed & (ranks * columns + i != failing))
            for i, check in enumerate(table.totals)
        ]
        return wire.CheckTable(per_rank, totals)

    return checks


def fresh_traces(monkeypatch: pytest.MonkeyPatch) -> None:
    """Makes the traced parsers trace again, so that their graphs hold the checks as patched now."""
    monkeypatch.setattr(sys.modules[__name__], "_GRAPHS", {})
    monkeypatch.setattr(sys.modules[__name__], "_ELASTIC_GRAPHS", {})


@pytest.mark.parametrize("parser", PARSERS)
def test_each_stated_check_fails_alike_in_every_parser(parser: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A valid round, and the statement made to fail at one check, each in turn (each check's column
    # for each rank, then the totals): every parser reports that check's message, naming the same
    # rank, because every parser evaluates the one statement.
    round_layout, valid = two_ranks()
    passed, messages = numpy_checks(round_layout, 2, valid)
    assert passed.all()
    if parser == "torch":
        failing = [0]
        monkeypatch.setattr(wire.RoundLayout, "checks", failing_at(lambda: failing[0]))
    else:
        variable = tf.Variable(0, dtype=tf.int64)
        monkeypatch.setattr(wire.RoundLayout, "checks", failing_at(variable.read_value))
    fresh_traces(monkeypatch)
    for position in range(passed.size):
        if parser == "torch":
            failing[0] = position
        else:
            variable.assign(position)
        expected = messages.at(position, 2)
        message = distq_failure(parser, round_layout, 2, valid)
        assert message is not None and expected in message, (position, expected, message)


@pytest.mark.parametrize("parser", PARSERS)
def test_a_check_added_to_the_statement_reaches_every_parser(parser: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A rule wire.py does not have, added where the checks are stated and nowhere else.
    stated = wire.RoundLayout.checks
    rule = f"DistQ: {wire.RANK_TEXT} sent more than one pair of its first tensor."

    def with_new_rule(self: wire.RoundLayout, headers: Any, ranks: Any, header_length: Any, payload_length: Any,
                      ops: wire.ArrayOps) -> wire.CheckTable:
        table = stated(self, headers, ranks, header_length, payload_length, ops)
        new = wire.Check((headers[:, wire.HEADER_FIELDS] <= 1)[:, None], (rule,))
        return table._replace(per_rank=[*table.per_rank, new])

    round_layout, valid = two_ranks()  # every rank sends at least two pairs of every tensor
    monkeypatch.setattr(wire.RoundLayout, "checks", with_new_rule)
    fresh_traces(monkeypatch)
    message = distq_failure(parser, round_layout, 2, valid)
    assert message is not None and "DistQ: rank 0 sent more than one pair of its first tensor." in message, message


@pytest.mark.parametrize("attack", [name for name in attacks() if name != "index out of range"])
def test_the_statement_evaluated_in_numpy_agrees(attack: str) -> None:
    # Nothing in the statement belongs to a frontend: NumPy arrays give the frontends' verdicts.
    round_layout, valid = two_ranks()
    assert numpy_checks(round_layout, 2, valid)[0].all()
    mutate, expected = attacks()[attack]
    passed, messages = numpy_checks(round_layout, 2, mutate(round_layout, valid))
    assert messages.at(int(np.flatnonzero(~passed)[0]), 2) == expected
