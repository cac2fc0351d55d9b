"""The signed wire format: round trips and every refusal, each with its specific error."""

from __future__ import annotations

import struct
import time

import numpy as np
import orjson
import pytest
from tnode import wire
from tnode.errors import (
    BadSignature,
    BodyHashMismatch,
    FrameTooLarge,
    MalformedFrame,
    ReplayedMessage,
    StaleMessage,
    TruncatedFrame,
    WireError,
    WrongReceiver,
)
from tnode.keys import Keypair

ALICE = Keypair.from_seed(b"a" * 32)
BOB = Keypair.from_seed(b"b" * 32)
MALLORY = Keypair.from_seed(b"m" * 32)


def frame(sender: Keypair = ALICE, receiver: Keypair = BOB, **kw: object) -> bytes:
    args: dict[str, object] = {"kind": "req", "modality": "text", "task": "next_token", "body": {"tokens": [1, 2, 3]}}
    args.update(kw)
    return wire.encode(sender, receiver=receiver.public_hex, **args)  # type: ignore[arg-type]


def rebuild(header: dict[str, object], body: bytes, payload: bytes = b"") -> bytes:
    """A frame with exactly this header, body and payload (no re-signing)."""
    head = orjson.dumps(header)
    size = 4 + len(head) + len(body) + len(payload)
    return struct.pack(">II", size, len(head)) + head + body + payload


def bob(**kw: object) -> wire.Verifier:
    return wire.Verifier(me=BOB.public_hex, **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- round trips
def test_request_round_trip_keeps_every_field() -> None:
    data = frame(body={"tokens": [5, 6], "k": 4}, nonce="00" * 16)
    msg = bob().verify_frame(data, expect_kind="req")
    assert (msg.kind, msg.modality, msg.task) == ("req", "text", "next_token")
    assert msg.sender == ALICE.public_hex and msg.receiver == BOB.public_hex
    assert msg.body == {"tokens": [5, 6], "k": 4}
    assert msg.nonce == "00" * 16 and msg.payload is None
    assert msg.frame_bytes == len(data)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int8", "int32", "int64", "uint8", "bool"])
def test_tensor_payload_round_trips_with_dtype_and_shape(dtype: str) -> None:
    arr = (np.arange(24) % 7).astype(dtype).reshape(2, 3, 4)
    msg = bob().verify_frame(frame(payload=arr))
    assert isinstance(msg.payload, np.ndarray)
    assert msg.payload.dtype == np.dtype(dtype) and msg.payload.shape == (2, 3, 4)
    assert np.array_equal(msg.payload, arr)


def test_big_endian_array_is_sent_little_endian_and_decodes_equal() -> None:
    arr = np.arange(6, dtype=">i4")
    msg = bob().verify_frame(frame(payload=arr))
    assert np.array_equal(msg.payload, np.arange(6))


def test_bytes_payload_and_response_fields_round_trip() -> None:
    data = frame(kind="res", payload=b"\x00\xffraw", reply_to="ab" * 16, code="overloaded")
    msg = bob().verify_frame(data, expect_kind="res")
    assert msg.payload == b"\x00\xffraw"
    assert (msg.reply_to, msg.code) == ("ab" * 16, "overloaded")


def test_object_arrays_are_never_put_on_the_wire() -> None:
    with pytest.raises(TypeError, match="not allowed on the wire"):
        frame(payload=np.array([{"a": 1}], dtype=object))


# --------------------------------------------------------------------------- refusals
def test_forged_signature_is_refused() -> None:
    raw = wire.decode_frame(frame())
    header = dict(raw.header)
    header["sig"] = MALLORY.sign(wire.signing_bytes(header)).hex()
    with pytest.raises(BadSignature, match="does not verify"):
        bob().verify_frame(rebuild(header, raw.body, raw.payload))


def test_claiming_another_sender_is_refused() -> None:
    raw = wire.decode_frame(frame(sender=MALLORY))
    header = {**raw.header, "s": ALICE.public_hex}
    with pytest.raises(BadSignature):
        bob().verify_frame(rebuild(header, raw.body, raw.payload))


def test_unsigned_frame_is_refused() -> None:
    raw = wire.decode_frame(frame())
    header = {k: v for k, v in raw.header.items() if k != "sig"}
    with pytest.raises(BadSignature, match="unsigned"):
        bob().verify_frame(rebuild(header, raw.body, raw.payload))


def test_tampered_body_fails_the_hash_check() -> None:
    raw = wire.decode_frame(frame(body={"tokens": [1, 2, 3]}))
    body = raw.body.replace(b"1", b"9")
    assert len(body) == len(raw.body) and body != raw.body
    with pytest.raises(BodyHashMismatch):
        bob().verify_frame(rebuild(raw.header, body, raw.payload))


def test_tampered_payload_fails_the_hash_check() -> None:
    raw = wire.decode_frame(frame(payload=np.zeros(8, dtype=np.float32)))
    payload = b"\x01" + raw.payload[1:]
    with pytest.raises(BodyHashMismatch):
        bob().verify_frame(rebuild(raw.header, raw.body, payload))


def test_replayed_frame_is_refused_the_second_time() -> None:
    verifier = bob()
    data = frame()
    verifier.verify_frame(data)
    with pytest.raises(ReplayedMessage):
        verifier.verify_frame(data)


def test_same_nonce_from_two_senders_is_not_a_replay() -> None:
    verifier = bob()
    verifier.verify_frame(frame(sender=ALICE, nonce="11" * 16))
    verifier.verify_frame(frame(sender=MALLORY, nonce="11" * 16))


@pytest.mark.parametrize("offset_ms", [-60_000, 60_000])
def test_stale_or_future_frame_is_refused(offset_ms: int) -> None:
    data = frame(ts_ms=int(time.time() * 1000) + offset_ms)
    with pytest.raises(StaleMessage, match="window 30000 ms"):
        bob(window_ms=30_000).verify_frame(data)


def test_frame_older_than_replay_memory_is_refused_as_stale() -> None:
    guard = wire.ReplayGuard(window_ms=30_000, capacity=2)
    verifier = bob(replay=guard)
    now = int(time.time() * 1000)
    first = frame(ts_ms=now - 3)
    verifier.verify_frame(first)
    verifier.verify_frame(frame(ts_ms=now - 2))
    verifier.verify_frame(frame(ts_ms=now - 1))  # evicts the first nonce, floor moves up
    assert len(guard) == 2
    with pytest.raises(StaleMessage, match="replay memory"):
        verifier.verify_frame(first)


def test_oversized_frame_is_refused_from_its_prefix_alone() -> None:
    data = frame(payload=np.zeros(1000, dtype=np.uint8))
    with pytest.raises(FrameTooLarge, match="exceeds the limit of 512"):
        wire.check_length(data[:4], max_frame=512)
    with pytest.raises(FrameTooLarge):
        bob(max_frame=512).verify_frame(data)
    with pytest.raises(FrameTooLarge):
        bob(max_frame=512).verify_body(data[4:])


@pytest.mark.parametrize("cut", [1, 3, 4, 10, 100])
def test_truncated_frame_is_refused(cut: int) -> None:
    data = frame()
    with pytest.raises(TruncatedFrame):
        bob().verify_frame(data[:cut])


def test_trailing_bytes_are_refused() -> None:
    with pytest.raises(MalformedFrame, match="trailing"):
        bob().verify_frame(frame() + b"\x00")


def test_non_json_header_is_refused() -> None:
    head = b"{not json"
    data = struct.pack(">II", 4 + len(head), len(head)) + head
    with pytest.raises(MalformedFrame, match="not JSON"):
        bob().verify_frame(data)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"v": 1}, "unsupported wire version"),  # version 1 hashed with blake2b
        ({"v": 3}, "unsupported wire version"),
        ({"k": "push"}, "'k' must be"),
        ({"ts": "yesterday"}, "'ts'"),
        ({"bl": -1}, "negative"),
        ({"extra": 1}, "unknown header fields"),
    ],
)
def test_malformed_header_fields_are_refused(change: dict[str, object], message: str) -> None:
    raw = wire.decode_frame(frame())
    with pytest.raises(MalformedFrame, match=message):
        bob().verify_frame(rebuild({**raw.header, **change}, raw.body, raw.payload))


def test_frame_for_another_receiver_is_refused() -> None:
    with pytest.raises(WrongReceiver):
        bob().verify_frame(frame(receiver=MALLORY))


def test_unexpected_kind_is_refused() -> None:
    with pytest.raises(MalformedFrame, match="expected a 'req' frame"):
        bob().verify_frame(frame(kind="res"), expect_kind="req")


def test_payload_that_does_not_match_its_shape_is_refused() -> None:
    # A correctly signed frame whose description lies about the payload size.
    body = b"{}"
    payload = b"\x00" * 10
    header: dict[str, object] = {
        "v": wire.VERSION, "k": "req", "m": "text", "t": "x", "s": ALICE.public_hex, "r": BOB.public_hex, "n": "22" * 16,
        "ts": int(time.time() * 1000), "h": wire.body_hash(body, payload), "bl": len(body), "pl": len(payload),
        "pd": {"dtype": "float32", "shape": [3]}, "re": "", "c": "",
    }
    header["sig"] = ALICE.sign(wire.signing_bytes(header)).hex()
    with pytest.raises(MalformedFrame, match="needs 12"):
        bob().verify_frame(rebuild(header, body, payload))


def test_refusals_have_distinct_machine_readable_codes() -> None:
    classes = [BadSignature, BodyHashMismatch, FrameTooLarge, MalformedFrame, ReplayedMessage, StaleMessage,
               TruncatedFrame, WrongReceiver]
    codes = [cls.code for cls in classes]
    assert len(set(codes)) == len(codes)
    assert all(issubclass(cls, WireError) and cls.code != WireError.code for cls in classes)


def test_announcements_are_broadcast_frames_that_no_request_verifier_accepts() -> None:
    ann = wire.encode(ALICE, kind="ann", modality="_announce", task="announce", receiver="", body={"v": 1})
    msg = wire.Verifier("").verify_frame(ann, expect_kind="ann")
    assert (msg.kind, msg.sender, msg.receiver) == ("ann", ALICE.public_hex, "")
    with pytest.raises(MalformedFrame, match="expected a 'req' frame"):
        wire.Verifier("").verify_frame(ann, expect_kind="req")
    with pytest.raises(WrongReceiver):  # a node's request verifier: not addressed to it
        wire.Verifier(BOB.public_hex).verify_frame(ann)
    addressed = wire.encode(ALICE, kind="ann", modality="_announce", task="announce", receiver=BOB.public_hex)
    with pytest.raises(MalformedFrame, match="addressed to nobody"):
        wire.Verifier(BOB.public_hex).verify_frame(addressed)
    with pytest.raises(MalformedFrame, match="'req', 'res' or 'ann'"):
        wire.Verifier(BOB.public_hex).verify_frame(frame(kind="ping"))


def test_body_hash_is_blake3_of_body_then_payload() -> None:
    import blake3

    assert wire.VERSION == 2
    assert wire.body_hash(b'{"a":1}', memoryview(b"\x00\x01")) == blake3.blake3(b'{"a":1}\x00\x01').hexdigest()
    assert wire.body_hash(b"{}", b"") == blake3.blake3(b"{}").hexdigest()
