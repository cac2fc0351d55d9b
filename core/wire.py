"""The signed wire format.

A frame is::

    u32  length of everything after this field (big-endian)
    u32  header length H
    H    header: orjson object (envelope fields, see below)
    B    body: orjson object, B = header["bl"]
    P    payload: raw tensor bytes, P = header["pl"] (dtype and shape in header["pd"])

No pickle is ever used: a payload is raw little-endian bytes of one of :data:`DTYPES` plus its
shape, or opaque bytes (``dtype = "bytes"``).

Header fields: ``v`` version, ``k`` kind ("req"/"res", or "ann" for a broadcast announcement, whose
receiver is empty), ``m`` modality/service, ``t`` task,
``s`` sender hotkey (hex Ed25519 public key), ``r`` receiver hotkey, ``n`` nonce (hex, 16 bytes),
``ts`` unix milliseconds, ``h`` blake2b-256 of body‖payload, ``re`` nonce of the request a
response answers ("" for requests), ``c`` error code ("" on success), ``sig`` Ed25519 signature.

The signature covers :func:`signing_bytes` — (kind, modality, task, sender, receiver, nonce,
timestamp, body hash, reply-to, code) — so body and payload are bound through their hash.
:class:`Verifier` refuses unsigned, forged, misaddressed, stale, replayed and oversized input
with a specific :class:`tnode.errors.WireError` before any handler sees it.
"""

from __future__ import annotations

import hashlib
import os
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from .errors import (
    BadSignature,
    BodyHashMismatch,
    FrameTooLarge,
    MalformedFrame,
    ReplayedMessage,
    StaleMessage,
    TruncatedFrame,
    WrongReceiver,
)
from .keys import Keypair, verify

VERSION = 1
PREFIX = struct.Struct(">I")
DOMAIN = b"tnode/wire/1\n"
DEFAULT_MAX_FRAME = 16 * 1024 * 1024
MAX_HEADER = 64 * 1024
DTYPES = frozenset(
    {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool", "bytes"}
)
_HEADER_FIELDS = {"v", "k", "m", "t", "s", "r", "n", "ts", "h", "bl", "pl", "pd", "re", "c", "sig"}


@dataclass(frozen=True, slots=True)
class Message:
    """A decoded (and, after :meth:`Verifier.verify`, authenticated) envelope."""

    kind: str
    modality: str
    task: str
    sender: str
    receiver: str
    nonce: str
    ts_ms: int
    body: dict[str, Any]
    payload: np.ndarray | bytes | None
    reply_to: str = ""
    code: str = ""
    frame_bytes: int = 0
    payload_bytes: int = 0


@dataclass(frozen=True, slots=True)
class RawFrame:
    """A structurally valid frame whose signature is not yet checked."""

    header: dict[str, Any]
    body: bytes
    payload: bytes
    size: int


def body_hash(body: bytes, payload: bytes) -> str:
    h = hashlib.blake2b(body, digest_size=32)
    if payload:
        h.update(payload)
    return h.hexdigest()


def signing_bytes(h: dict[str, Any]) -> bytes:
    """The exact bytes an envelope's signature covers."""
    return DOMAIN + orjson.dumps([h["k"], h["m"], h["t"], h["s"], h["r"], h["n"], h["ts"], h["h"], h["re"], h["c"]])


KINDS = ("req", "res", "ann")
"""Frame kinds: a request, its response, and a broadcast announcement (receiver empty)."""


def _payload_parts(payload: np.ndarray | bytes | None) -> tuple[bytes, dict[str, Any] | None]:
    if payload is None:
        return b"", None
    if isinstance(payload, bytes | bytearray | memoryview):
        return bytes(payload), {"dtype": "bytes", "shape": [len(payload)]}
    if isinstance(payload, np.ndarray):
        dtype = payload.dtype.name
        if dtype not in DTYPES:
            raise TypeError(f"payload dtype {dtype} is not allowed on the wire (allowed: {sorted(DTYPES)})")
        arr = np.ascontiguousarray(payload, dtype=payload.dtype.newbyteorder("<"))
        return arr.tobytes(), {"dtype": dtype, "shape": list(arr.shape)}
    raise TypeError(f"payload must be a numpy array, bytes or None, not {type(payload).__name__}")


def encode(
    key: Keypair,
    *,
    kind: str,
    modality: str,
    task: str,
    receiver: str,
    body: dict[str, Any] | None = None,
    payload: np.ndarray | bytes | None = None,
    reply_to: str = "",
    code: str = "",
    nonce: str | None = None,
    ts_ms: int | None = None,
) -> bytes:
    """Sign and serialize one message into a complete frame (length prefix included)."""
    body_bytes = orjson.dumps(body or {}, option=orjson.OPT_SERIALIZE_NUMPY)
    payload_bytes, meta = _payload_parts(payload)
    header = {
        "v": VERSION,
        "k": kind,
        "m": modality,
        "t": task,
        "s": key.public_hex,
        "r": receiver,
        "n": nonce or os.urandom(16).hex(),
        "ts": int(time.time() * 1000) if ts_ms is None else ts_ms,
        "h": body_hash(body_bytes, payload_bytes),
        "bl": len(body_bytes),
        "pl": len(payload_bytes),
        "pd": meta,
        "re": reply_to,
        "c": code,
    }
    header["sig"] = key.sign(signing_bytes(header)).hex()
    header_bytes = orjson.dumps(header)
    size = 4 + len(header_bytes) + len(body_bytes) + len(payload_bytes)
    return b"".join((PREFIX.pack(size), PREFIX.pack(len(header_bytes)), header_bytes, body_bytes, payload_bytes))


def check_length(prefix: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> int:
    """Parse a 4-byte length prefix and refuse oversized frames before reading them."""
    if len(prefix) != 4:
        raise TruncatedFrame(f"length prefix has {len(prefix)} bytes, expected 4")
    (size,) = PREFIX.unpack(prefix)
    if size > max_frame:
        raise FrameTooLarge(f"frame of {size} bytes exceeds the limit of {max_frame} bytes")
    if size < 4:
        raise MalformedFrame(f"frame length {size} is smaller than the header length field")
    return int(size)


def _expect(header: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = header.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise MalformedFrame(f"header field {key!r} missing or of the wrong type")
    return value


def decode_frame(data: bytes | bytearray | memoryview, max_frame: int = DEFAULT_MAX_FRAME) -> RawFrame:
    """Split one complete frame (with its length prefix) into header, body and payload.

    Raises only :class:`tnode.errors.WireError` subclasses, whatever the input.
    """
    data = memoryview(data)
    size = check_length(bytes(data[:4]), max_frame)
    if len(data) - 4 < size:
        raise TruncatedFrame(f"frame declares {size} bytes but {len(data) - 4} arrived")
    if len(data) - 4 > size:
        raise MalformedFrame(f"{len(data) - 4 - size} trailing bytes after the frame")
    return decode_body(data[4:], max_frame)


def decode_body(data: bytes | bytearray | memoryview, max_frame: int = DEFAULT_MAX_FRAME) -> RawFrame:
    """Like :func:`decode_frame` for the bytes after the length prefix."""
    data = memoryview(data)
    size = len(data)
    if size > max_frame:
        raise FrameTooLarge(f"frame of {size} bytes exceeds the limit of {max_frame} bytes")
    if size < 4:
        raise TruncatedFrame("frame ends inside the header length field")
    (hlen,) = PREFIX.unpack(data[:4])
    if hlen > MAX_HEADER:
        raise MalformedFrame(f"header of {hlen} bytes exceeds {MAX_HEADER} bytes")
    if 4 + hlen > size:
        raise TruncatedFrame("frame ends inside the header")
    try:
        header = orjson.loads(data[4 : 4 + hlen])
    except orjson.JSONDecodeError as exc:
        raise MalformedFrame(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise MalformedFrame("header is not a JSON object")
    unknown = set(header) - _HEADER_FIELDS
    if unknown:
        raise MalformedFrame(f"unknown header fields {sorted(unknown)}")
    if _expect(header, "v", int) != VERSION:
        raise MalformedFrame(f"unsupported wire version {header['v']!r} (this node speaks {VERSION})")
    kind = _expect(header, "k", str)
    if kind not in KINDS:
        raise MalformedFrame("header field 'k' must be 'req', 'res' or 'ann'")
    for key in ("m", "t", "s", "r", "n", "h", "re", "c"):
        _expect(header, key, str)
    if kind == "ann" and header["r"]:
        raise MalformedFrame("an announcement ('ann') is addressed to nobody: its receiver must be empty")
    _expect(header, "ts", int)
    bl = _expect(header, "bl", int)
    pl = _expect(header, "pl", int)
    if bl < 0 or pl < 0:
        raise MalformedFrame("negative body or payload length")
    end = 4 + hlen + bl + pl
    if end > size:
        raise TruncatedFrame(f"frame ends before its body/payload ({size} of {end} bytes)")
    if end < size:
        raise MalformedFrame(f"{size - end} bytes after the payload")
    pd = header.get("pd")
    if pd is not None and not isinstance(pd, dict):
        raise MalformedFrame("header field 'pd' must be an object or null")
    if pl and pd is None:
        raise MalformedFrame("payload present without its 'pd' description")
    body = bytes(data[4 + hlen : 4 + hlen + bl])
    payload = bytes(data[4 + hlen + bl : end])
    return RawFrame(header=header, body=body, payload=payload, size=size + 4)


def _decode_payload(pd: dict[str, Any] | None, raw: bytes) -> np.ndarray | bytes | None:
    if pd is None:
        if raw:
            raise MalformedFrame("payload bytes without a description")
        return None
    dtype = pd.get("dtype")
    shape = pd.get("shape")
    if dtype not in DTYPES:
        raise MalformedFrame(f"payload dtype {dtype!r} not allowed")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise MalformedFrame("payload shape must be a list of non-negative integers")
    if dtype == "bytes":
        if shape != [len(raw)]:
            raise MalformedFrame("bytes payload shape does not match its length")
        return raw
    dt = np.dtype(dtype).newbyteorder("<")
    count = 1
    for d in shape:
        count *= d
    if count * dt.itemsize != len(raw):
        raise MalformedFrame(f"payload has {len(raw)} bytes, shape {shape} of {dtype} needs {count * dt.itemsize}")
    return np.frombuffer(raw, dtype=dt).reshape(shape)


@dataclass
class ReplayGuard:
    """Remembers (sender, nonce) pairs for the freshness window; bounded in memory.

    When more than ``capacity`` nonces are live, the oldest are forgotten and the acceptance
    floor moves up to their timestamp, so a forgotten nonce can never be replayed.
    """

    window_ms: int = 30_000
    capacity: int = 500_000
    _seen: OrderedDict[tuple[str, str], int] = field(default_factory=OrderedDict)
    floor_ms: int = 0

    def check_and_record(self, sender: str, nonce: str, ts_ms: int, now_ms: int) -> None:
        self._expire(now_ms)
        if ts_ms <= self.floor_ms:
            raise StaleMessage("message older than the replay memory (node under nonce pressure)")
        key = (sender, nonce)
        if key in self._seen:
            raise ReplayedMessage(f"nonce {nonce[:16]} from {sender[:16]} was already used")
        self._seen[key] = ts_ms
        while len(self._seen) > self.capacity:
            _, old_ts = self._seen.popitem(last=False)
            self.floor_ms = max(self.floor_ms, old_ts)

    def _expire(self, now_ms: int) -> None:
        limit = now_ms - 2 * self.window_ms
        seen = self._seen
        while seen:
            key = next(iter(seen))
            if seen[key] >= limit:
                break
            del seen[key]

    def __len__(self) -> int:
        return len(self._seen)


@dataclass
class Verifier:
    """Authenticates frames addressed to ``me`` (hex hotkey).

    Checks, in order: structure and size (:func:`decode_frame`), receiver, signature,
    timestamp within ``window_ms``, nonce not seen before, body hash. Only a message that passes
    all of them is returned.
    """

    me: str
    window_ms: int = 30_000
    max_frame: int = DEFAULT_MAX_FRAME
    replay: ReplayGuard | None = None

    def __post_init__(self) -> None:
        if self.replay is None:
            self.replay = ReplayGuard(window_ms=self.window_ms)

    def verify_frame(self, data: bytes | bytearray | memoryview, *, expect_kind: str | None = None) -> Message:
        return self.verify(decode_frame(data, self.max_frame), expect_kind=expect_kind)

    def verify_body(self, data: bytes | bytearray | memoryview, *, expect_kind: str | None = None) -> Message:
        return self.verify(decode_body(data, self.max_frame), expect_kind=expect_kind)

    def verify(self, frame: RawFrame, *, expect_kind: str | None = None, now_ms: int | None = None) -> Message:
        h = frame.header
        if expect_kind is not None and h["k"] != expect_kind:
            raise MalformedFrame(f"expected a {expect_kind!r} frame, got {h['k']!r}")
        if h["r"] != self.me:
            raise WrongReceiver(f"frame is addressed to {h['r'][:16]}…, not to this node")
        sig = h.get("sig")
        if not isinstance(sig, str) or len(sig) != 128:
            raise BadSignature("frame is unsigned or its signature is malformed")
        try:
            sig_bytes = bytes.fromhex(sig)
            sender = bytes.fromhex(h["s"])
        except ValueError:
            raise BadSignature("signature or sender is not hex") from None
        if len(sender) != 32 or not verify(sender, signing_bytes(h), sig_bytes):
            raise BadSignature(f"signature does not verify for sender {h['s'][:16]}…")
        now = int(time.time() * 1000) if now_ms is None else now_ms
        if abs(now - h["ts"]) > self.window_ms:
            raise StaleMessage(f"timestamp {h['ts']} is {abs(now - h['ts'])} ms from now (window {self.window_ms} ms)")
        if body_hash(frame.body, frame.payload) != h["h"]:
            raise BodyHashMismatch("body or payload does not match the signed hash")
        assert self.replay is not None
        self.replay.check_and_record(h["s"], h["n"], h["ts"], now)
        try:
            body = orjson.loads(frame.body) if frame.body else {}
        except orjson.JSONDecodeError as exc:
            raise MalformedFrame(f"body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise MalformedFrame("body is not a JSON object")
        payload = _decode_payload(h.get("pd"), frame.payload)
        return Message(
            kind=h["k"],
            modality=h["m"],
            task=h["t"],
            sender=h["s"],
            receiver=h["r"],
            nonce=h["n"],
            ts_ms=h["ts"],
            body=body,
            payload=payload,
            reply_to=h["re"],
            code=h["c"],
            frame_bytes=frame.size,
            payload_bytes=len(frame.payload),
        )
