"""Hostile, validly signed headers: every bound of the wire format is refused with a typed error.

Each case is a frame an authenticated peer could send; before these bounds some of them raised
TypeError/ValueError out of the decoder (and so out of the transport), others were accepted.
"""

from __future__ import annotations

import struct
import time
import tracemalloc
from typing import Any

import orjson
import pytest
from tnode import wire
from tnode.errors import BadSignature, MalformedFrame, ReplayedMessage, StaleMessage
from tnode.keys import Keypair

ALICE = Keypair.from_seed(b"a" * 32)
BOB = Keypair.from_seed(b"b" * 32)
NOW = int(time.time() * 1000)


def signed(changes: dict[str, Any], body: bytes = b"{}", payload: bytes = b"", *, key: Keypair = ALICE) -> bytes:
    """A frame signed by ``key`` over a header with ``changes`` applied; body hash and lengths match."""
    header: dict[str, Any] = {
        "v": wire.VERSION, "k": "req", "m": "text", "t": "t", "s": key.public_hex, "r": BOB.public_hex, "n": "5a" * 16,
        "ts": NOW, "h": wire.body_hash(body, payload), "bl": len(body), "pl": len(payload), "pd": None,
        "re": "", "c": "",
    }
    header.update(changes)
    header.setdefault("sig", key.sign(wire.signing_bytes(header)).hex())
    head = orjson.dumps(header)
    return struct.pack(">II", 4 + len(head) + len(body) + len(payload), len(head)) + head + body + payload


def bob(**kw: Any) -> wire.Verifier:
    return wire.Verifier(me=BOB.public_hex, window_ms=10**12, **kw)


@pytest.mark.parametrize(
    ("pd", "payload", "message"),
    [
        ({"dtype": ["float32"], "shape": [1]}, b"\0" * 4, "dtype"),
        ({"dtype": {"a": 1}, "shape": [1]}, b"\0" * 4, "dtype"),
        ({"dtype": "object", "shape": [1]}, b"\0", "dtype"),
        ({"dtype": "uint8", "shape": [2**63]}, b"\0", "dimensions must be integers in"),
        ({"dtype": "uint8", "shape": [1] * 65}, b"\0", "at most 8 dimensions"),
        ({"dtype": "uint8", "shape": [1] * 9}, b"\0", "at most 8 dimensions"),
        ({"dtype": "uint8", "shape": [2**32, 2**32, 0]}, b"", "more than"),
        ({"dtype": "uint8", "shape": [0, 2**32, 2**32]}, b"", "more than"),
        ({"dtype": "uint8", "shape": [0, 2**63 - 1, 2**63 - 1]}, b"", "dimensions must be integers in"),
        ({"dtype": "uint8", "shape": [True]}, b"\0", "dimensions must be integers in"),
        ({"dtype": "uint8", "shape": [-1]}, b"\0", "dimensions must be integers in"),
        ({"dtype": "uint8", "shape": 1}, b"\0", "list"),
        ({"dtype": "uint8", "shape": [1], "extra": 0}, b"\0", "exactly 'dtype' and 'shape'"),
        ({"dtype": "uint8"}, b"\0", "exactly 'dtype' and 'shape'"),
        ({"shape": [1]}, b"\0", "exactly 'dtype' and 'shape'"),
        ([], b"", "'pd' must be null or an object"),
        ({"dtype": "bytes", "shape": [2]}, b"\0", "bytes payload shape"),
    ],
)
def test_hostile_payload_descriptions_are_malformed_frames(pd: Any, payload: bytes, message: str) -> None:
    data = signed({"pd": pd}, payload=payload)
    with pytest.raises(MalformedFrame, match=message):
        wire.decode_frame(data)
    with pytest.raises(MalformedFrame, match=message):
        bob().verify_frame(data)


def test_an_empty_tensor_with_large_zero_dimensions_still_round_trips() -> None:
    msg = bob().verify_frame(signed({"pd": {"dtype": "float32", "shape": [0, 2**32]}}))
    assert msg.payload is not None and getattr(msg.payload, "shape", None) == (0, 2**32)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"m": "x" * (wire.MAX_NAME + 1)}, "'m' or 't'"),
        ({"t": "x" * (wire.MAX_NAME + 1)}, "'m' or 't'"),
        ({"c": "x" * (wire.MAX_CODE + 1)}, "'c'"),
        ({"s": "ab" * 31}, "'s' must be 64"),
        ({"s": ALICE.public_hex.upper()}, "'s' must be 64"),
        ({"s": "zz" * 32}, "'s' must be 64"),
        ({"s": "ab" * 5000}, "'s' must be 64"),
        ({"r": "r" * 10000}, "'r' must be empty or 64"),
        ({"n": "a" * 32000}, "'n' must be a nonce of exactly 32"),
        ({"n": "ab" * 8}, "'n' must be a nonce"),
        ({"n": "AB" * 16}, "'n' must be a nonce"),
        ({"n": " " + "ab" * 15 + "a"}, "'n' must be a nonce"),
        ({"n": ""}, "'n' must be a nonce"),
        ({"h": "0" * 63}, "'h' must be 64"),
        ({"h": "h" * 20000}, "'h' must be 64"),
        ({"re": "e" * 20000}, "'re' must be empty or a nonce"),
        ({"ts": -1}, "'ts' must be an integer in"),
        ({"ts": 2**64 - 1}, "'ts' must be an integer in"),
        ({"ts": True}, "'ts' missing or of the wrong type"),
        ({"v": True}, "'v' missing or of the wrong type"),
        ({"bl": False}, "'bl' missing or of the wrong type"),
        ({"bl": 2**63}, "exceeds the frame"),
        ({"pl": 2**64 - 1}, "exceeds the frame"),
        ({"m": ["text"]}, "'m' missing or of the wrong type"),
        ({"c": {"x": 1}}, "'c' missing or of the wrong type"),
    ],
)
def test_hostile_header_fields_are_malformed_frames(changes: dict[str, Any], message: str) -> None:
    data = signed(changes)
    with pytest.raises(MalformedFrame, match=message):
        bob().verify_frame(data)


def test_huge_json_integers_decode_as_floats_and_are_refused() -> None:
    head = orjson.dumps({"v": 1}).replace(b"1", b"1" + b"0" * 40)
    with pytest.raises(MalformedFrame, match="'v'"):
        wire.decode_body(struct.pack(">I", len(head)) + head)


@pytest.mark.parametrize("sig", ["ab" * 64 + "ab", "AB" * 64, "zz" * 64, "s" * 30000, 7, ["ab"]])
def test_malformed_signatures_are_bad_signatures(sig: Any) -> None:
    with pytest.raises(BadSignature):
        bob().verify_frame(signed({"sig": sig}))


def test_encode_refuses_to_make_a_nonce_peers_would_refuse() -> None:
    with pytest.raises(ValueError, match="32 lowercase hex"):
        wire.encode(ALICE, kind="req", modality="m", task="t", receiver=BOB.public_hex, nonce="a" * 33)


# --------------------------------------------------------------------------- replay memory
def test_long_nonces_are_refused_before_the_replay_memory_and_memory_stays_flat() -> None:
    verifier = bob()
    assert verifier.replay is not None
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(1500):
            data = signed({"n": f"{i:032x}" * 1000})  # 32,000 characters, validly signed
            with pytest.raises(MalformedFrame, match="'n' must be a nonce"):
                verifier.verify_frame(data)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(verifier.replay) == 0
    assert grown < 256 * 1024, f"replay path kept {grown} bytes for 1,500 refused frames"


def test_the_replay_guard_itself_refuses_keys_it_cannot_store_in_fixed_size() -> None:
    guard = wire.ReplayGuard()
    with pytest.raises(MalformedFrame):
        guard.check_and_record(ALICE.public_hex, "a" * 32000, NOW, NOW)
    with pytest.raises(MalformedFrame):
        guard.check_and_record("x" * 64, "ab" * 16, NOW, NOW)
    assert len(guard) == 0


def test_replay_memory_is_bounded_in_bytes() -> None:
    budget = 1024 * 1024
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        guard = wire.ReplayGuard(window_ms=10**9, max_bytes=budget)
        for i in range(3 * guard.limit):
            guard.check_and_record(ALICE.public_hex, f"{i:032x}", NOW + i, NOW + i)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(guard) == guard.limit == budget // wire.REPLAY_ENTRY_BYTES
    assert guard.bytes_used <= budget
    assert held <= budget * 1.25, f"guard holds {held} bytes, budget {budget}"


def test_a_guard_at_its_byte_cap_keeps_refusing_every_replay() -> None:
    guard = wire.ReplayGuard(window_ms=10**9, max_bytes=100 * wire.REPLAY_ENTRY_BYTES)
    verifier = bob(replay=guard)
    frames = [signed({"n": f"{i:032x}", "ts": NOW + i}) for i in range(1000)]
    for data in frames:
        verifier.verify(wire.decode_frame(data), now_ms=NOW + 1000)
    assert len(guard) == 100
    assert guard.floor_ms == NOW + 899  # the newest forgotten timestamp
    for data in frames:
        with pytest.raises((ReplayedMessage, StaleMessage)):
            verifier.verify(wire.decode_frame(data), now_ms=NOW + 1000)
    # A fresh message above the floor is still accepted at the cap.
    fresh = verifier.verify(wire.decode_frame(signed({"n": "f" * 32, "ts": NOW + 2000})), now_ms=NOW + 2000)
    assert fresh.nonce == "f" * 32 and len(guard) == 100


def test_verifier_replay_budget_is_configurable() -> None:
    verifier = bob(replay_max_bytes=10 * wire.REPLAY_ENTRY_BYTES)
    assert verifier.replay is not None and verifier.replay.limit == 10
    with pytest.raises(ValueError, match="holds no nonce"):
        wire.ReplayGuard(max_bytes=1)

