"""Byte formats: canonical JSON, transaction signing bytes and hash, Merkle root, block hash."""

from __future__ import annotations

import hashlib
import struct

import pytest
from chain_helpers import key
from tnode.errors import ChainError
from tnode.plugins.chain_local.codec import ZERO_HASH, BlockHeader, canonical_json, merkle_root
from tnode.plugins.chain_local.tx import Transaction


def b2(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


def test_canonical_json_sorts_keys_and_refuses_floats() -> None:
    assert canonical_json({"b": [1, {"d": 1, "c": True}], "a": "x"}) == b'{"a":"x","b":[1,{"c":true,"d":1}]}'
    with pytest.raises(ValueError):
        canonical_json({"w": 0.5})
    with pytest.raises(ValueError):
        canonical_json({"n": 2**64})


def test_transaction_signing_bytes_and_hash_follow_the_spec() -> None:
    k = key("codec")
    tx = Transaction.create(k, chain="ab" * 32, nonce=7, call="transfer", args={"dest": "cd" * 32, "amount": 5})
    expected = (b"tnode-tx-v1\n" + b'{"args":{"amount":5,"dest":"' + b"cd" * 32 + b'"},"call":"transfer","chain":"'
                + b"ab" * 32 + b'","nonce":7,"signer":"' + k.public_hex.encode() + b'"}')
    assert tx.signing_bytes() == expected
    assert tx.hash == b2(expected)
    assert tx.signature_valid()
    assert Transaction.from_wire(tx.to_wire()) == tx


@pytest.mark.parametrize(("mutate", "code"), [
    (lambda d: d.pop("nonce"), "malformed_tx"),
    (lambda d: d.update(signer="xyz"), "malformed_tx"),
    (lambda d: d.update(nonce=-1), "malformed_tx"),
    (lambda d: d.update(args={"w": 0.5}), "malformed_tx"),
    (lambda d: d.update(signature="00"), "malformed_tx"),
    (lambda d: d.update(args={"blob": "x" * 70000}), "tx_too_large"),
])
def test_from_wire_refuses_malformed_documents(mutate, code) -> None:
    doc = Transaction.create(key("codec"), chain="ab" * 32, nonce=0, call="transfer", args={}).to_wire()
    mutate(doc)
    with pytest.raises(ChainError) as err:
        Transaction.from_wire(doc)
    assert err.value.code == code


def test_merkle_root() -> None:
    a, b, c = b"a" * 32, b"b" * 32, b"c" * 32
    leaf = lambda x: b2(b"\x00" + x)  # noqa: E731
    node = lambda x, y: b2(b"\x01" + x + y)  # noqa: E731
    assert merkle_root([]) == ZERO_HASH
    assert merkle_root([a]) == leaf(a)
    assert merkle_root([a, b]) == node(leaf(a), leaf(b))
    assert merkle_root([a, b, c]) == node(node(leaf(a), leaf(b)), node(leaf(c), leaf(c)))


def test_block_hash_follows_the_spec() -> None:
    h = BlockHeader.make(3, b"p" * 32, 1234, b"r" * 32, 2)
    raw = b"tnode-block-v1\n" + struct.pack(">Q", 3) + b"p" * 32 + struct.pack(">Q", 1234) + b"r" * 32 + struct.pack(">I", 2)
    assert h.hash == b2(raw) and h.is_consistent()
    assert BlockHeader.from_wire(h.to_wire()) == h
