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
``ts`` unix milliseconds, ``h`` BLAKE3-256 of body‖payload, ``re`` nonce of the request a
response answers ("" for requests), ``c`` error code ("" on success), ``sig`` Ed25519 signature.

The signature covers :func:`signing_bytes` — (kind, modality, task, sender, receiver, nonce,
timestamp, body hash, reply-to, code) — so body and payload are bound through their hash.
:class:`Verifier` refuses unsigned, forged, misaddressed, stale, replayed and oversized input
with a specific :class:`tnode.errors.WireError` before any handler sees it.

Bounds (checked by :func:`decode_body` before the signature, so a frame outside them is refused as
:class:`~tnode.errors.MalformedFrame` whoever signed it; every decode path raises only
:class:`~tnode.errors.WireError` subclasses, whatever the bytes):

=========  ==================================================================================
``v``      integer, must equal :data:`VERSION`
``k``      ``"req"``, ``"res"`` or ``"ann"``
``m``      string of at most :data:`MAX_NAME` (128) characters
``t``      string of at most :data:`MAX_NAME` (128) characters
``s``      exactly 64 lowercase hex characters (a 32-byte Ed25519 public key)
``r``      64 lowercase hex characters, or ``""`` (always ``""`` for ``"ann"``)
``n``      exactly :data:`NONCE_HEX` (32) lowercase hex characters, i.e. 16 bytes, as
           :func:`encode` makes them; anything else is refused before the replay memory sees it
``ts``     integer in ``[0, 2**63 - 1]``
``h``      exactly 64 lowercase hex characters
``bl``     integer in ``[0, frame size]``; ``pl`` likewise
``pd``     ``null`` or an object with exactly the keys ``dtype`` (one of :data:`DTYPES`) and
           ``shape`` (a list of at most :data:`MAX_DIMS` (8) integers, each in
           ``[0, MAX_ELEMENTS]``, whose product is at most :data:`MAX_ELEMENTS` (2**32) and
           matches ``pl``; a ``bytes`` payload has shape ``[pl]``)
``re``     ``""`` or a nonce (32 lowercase hex characters)
``c``      string of at most :data:`MAX_CODE` (64) characters
``sig``    128 lowercase hex characters (else :class:`~tnode.errors.BadSignature`), or ``""`` on
           a session-authenticated request (below)
=========  ==================================================================================

Session-authenticated requests: a ``"req"`` frame may leave ``sig`` empty when the transport it
travels on has already authenticated its sender, as libp2p's Noise handshake does (the connection's
peer id is the sender's hotkey). :meth:`Verifier.verify` accepts such a frame only when its caller
says so (``session_sender``, the hotkey the session authenticated) and ``s`` equals it; every other
check (receiver, freshness, body hash, replay) still runs. A non-empty signature is always checked,
and responses and announcements are always signed: a miner's signed answer is the evidence audits
and collusion detection rest on.

The whole header is at most :data:`MAX_HEADER` bytes. Booleans are never accepted where an
integer is expected. JSON integers beyond 64 bits decode as floats and are refused as the
wrong type.
"""

from __future__ import annotations

import os
import re
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import blake3
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

VERSION = 2
PREFIX = struct.Struct(">I")
DOMAIN = b"tnode/wire/1\n"
DEFAULT_MAX_FRAME = 16 * 1024 * 1024
MAX_HEADER = 64 * 1024
DTYPES = frozenset(
    {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool", "bytes"}
)
_HEADER_FIELDS = {"v", "k", "m", "t", "s", "r", "n", "ts", "h", "bl", "pl", "pd", "re", "c", "sig"}
MAX_NAME = 128
"""Longest modality/service (``m``) and task (``t``) name, in characters."""
MAX_CODE = 64
"""Longest error code (``c``), in characters."""
NONCE_HEX = 32
"""A nonce is exactly this many lowercase hex characters (16 random bytes)."""
MAX_DIMS = 8
"""Most dimensions a tensor payload may have."""
MAX_ELEMENTS = 2**32
"""Largest dimension, and largest product of the non-zero dimensions, of a tensor payload."""
MAX_TS = 2**63 - 1
_PD_KEYS = frozenset({"dtype", "shape"})
_is_hex64 = re.compile(r"[0-9a-f]{64}").fullmatch
_is_nonce = re.compile(r"[0-9a-f]{32}").fullmatch
_is_sig = re.compile(r"[0-9a-f]{128}").fullmatch
_is_hex = re.compile(r"[0-9a-f]*").fullmatch
_LE_DTYPES = {name: np.dtype(name).newbyteorder("<") for name in DTYPES if name != "bytes"}
_ITEMSIZE = {name: (1 if name == "bytes" else np.dtype(name).itemsize) for name in DTYPES}


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
    payload: bytes | memoryview  # a view into the received frame when that is immutable (no 1 MB copy)
    size: int


def body_hash(body: bytes, payload: bytes | memoryview) -> str:
    """BLAKE3-256 of body‖payload, hex (wire version 2; version 1 used blake2b-256, 4× slower per MB)."""
    h = blake3.blake3(body)
    if payload:
        h.update(payload)
    return h.hexdigest()


def signing_bytes(h: dict[str, Any]) -> bytes:
    """The exact bytes an envelope's signature covers."""
    return DOMAIN + orjson.dumps([h["k"], h["m"], h["t"], h["s"], h["r"], h["n"], h["ts"], h["h"], h["re"], h["c"]])


KINDS = ("req", "res", "ann")
"""Frame kinds: a request, its response, and a broadcast announcement (receiver empty)."""


def _payload_parts(payload: np.ndarray | bytes | None) -> tuple[bytes | memoryview, dict[str, Any] | None]:
    # Views, not copies: encode() hashes them and joins them into the frame, its one copy of the payload.
    if payload is None:
        return b"", None
    if isinstance(payload, bytes):
        return payload, {"dtype": "bytes", "shape": [len(payload)]}
    if isinstance(payload, bytearray | memoryview):
        view = memoryview(payload)
        view = view.cast("B") if view.c_contiguous else memoryview(view.tobytes())
        return view, {"dtype": "bytes", "shape": [len(view)]}
    if isinstance(payload, np.ndarray):
        dtype = payload.dtype.name
        if dtype not in DTYPES:
            raise TypeError(f"payload dtype {dtype} is not allowed on the wire (allowed: {sorted(DTYPES)})")
        arr = np.ascontiguousarray(payload, dtype=payload.dtype.newbyteorder("<"))
        return (arr.data.cast("B") if arr.size else b""), {"dtype": dtype, "shape": list(arr.shape)}
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
    sign: bool = True,
) -> bytes:
    """Sign and serialize one message into a complete frame (length prefix included).

    ``sign=False`` leaves the signature empty: only for a request on a session that authenticates
    its sender (see the module docstring)."""
    if not sign and kind != "req":
        raise ValueError("only requests may go unsigned (on a session-authenticated transport)")
    if nonce is not None and not (isinstance(nonce, str) and _is_nonce(nonce)):
        raise ValueError(f"nonce must be {NONCE_HEX} lowercase hex characters (16 bytes)")
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
    header["sig"] = key.sign(signing_bytes(header)).hex() if sign else ""
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


def _expect(header: dict[str, Any], key: str, kind: type) -> Any:
    # orjson builds exact str/int objects, so an exact type test suffices and refuses bool for int.
    value = header.get(key)
    if type(value) is not kind:
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
    _check_fields(header, kind)
    ts = _expect(header, "ts", int)
    if not 0 <= ts <= MAX_TS:
        raise MalformedFrame(f"header field 'ts' must be an integer in [0, {MAX_TS}]")
    bl = _expect(header, "bl", int)
    pl = _expect(header, "pl", int)
    if bl < 0 or pl < 0:
        raise MalformedFrame("negative body or payload length")
    if bl > size or pl > size:
        raise MalformedFrame(f"body or payload length exceeds the frame's {size} bytes")
    end = 4 + hlen + bl + pl
    if end > size:
        raise TruncatedFrame(f"frame ends before its body/payload ({size} of {end} bytes)")
    if end < size:
        raise MalformedFrame(f"{size - end} bytes after the payload")
    pd = header.get("pd")
    if pd is None:
        if pl:
            raise MalformedFrame("payload present without its 'pd' description")
    else:
        _check_pd(pd, pl)
    body = bytes(data[4 + hlen : 4 + hlen + bl])
    # A view of an immutable buffer cannot change under the caller; a mutable one is copied.
    payload = data[4 + hlen + bl : end] if data.readonly else bytes(data[4 + hlen + bl : end])
    return RawFrame(header=header, body=body, payload=payload, size=size + 4)


_STRING_FIELDS = ("m", "t", "s", "r", "n", "h", "re", "c")


def _lower_hex(text: str) -> bool:
    """True when ``text`` is lowercase hex (fast path; an all-digit string falls back to a regex)."""
    try:
        # fromhex skips whitespace and accepts A-F: the length and islower() tests rule both out.
        if len(bytes.fromhex(text)) * 2 == len(text) and text.encode().islower():
            return True
    except ValueError:
        return False
    return _is_hex(text) is not None


def _check_fields(header: dict[str, Any], kind: str) -> None:
    """The string fields' types, lengths and formats (see the table in the module docstring)."""
    get = header.get
    values: tuple[Any, ...] = (get("m"), get("t"), get("s"), get("r"), get("n"), get("h"), get("re"), get("c"))
    m, t, s, r, n, h, re_, c = values
    if not (type(m) is str and type(t) is str and type(s) is str and type(r) is str and type(n) is str
            and type(h) is str and type(re_) is str and type(c) is str):
        for key in _STRING_FIELDS:
            _expect(header, key, str)
    # The common case in one regex call over the hex fields; the slow path names the bad field.
    if (len(m) <= MAX_NAME and len(t) <= MAX_NAME and len(c) <= MAX_CODE and len(s) == 64 and len(n) == NONCE_HEX
            and len(h) == 64 and len(r) in ((0,) if kind == "ann" else (0, 64)) and len(re_) in (0, NONCE_HEX)
            and _lower_hex(s + r + n + h + re_)):
        return
    if len(m) > MAX_NAME or len(t) > MAX_NAME:
        raise MalformedFrame(f"header field 'm' or 't' is longer than {MAX_NAME} characters")
    if len(c) > MAX_CODE:
        raise MalformedFrame(f"header field 'c' is longer than {MAX_CODE} characters")
    if not _is_hex64(s):
        raise MalformedFrame("header field 's' must be 64 lowercase hex characters (an Ed25519 public key)")
    if kind == "ann":
        if r:
            raise MalformedFrame("an announcement ('ann') is addressed to nobody: its receiver must be empty")
    elif r and not _is_hex64(r):
        raise MalformedFrame("header field 'r' must be empty or 64 lowercase hex characters")
    if not _is_nonce(n):
        raise MalformedFrame(f"header field 'n' must be a nonce of exactly {NONCE_HEX} lowercase hex characters")
    if not _is_hex64(h):
        raise MalformedFrame("header field 'h' must be 64 lowercase hex characters (a blake2b-256 digest)")
    raise MalformedFrame(f"header field 're' must be empty or a nonce of {NONCE_HEX} lowercase hex characters")


def _check_pd(pd: Any, pl: int) -> tuple[str, list[int]]:
    """Validate a payload description against the payload length ``pl``; returns (dtype, shape)."""
    if type(pd) is not dict or len(pd) != 2 or pd.keys() != _PD_KEYS:
        raise MalformedFrame("header field 'pd' must be null or an object with exactly 'dtype' and 'shape'")
    dtype, shape = pd["dtype"], pd["shape"]
    if type(dtype) is not str or dtype not in DTYPES:
        raise MalformedFrame(f"payload dtype {str(dtype)[:32]!r} not allowed (allowed: {sorted(DTYPES)})")
    if not isinstance(shape, list) or len(shape) > MAX_DIMS:
        raise MalformedFrame(f"payload shape must be a list of at most {MAX_DIMS} dimensions")
    count = 1
    for d in shape:
        if type(d) is not int or not 0 <= d <= MAX_ELEMENTS:
            raise MalformedFrame(f"payload shape dimensions must be integers in [0, {MAX_ELEMENTS}]")
        if d:
            count *= d
            if count > MAX_ELEMENTS:
                raise MalformedFrame(f"payload shape has more than {MAX_ELEMENTS} elements")
    if 0 in shape:
        count = 0
    if dtype == "bytes":
        if shape != [pl]:
            raise MalformedFrame("bytes payload shape does not match its length")
    elif count * _ITEMSIZE[dtype] != pl:
        raise MalformedFrame(f"payload has {pl} bytes, shape {shape} of {dtype} needs {count * _ITEMSIZE[dtype]}")
    return dtype, shape


def _decode_payload(pd: dict[str, Any] | None, raw: bytes | memoryview) -> np.ndarray | bytes | None:
    if pd is None:
        if raw:
            raise MalformedFrame("payload bytes without a description")
        return None
    dtype, shape = _check_pd(pd, len(raw))
    if dtype == "bytes":
        return bytes(raw)  # callers get bytes; arrays below share the frame's buffer instead
    return np.frombuffer(raw, dtype=_LE_DTYPES[dtype]).reshape(shape)


DEFAULT_REPLAY_BYTES = 64 * 1024 * 1024
"""Default memory budget of a :class:`ReplayGuard` (about 300,000 nonces)."""
REPLAY_ENTRY_BYTES = 224
"""Memory one remembered nonce costs (48-byte key, timestamp and ordered-dict slot; measured with
tracemalloc on CPython 3.11, table growth averaged in)."""


def _replay_key(sender: str, nonce: str) -> bytes:
    """The fixed-size (48-byte) replay key of a 64-hex sender and a 32-hex nonce."""
    try:
        if len(sender) == 64 and len(nonce) == NONCE_HEX:
            key = bytes.fromhex(sender + nonce)
            if len(key) == 48:  # fromhex skips whitespace: a shorter key was not pure hex
                return key
    except (TypeError, ValueError):
        pass
    raise MalformedFrame(f"sender must be 64 and nonce {NONCE_HEX} hex characters")


@dataclass
class ReplayGuard:
    """Remembers (sender, nonce) pairs for the freshness window; bounded in bytes.

    A key is the 32-byte sender and the 16-byte nonce, so every entry costs the same
    (:data:`REPLAY_ENTRY_BYTES`); pairs that are not a 64-hex sender and a :data:`NONCE_HEX`-hex
    nonce are refused as :class:`~tnode.errors.MalformedFrame` and never stored. The guard holds
    at most ``max_bytes // REPLAY_ENTRY_BYTES`` pairs (and at most ``capacity``, when given).

    At the cap the oldest pairs are forgotten and the acceptance floor moves up to their
    timestamp: from then on a message at or below the floor is refused as
    :class:`~tnode.errors.StaleMessage`, so a forgotten nonce can never be replayed. Under a
    flood of fresh nonces this trades acceptance of slightly older (delayed) messages for
    bounded memory; replays are refused either way.
    """

    window_ms: int = 30_000
    max_bytes: int = DEFAULT_REPLAY_BYTES
    capacity: int | None = None
    _seen: OrderedDict[bytes, int] = field(default_factory=OrderedDict)
    floor_ms: int = 0

    def __post_init__(self) -> None:
        limit = self.max_bytes // REPLAY_ENTRY_BYTES
        if self.capacity is not None:
            limit = min(limit, self.capacity)
        if limit < 1:
            raise ValueError(f"replay memory of {self.max_bytes} bytes holds no nonce ({REPLAY_ENTRY_BYTES} bytes each)")
        self._limit = limit

    @property
    def limit(self) -> int:
        """Most (sender, nonce) pairs remembered at once."""
        return self._limit

    def check_and_record(self, sender: str, nonce: str, ts_ms: int, now_ms: int) -> None:
        key = _replay_key(sender, nonce)
        self._expire(now_ms)
        if ts_ms <= self.floor_ms:
            raise StaleMessage("message older than the replay memory (node under nonce pressure)")
        if key in self._seen:
            raise ReplayedMessage(f"nonce {nonce[:16]} from {sender[:16]} was already used")
        self._seen[key] = ts_ms
        while len(self._seen) > self._limit:
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

    @property
    def bytes_used(self) -> int:
        """Estimated memory held: remembered pairs × :data:`REPLAY_ENTRY_BYTES`."""
        return len(self._seen) * REPLAY_ENTRY_BYTES


@dataclass
class Verifier:
    """Authenticates frames addressed to ``me`` (hex hotkey).

    Checks, in order: structure, bounds and size (:func:`decode_frame`), receiver, signature,
    timestamp within ``window_ms``, body hash, nonce not seen before (the replay memory holds at
    most ``replay_max_bytes``; see :class:`ReplayGuard`), body JSON, payload. Only a message that
    passes all of them is returned.
    """

    me: str
    window_ms: int = 30_000
    max_frame: int = DEFAULT_MAX_FRAME
    replay: ReplayGuard | None = None
    replay_max_bytes: int = DEFAULT_REPLAY_BYTES

    def __post_init__(self) -> None:
        if self.replay is None:
            self.replay = ReplayGuard(window_ms=self.window_ms, max_bytes=self.replay_max_bytes)

    def verify_frame(self, data: bytes | bytearray | memoryview, *, expect_kind: str | None = None) -> Message:
        return self.verify(decode_frame(data, self.max_frame), expect_kind=expect_kind)

    def verify_body(self, data: bytes | bytearray | memoryview, *, expect_kind: str | None = None) -> Message:
        return self.verify(decode_body(data, self.max_frame), expect_kind=expect_kind)

    def verify(self, frame: RawFrame, *, expect_kind: str | None = None, now_ms: int | None = None,
               session_sender: str | None = None) -> Message:
        """The checked message, or the :class:`~tnode.errors.WireError` of the first check it fails.

        ``session_sender``: the hotkey the transport's session authenticated for this frame's
        connection; a request from exactly that sender may then come unsigned.
        """
        h = frame.header
        if expect_kind is not None and h["k"] != expect_kind:
            raise MalformedFrame(f"expected a {expect_kind!r} frame, got {h['k']!r}")
        if h["r"] != self.me:
            raise WrongReceiver(f"frame is addressed to {h['r'][:16]}…, not to this node")
        sig = h.get("sig")
        if sig == "" and session_sender is not None and h["k"] == "req" and h["s"] == session_sender:
            pass  # authenticated by the session (Noise): the connection's peer is the sender
        elif not isinstance(sig, str) or not _is_sig(sig):
            raise BadSignature("frame is unsigned or its signature is not 128 lowercase hex characters")
        # decode_body checked 's' is 64 lowercase hex, so both conversions succeed.
        elif not verify(bytes.fromhex(h["s"]), signing_bytes(h), bytes.fromhex(sig)):
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
