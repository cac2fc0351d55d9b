"""Property tests: no input makes the frame decoder or verifier fail with anything but a WireError."""

from __future__ import annotations

import struct
import time
from typing import Any

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tnode import wire
from tnode.errors import WireError
from tnode.keys import Keypair

ALICE = Keypair.from_seed(b"a" * 32)
BOB = Keypair.from_seed(b"b" * 32)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

VALID = wire.encode(ALICE, kind="req", modality="text", task="t", receiver=BOB.public_hex,
                    body={"tokens": [1, 2, 3]}, payload=np.arange(4, dtype=np.float32), ts_ms=int(time.time() * 1000))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


def verify_or_refuse(data: bytes, verifier: wire.Verifier | None = None) -> None:
    """The property: either a Message comes back or a WireError is raised; nothing else."""
    verifier = verifier or wire.Verifier(me=BOB.public_hex, window_ms=10**12)
    try:
        msg = verifier.verify_frame(data)
    except WireError:
        return
    assert isinstance(msg, wire.Message)


@SETTINGS
@given(st.binary(max_size=512))
def test_arbitrary_bytes_only_raise_wire_errors(data: bytes) -> None:
    try:
        wire.decode_frame(data)
    except WireError:
        pass
    verify_or_refuse(data)


@SETTINGS
@given(st.binary(max_size=300))
def test_arbitrary_bytes_behind_a_correct_length_prefix_only_raise_wire_errors(data: bytes) -> None:
    verify_or_refuse(struct.pack(">I", len(data)) + data)


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_byte_flips_of_a_valid_frame_only_raise_wire_errors(flips: list[tuple[int, int]]) -> None:
    data = bytearray(VALID)
    for pos, value in flips:
        data[pos] = value
    verify_or_refuse(bytes(data))


@SETTINGS
@given(st.integers(0, len(VALID)), st.integers(0, 64), st.binary(max_size=16))
def test_cut_and_spliced_valid_frames_only_raise_wire_errors(start: int, length: int, insert: bytes) -> None:
    verify_or_refuse(VALID[:start] + insert + VALID[start + length :])


FIELDS = sorted(wire._HEADER_FIELDS - {"sig"})


@SETTINGS
@given(st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=4), st.binary(max_size=32),
       st.binary(max_size=32))
def test_correctly_signed_frames_with_hostile_headers_only_raise_wire_errors(
    changes: dict[str, Any], body: bytes, payload: bytes
) -> None:
    # An authenticated peer can still send any header: the verifier must refuse it cleanly.
    header: dict[str, Any] = orjson.loads(orjson.dumps(wire.decode_frame(VALID).header))
    header.update(changes)
    header["bl"] = changes.get("bl", len(body))
    header["pl"] = changes.get("pl", len(payload))
    try:
        header["sig"] = ALICE.sign(wire.signing_bytes(header)).hex()
    except (KeyError, TypeError, orjson.JSONEncodeError):
        header["sig"] = "00" * 64
    try:
        head = orjson.dumps(header)
    except orjson.JSONEncodeError:
        return
    size = 4 + len(head) + len(body) + len(payload)
    verify_or_refuse(struct.pack(">II", size, len(head)) + head + body + payload)


@SETTINGS
@given(json_values, st.binary(max_size=64))
def test_signed_frames_with_hostile_payload_descriptions_only_raise_wire_errors(pd: Any, payload: bytes) -> None:
    body = b"{}"
    header: dict[str, Any] = {
        "v": wire.VERSION, "k": "req", "m": "text", "t": "t", "s": ALICE.public_hex, "r": BOB.public_hex,
        "n": "33" * 16, "ts": int(time.time() * 1000), "h": wire.body_hash(body, payload), "bl": len(body),
        "pl": len(payload), "pd": pd, "re": "", "c": "",
    }
    header["sig"] = ALICE.sign(wire.signing_bytes(header)).hex()
    head = orjson.dumps(header)
    size = 4 + len(head) + len(body) + len(payload)
    verify_or_refuse(struct.pack(">II", size, len(head)) + head + body + payload)


@SETTINGS
@given(json_values)
def test_signed_frames_with_hostile_bodies_only_raise_wire_errors(body_value: Any) -> None:
    body = orjson.dumps(body_value)
    header: dict[str, Any] = {
        "v": wire.VERSION, "k": "req", "m": "text", "t": "t", "s": ALICE.public_hex, "r": BOB.public_hex,
        "n": "44" * 16, "ts": int(time.time() * 1000), "h": wire.body_hash(body, b""), "bl": len(body),
        "pl": 0, "pd": None, "re": "", "c": "",
    }
    header["sig"] = ALICE.sign(wire.signing_bytes(header)).hex()
    head = orjson.dumps(header)
    verify_or_refuse(struct.pack(">II", 4 + len(head) + len(body), len(head)) + head + body)
