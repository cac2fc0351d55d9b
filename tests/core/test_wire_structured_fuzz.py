"""Structured fuzzing of the decoder: hostile header *values*, validly signed, through the real Verifier.

Byte-level fuzzing (test_wire_fuzz.py) rarely builds a header whose JSON parses and whose fields
are individually odd, so it never met an unhashable dtype or a 65-dimension shape. These
strategies draw every header field from valid values, wrong types, huge and negative numbers,
nested containers, odd dtypes and shapes and long strings; the frame is then signed with a real
key over :func:`tnode.wire.signing_bytes` with a body hash that matches, so the checks behind the
signature are reached. The property: the decoder returns a Message or raises a WireError, nothing
else. A coverage-guided run (atheris, tests/core/fuzz_wire.py) follows, with a fixed budget.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st
from tnode import wire
from tnode.errors import WireError
from tnode.keys import Keypair

ALICE = Keypair.from_seed(b"a" * 32)
BOB = Keypair.from_seed(b"b" * 32)
# Examples per focused field: more in CI (env CI set), a quick pass on a developer machine.
EXAMPLES = 150 if os.environ.get("CI") else 40
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

EDGE_INTS = [-(2**63), -(2**31), -1, 0, 1, 2, 8, 9, 64, 65, 2**31 - 1, 2**32, 2**32 + 1, 2**53, 2**63 - 1, 2**63,
             2**64 - 1]
LENGTHS = [0, 1, 15, 16, 31, 32, 33, 63, 64, 65, 127, 128, 129, 1000, 32_000, 70_000]

ints = st.sampled_from(EDGE_INTS) | st.integers(-(2**63), 2**64 - 1)
long_strings = st.builds(lambda n, c: c * n, st.sampled_from(LENGTHS), st.sampled_from(["a", "0", "é", " ", "Z"]))
hexish = st.builds(lambda n, s: (s * n)[:n], st.sampled_from(LENGTHS),
                   st.text(alphabet="0123456789abcdefABCDEF x", min_size=1, max_size=4))
scalars = st.none() | st.booleans() | ints | st.floats() | st.text(max_size=16) | long_strings | hexish
nested = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                             max_size=4), max_leaves=8)
hostile = scalars | nested
# For string fields, mostly strings: wrong lengths, wrong alphabets, huge.
hostile_strings = long_strings | hexish | st.text(max_size=40) | hostile
STRING_FIELDS = frozenset({"k", "m", "t", "s", "r", "n", "re", "c"})

ODD_DTYPES = ["float128", "complex64", "object", "<f4", "f4", "str", "", "bytes ", "FLOAT32", "U8", "void"]
dtypes = st.sampled_from(sorted(wire.DTYPES)) | st.sampled_from(ODD_DTYPES) | st.lists(st.text(max_size=8), max_size=2) \
    | st.dictionaries(st.text(max_size=5), scalars, max_size=2) | hostile
dims = st.sampled_from([0, 1, 2, 3, 4, 2**31, 2**32, 2**32 + 1, 2**63 - 1, 2**63, 2**64 - 1, -1]) | st.booleans() \
    | st.floats(0, 10) | st.text(max_size=2) | st.lists(st.integers(0, 3), max_size=2) | st.none()
shapes = st.lists(st.integers(0, 4), max_size=4) | st.lists(dims, max_size=9) \
    | st.builds(lambda n, d: [d] * n, st.sampled_from([8, 9, 33, 64, 65, 200]), st.sampled_from([0, 1, 2])) | hostile
pd_objects = st.fixed_dictionaries({"dtype": dtypes, "shape": shapes})
pds = st.one_of(pd_objects, pd_objects, st.fixed_dictionaries({"dtype": dtypes, "shape": shapes}, optional={"extra": hostile}),
                st.dictionaries(st.sampled_from(["dtype", "shape", "x"]), hostile, max_size=3), st.none(), hostile)

VALID: dict[str, st.SearchStrategy[Any]] = {
    "v": st.just(wire.VERSION),
    "k": st.sampled_from(wire.KINDS),
    "m": st.sampled_from(["text", "chain", "_announce", ""]),
    "t": st.sampled_from(["next_token", "announce", ""]),
    "s": st.just(ALICE.public_hex),
    "r": st.just(BOB.public_hex),
    "n": st.binary(min_size=16, max_size=16).map(bytes.hex),
    "ts": st.just(-1),  # replaced by "now" when drawn: keeps the freshness check passable
    "re": st.sampled_from(["", "ab" * 16]),
    "c": st.sampled_from(["", "overloaded", "invalid_request"]),
}


def payload_for(pd: Any, raw: bytes) -> bytes:
    """Bytes that match a plausible ``pd`` when its shape is small, none without ``pd``, else the drawn bytes."""
    if pd is None:
        return b""
    if isinstance(pd, dict) and isinstance(pd.get("shape"), list) and isinstance(pd.get("dtype"), str) \
            and pd["dtype"] in wire.DTYPES:
        shape = pd["shape"]
        if all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 4 for d in shape):
            size = 1 if pd["dtype"] in ("bytes", "bool") else np.dtype(pd["dtype"]).itemsize
            count = 1
            for d in shape:
                count *= d
            if count * size <= 4096:
                return b"\x01" * (count * size)
    return raw


VALID_PDS = st.none() | st.fixed_dictionaries({"dtype": st.sampled_from(sorted(wire.DTYPES)),
                                              "shape": st.lists(st.integers(0, 4), max_size=4)})
# Fields beyond VALID that can be made hostile; "+" adds an unknown field, "-" drops a VALID one.
TARGETS = sorted(VALID) + ["pd", "h", "bl", "pl", "sig", "body", "+", "-"]


@st.composite
def frames(draw: st.DrawFn, focus: str | None = None) -> bytes:
    """A frame with a few fields drawn hostile (always ``focus``), the rest valid, signed by ALICE.

    Keeping most fields valid lets each hostile value reach the check behind the ones before it.
    """
    bad = draw(st.sets(st.sampled_from(TARGETS), max_size=2 if focus else 4)) | ({focus} if focus else set())
    header: dict[str, Any] = {}
    for key, valid in VALID.items():
        if key in bad:
            value = draw(hostile_strings if key in STRING_FIELDS else ints | hostile)
        else:
            value = draw(valid)
        header[key] = int(time.time() * 1000) if (key == "ts" and value == -1) else value
    if "r" not in bad:  # the valid receiver for the kind: nobody for an announcement, else BOB
        header["r"] = "" if header["k"] == "ann" else BOB.public_hex
    if "-" in bad:
        del header[draw(st.sampled_from(sorted(VALID)))]
    body_value = draw(hostile) if "body" in bad else {"args": draw(scalars)}
    try:
        body = orjson.dumps(body_value)
    except orjson.JSONEncodeError:
        body = b"{}"
    if "body" in bad:
        body = draw(st.sampled_from([body, b"", b"{", b"[]", b"\xff"]))
    pd = draw(pds if "pd" in bad else VALID_PDS)
    payload = payload_for(pd, draw(st.binary(max_size=32)))
    if "pl" in bad and draw(st.booleans()):
        payload = draw(st.binary(max_size=32))
    header["pd"] = pd
    header["h"] = draw(hexish | hostile) if "h" in bad else wire.body_hash(body, payload)
    header["bl"] = draw(ints | hostile) if "bl" in bad else len(body)
    header["pl"] = draw(ints | hostile) if "pl" in bad else len(payload)
    if "+" in bad:
        header[draw(st.text(min_size=1, max_size=4))] = draw(hostile)
    try:
        sig = ALICE.sign(wire.signing_bytes(header)).hex()
    except (KeyError, TypeError, orjson.JSONEncodeError):
        sig = "00" * 64  # a header signing_bytes cannot even serialise: the verifier must still refuse it
    header["sig"] = draw(hexish | hostile) if "sig" in bad else sig
    try:
        head = orjson.dumps(header)
    except orjson.JSONEncodeError:
        head = b"{}"
    size = 4 + len(head) + len(body) + len(payload)
    return struct.pack(">II", size, len(head)) + head + body + payload


def accepted(data: bytes) -> wire.Message | None:
    """The property itself: a Message, or ``None`` after a WireError; anything else propagates."""
    me = BOB.public_hex
    try:
        head = wire.decode_frame(data).header
        if head["k"] == "ann":
            me = ""
    except WireError:
        pass
    try:
        return wire.Verifier(me=me, window_ms=60_000).verify_frame(data)
    except WireError:
        return None


@pytest.mark.parametrize("focus", TARGETS)
def test_validly_signed_frames_with_a_hostile_field_only_raise_wire_errors(focus: str) -> None:
    # The payload description has the most structure (dtype × shape × payload), so more examples.
    @settings(SETTINGS, max_examples=EXAMPLES * (4 if focus == "pd" else 1))
    @given(frames(focus))
    def check(data: bytes) -> None:
        check_property(data)

    check()


@SETTINGS
@given(frames())
def test_validly_signed_hostile_frames_only_raise_wire_errors(data: bytes) -> None:
    check_property(data)


def check_property(data: bytes) -> None:
    msg = accepted(data)
    if msg is not None:  # what passed must be inside the documented bounds
        assert len(msg.nonce) == wire.NONCE_HEX and len(msg.sender) == 64
        assert len(msg.modality) <= wire.MAX_NAME and len(msg.task) <= wire.MAX_NAME
        assert isinstance(msg.body, dict)
        if isinstance(msg.payload, np.ndarray):
            assert msg.payload.ndim <= wire.MAX_DIMS


@pytest.mark.parametrize("with_payload", [False, True])
def test_the_strategy_also_builds_frames_the_verifier_accepts(with_payload: bool) -> None:
    # Without accepted examples the property above would only exercise refusals.
    found = find(frames(), lambda d: (m := accepted(d)) is not None and (m.payload is not None) == with_payload,
                 settings=settings(max_examples=2000, deadline=None, database=None,
                                   suppress_health_check=list(HealthCheck)))
    assert accepted(found) is not None


# --------------------------------------------------------------------------- coverage-guided
HARNESS = Path(__file__).with_name("fuzz_wire.py")


def test_coverage_guided_fuzzing_of_the_decoder_finds_no_crash(tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    seconds = 15 if os.environ.get("CI") else 8
    proc = subprocess.run(
        [sys.executable, str(HARNESS), f"-max_total_time={seconds}", "-runs=2000000", "-max_len=4096",
         f"-artifact_prefix={tmp_path}/", "-print_final_stats=1"],
        capture_output=True, text=True, timeout=seconds + 60, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "stat::number_of_executed_units" in proc.stderr
