"""The wire's large-payload path: views instead of copies, where no caller can see the difference."""

from __future__ import annotations

import numpy as np
from tnode import wire
from tnode.keys import Keypair

ALICE = Keypair.from_seed(b"a" * 32)
BOB = Keypair.from_seed(b"b" * 32)


def frame(payload: object) -> bytes:
    return wire.encode(ALICE, kind="req", modality="text", task="t", receiver=BOB.public_hex, payload=payload)


def test_an_array_payload_shares_the_received_frames_buffer() -> None:
    data = frame(np.arange(1 << 16, dtype=np.float32))
    msg = wire.Verifier(me=BOB.public_hex).verify_frame(data)
    assert isinstance(msg.payload, np.ndarray)
    assert np.shares_memory(msg.payload, np.frombuffer(data, dtype=np.uint8))  # no copy of the payload
    assert not msg.payload.flags.writeable
    np.testing.assert_array_equal(msg.payload, np.arange(1 << 16, dtype=np.float32))


def test_a_frame_in_a_mutable_buffer_is_copied_so_reusing_the_buffer_changes_nothing() -> None:
    buf = bytearray(frame(np.arange(16, dtype=np.int64)))
    raw = wire.decode_frame(buf)
    buf[-8:] = bytes(8)  # the caller reuses its receive buffer
    assert np.frombuffer(raw.payload, dtype="<i8").tolist() == list(range(16))


def test_bytes_payloads_arrive_as_bytes_and_views_encode_like_bytes() -> None:
    raw = bytes(range(256)) * 64
    for given in (raw, bytearray(raw), memoryview(raw), memoryview(np.frombuffer(raw, dtype=np.uint16))):
        msg = wire.Verifier(me=BOB.public_hex).verify_frame(frame(given))
        assert type(msg.payload) is bytes and msg.payload == raw


def test_a_non_contiguous_array_or_view_is_sent_as_its_values() -> None:
    grid = np.arange(64, dtype=np.int32).reshape(8, 8)[:, ::2]
    msg = wire.Verifier(me=BOB.public_hex).verify_frame(frame(grid))
    assert isinstance(msg.payload, np.ndarray)
    np.testing.assert_array_equal(msg.payload, grid)
    strided = memoryview(bytes(range(32)))[::2]
    msg = wire.Verifier(me=BOB.public_hex).verify_frame(frame(strided))
    assert msg.payload == bytes(range(0, 32, 2))
