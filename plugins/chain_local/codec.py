"""Byte-level formats of the ledger: the hash function, canonical JSON, block headers, tx roots.

Every hash is BLAKE2b with a 32-byte digest. Canonical JSON is orjson with sorted keys and no
whitespace over values restricted to str, int, bool, None, lists and string-keyed maps (floats are
refused: their text form is not canonical). docs/chain.md describes these formats byte by byte.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from tnode.errors import ChainError

TOKEN = 10**9  # base units per token
HASH_LEN = 32
ZERO_HASH = bytes(HASH_LEN)
BLOCK_DOMAIN = b"tnode-block-v1\n"
U64_MAX = 2**64 - 1


def h256(*parts: bytes) -> bytes:
    """BLAKE2b-256 of the concatenation of ``parts``."""
    hasher = hashlib.blake2b(digest_size=HASH_LEN)
    for part in parts:
        hasher.update(part)
    return hasher.digest()


def check_canonical(value: Any, path: str = "args") -> None:
    """Raise ``ValueError`` unless ``value`` is made only of canonical-JSON types."""
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        if not -(2**63) <= value <= U64_MAX:
            raise ValueError(f"{path}: integer out of the 64-bit range")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_canonical(item, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{path}: map keys must be strings")
            check_canonical(item, f"{path}.{key}")
        return
    raise ValueError(f"{path}: {type(value).__name__} is not allowed in a transaction (use integers)")


def canonical_json(value: Any) -> bytes:
    """Canonical bytes of ``value`` (sorted keys, no whitespace, UTF-8)."""
    check_canonical(value, "value")
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """Binary Merkle root: leaf = H(0x00‖x), node = H(0x01‖left‖right), an odd last node is paired
    with itself; the root of no leaves is 32 zero bytes."""
    if not leaves:
        return ZERO_HASH
    level = [h256(b"\x00", leaf) for leaf in leaves]
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        level = [h256(b"\x01", level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


@dataclass(frozen=True, slots=True)
class BlockHeader:
    """A sealed block. ``hash`` = H(BLOCK_DOMAIN ‖ number u64 BE ‖ prev_hash ‖ timestamp_ms u64 BE ‖
    tx_root ‖ tx_count u32 BE)."""

    number: int
    prev_hash: bytes
    timestamp_ms: int
    tx_root: bytes
    tx_count: int
    hash: bytes

    @staticmethod
    def compute_hash(number: int, prev_hash: bytes, timestamp_ms: int, tx_root: bytes, tx_count: int) -> bytes:
        return h256(
            BLOCK_DOMAIN,
            struct.pack(">Q", number),
            prev_hash,
            struct.pack(">Q", timestamp_ms),
            tx_root,
            struct.pack(">I", tx_count),
        )

    @classmethod
    def make(cls, number: int, prev_hash: bytes, timestamp_ms: int, tx_root: bytes, tx_count: int) -> BlockHeader:
        return cls(number, prev_hash, timestamp_ms, tx_root, tx_count,
                   cls.compute_hash(number, prev_hash, timestamp_ms, tx_root, tx_count))

    def is_consistent(self) -> bool:
        return self.hash == self.compute_hash(self.number, self.prev_hash, self.timestamp_ms, self.tx_root,
                                              self.tx_count)

    def to_wire(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "hash": self.hash.hex(),
            "prev_hash": self.prev_hash.hex(),
            "timestamp_ms": self.timestamp_ms,
            "tx_root": self.tx_root.hex(),
            "tx_count": self.tx_count,
        }

    @classmethod
    def from_wire(cls, doc: dict[str, Any]) -> BlockHeader:
        return cls(int(doc["number"]), bytes.fromhex(doc["prev_hash"]), int(doc["timestamp_ms"]),
                   bytes.fromhex(doc["tx_root"]), int(doc["tx_count"]), bytes.fromhex(doc["hash"]))


def tokens_to_units(tokens: float) -> int:
    """Tokens (node.toml) → integer base units, rounded to the nearest unit."""
    return int(round(tokens * TOKEN))


def is_public_key_hex(value: Any) -> bool:
    """True for 64 lowercase hex characters (an Ed25519 public key as the chain spells it)."""
    if not isinstance(value, str) or len(value) != 64:
        return False
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return value == value.lower()


def public_key_field(fields: dict[str, Any], name: str) -> str:
    """``fields[name]`` as a public key hex string; ``ChainError("invalid_args")`` when it is not one."""
    value = fields.get(name)
    if not is_public_key_hex(value):
        raise ChainError("invalid_args", f"{name} must be a 64-character lowercase hex public key")
    return str(value)
