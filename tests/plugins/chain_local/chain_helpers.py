"""Shared helpers for the local-chain tests: deterministic keys and a synchronous ledger harness."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tnode.config import load_table
from tnode.keys import Keypair
from tnode.plugins.chain_local import pow as pow_
from tnode.plugins.chain_local.config import LocalChainConfig
from tnode.plugins.chain_local.genesis import genesis_from_config
from tnode.plugins.chain_local.ledger import Ledger
from tnode.plugins.chain_local.tx import Transaction


def key(name: str) -> Keypair:
    """A deterministic test key."""
    return Keypair.from_seed(name.encode().ljust(32, b"\0")[:32])


def find_nonce(block_hash: bytes, hotkey: bytes, difficulty: int, start: int = 0) -> int:
    """Smallest nonce ≥ ``start`` whose seal meets ``difficulty`` (tests keep difficulty tiny)."""
    nonce = start
    while not pow_.verify(block_hash, hotkey, nonce, difficulty):
        nonce += 1
    return nonce


class Harness:
    """A ledger plus helpers to sign and submit like a client would."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def tx(self, signer: Keypair, call: str, tx_nonce: int | None = None, **args: Any) -> Transaction:
        if tx_nonce is None:
            tx_nonce = self.ledger.nonce(signer.public_hex)
        return Transaction.create(signer, chain=self.ledger.genesis_hash, nonce=tx_nonce, call=call, args=args)

    def submit(self, signer: Keypair, call: str, **args: Any) -> dict[str, Any]:
        return self.ledger.submit(self.tx(signer, call, **args))

    def blocks(self, count: int) -> None:
        for _ in range(count):
            self.ledger.produce_block()

    def seal(self, hotkey: Keypair, block: int | None = None) -> tuple[int, int]:
        """(block, nonce) of a valid seal for ``hotkey`` over ``block`` (default: the head)."""
        header = self.ledger.head() if block is None else self.ledger.block(block)
        assert header is not None
        return header.number, find_nonce(header.hash, hotkey.public_bytes, self.ledger.difficulty())

    def register(self, hotkey: Keypair, coldkey: Keypair) -> int:
        block, nonce = self.seal(hotkey)
        return int(self.submit(hotkey, "register", coldkey=coldkey.public_hex, block=block, nonce=nonce)["uid"])

    def uid(self, hotkey: Keypair) -> int | None:
        nr = self.ledger.metagraph().by_hotkey(hotkey.public_hex)
        return None if nr is None else nr.uid


HARD_EASY = {"difficulty": 16, "min_difficulty": 1, "max_difficulty": 1 << 40}


def chain_config(accounts: list[dict[str, Any]] | None = None, **hyper: Any) -> LocalChainConfig:
    hp = {**HARD_EASY, "max_registrations_per_block": 64, "max_registrations_per_interval": 1024,
          "weights_rate_limit": 0, "immunity_period": 0, **hyper}
    return load_table(LocalChainConfig, {"genesis": {"accounts": accounts or []}, "hyperparameters": hp})


@pytest.fixture
def make_chain(tmp_path: Path) -> Callable[..., Harness]:
    """``make_chain(accounts=[...], **hyperparameters)`` → a :class:`Harness` on a fresh ledger."""
    opened: list[Ledger] = []

    def factory(accounts: list[dict[str, Any]] | None = None, *, name: str = "chain.sqlite", **hyper: Any) -> Harness:
        ledger = Ledger(tmp_path / name, genesis_from_config(chain_config(accounts, **hyper), 1))
        opened.append(ledger)
        return Harness(ledger)

    yield factory
    for ledger in opened:
        ledger.close()
