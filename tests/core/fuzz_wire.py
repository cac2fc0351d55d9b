"""Coverage-guided fuzz target for :mod:`tnode.wire` (atheris, i.e. libFuzzer for Python).

Run directly, with libFuzzer flags::

    .venv/bin/python tests/core/fuzz_wire.py -max_total_time=20

test_wire_structured_fuzz.py runs it with a fixed budget. The first input byte picks a mode:
raw bytes into the decoder; a fuzzer-written JSON header, signed validly; or a header whose
every field the fuzzer chooses (valid, integer, string, hex, bool, null, list, object), signed
validly with a matching body hash. Anything but a WireError out of the decoder is a crash.
"""

from __future__ import annotations

import struct
import sys
import time
from typing import Any

import atheris
import orjson

with atheris.instrument_imports(include=["tnode"]):
    from tnode import wire
    from tnode.errors import WireError
    from tnode.keys import Keypair

ALICE = Keypair.from_seed(b"a" * 32)
BOB = Keypair.from_seed(b"b" * 32)
NOW = int(time.time() * 1000)
VERIFIER = wire.Verifier(me=BOB.public_hex, window_ms=10**13)
DEFAULTS: dict[str, Any] = {"v": wire.VERSION, "k": "req", "m": "text", "t": "t", "s": ALICE.public_hex, "r": BOB.public_hex,
                            "ts": NOW, "re": "", "c": ""}
DTYPES = sorted(wire.DTYPES) + ["object", "float128", "<f4", ""]


def _value(fdp: atheris.FuzzedDataProvider, key: str) -> Any:
    choice = fdp.ConsumeIntInRange(0, 8)
    if choice == 0:
        return DEFAULTS.get(key, "")
    if choice == 1:
        return max(-(2**63), min(2**64 - 1, fdp.ConsumeInt(9)))
    if choice == 2:
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 200))
    if choice == 3:
        return "ab" * fdp.ConsumeIntInRange(0, 80)
    if choice == 4:
        return fdp.ConsumeBool()
    if choice == 5:
        return None
    if choice == 6:
        return fdp.ConsumeIntListInRange(fdp.ConsumeIntInRange(0, 4), 0, 2**64 - 1)
    if choice == 7:
        return {"x": fdp.ConsumeInt(2)}
    return fdp.ConsumeFloat()


def _pd(fdp: atheris.FuzzedDataProvider) -> Any:
    choice = fdp.ConsumeIntInRange(0, 3)
    if choice == 0:
        return None
    if choice == 1:
        return _value(fdp, "pd")
    shape: Any = [fdp.ConsumeIntInRange(0, 2**64 - 1) if fdp.ConsumeBool() else fdp.ConsumeIntInRange(0, 4)
                  for _ in range(fdp.ConsumeIntInRange(0, 70))]
    if fdp.ConsumeIntInRange(0, 9) == 0:
        shape = _value(fdp, "shape")
    pd: dict[str, Any] = {"dtype": DTYPES[fdp.ConsumeIntInRange(0, len(DTYPES) - 1)] if fdp.ConsumeBool()
                          else _value(fdp, "dtype"), "shape": shape}
    if choice == 3:
        pd[fdp.ConsumeUnicodeNoSurrogates(3)] = _value(fdp, "x")
    return pd


def _signed(header: dict[str, Any], body: bytes, payload: bytes) -> bytes:
    try:
        header["sig"] = ALICE.sign(wire.signing_bytes(header)).hex()
    except (KeyError, TypeError):
        header["sig"] = "00" * 64
    try:
        head = orjson.dumps(header)
    except TypeError:  # orjson.JSONEncodeError subclasses TypeError
        return b""
    return struct.pack(">II", 4 + len(head) + len(body) + len(payload), len(head)) + head + body + payload


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 2)
    if mode == 0:
        frame = fdp.ConsumeBytes(fdp.remaining_bytes())
    elif mode == 1:
        body = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64))
        payload = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64))
        try:
            header = orjson.loads(fdp.ConsumeBytes(fdp.remaining_bytes()))
        except orjson.JSONDecodeError:
            return
        if not isinstance(header, dict):
            return
        for key, value in DEFAULTS.items():
            header.setdefault(key, value)
        header.setdefault("n", "cd" * 16)
        header.setdefault("h", wire.body_hash(body, payload))
        header.setdefault("bl", len(body))
        header.setdefault("pl", len(payload))
        frame = _signed(header, body, payload)
    else:
        header = {key: _value(fdp, key) for key in DEFAULTS}
        header["n"] = fdp.ConsumeBytes(16).hex().ljust(32, "0") if fdp.ConsumeIntInRange(0, 7) else _value(fdp, "n")
        header["pd"] = _pd(fdp)
        body = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64)) if fdp.ConsumeBool() else b"{}"
        payload = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 256))
        header["h"] = wire.body_hash(body, payload) if fdp.ConsumeIntInRange(0, 7) else _value(fdp, "h")
        header["bl"] = len(body) if fdp.ConsumeIntInRange(0, 7) else _value(fdp, "bl")
        header["pl"] = len(payload) if fdp.ConsumeIntInRange(0, 7) else _value(fdp, "pl")
        frame = _signed(header, body, payload)
    try:
        wire.decode_frame(frame)
    except WireError:
        pass
    try:
        VERIFIER.verify_frame(frame)
    except WireError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
