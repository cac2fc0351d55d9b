"""Crash safety: SIGKILL an authority while it accepts transactions; every acknowledged
transaction must be there after restart, and the hash chain must verify."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from chain_helpers import key
from tnode.config import load_table
from tnode.plugins.chain_local.config import LocalChainConfig
from tnode.plugins.chain_local.genesis import genesis_from_config
from tnode.plugins.chain_local.ledger import Ledger
from tnode.plugins.chain_local.tx import Transaction

SENDERS = [key(f"crash-{i}") for i in range(240)]
DEST = key("crash-dest").public_hex


def chain_table() -> dict[str, Any]:
    return {
        "type": "local",
        "block_time": 0.005,
        "genesis": {"accounts": [{"coldkey": k.public_hex, "balance": 1} for k in SENDERS]},
        "hyperparameters": {"tempo": 7},
    }


class Authority:
    """The ledger server in a child process, fed through stdin, acknowledging on stdout."""

    def __init__(self, spec: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tnode.plugins.chain_local.server", str(spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        self.acked: list[str] = []
        self.refused: list[dict[str, Any]] = []
        self.ready = threading.Event()
        self.genesis = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            doc = orjson.loads(line)
            if "ready" in doc:
                self.genesis = doc["ready"]
                self.ready.set()
            elif "ack" in doc:
                self.acked.append(doc["ack"])
            else:
                self.refused.append(doc)

    def send(self, tx: Transaction) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(orjson.dumps(tx.to_wire()) + b"\n")
        self.proc.stdin.flush()

    def wait_acks(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < count and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(self.acked) >= count, f"only {len(self.acked)} acks, refusals: {self.refused[:3]}"

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._reader.join(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=10)


@pytest.mark.slow
def test_acknowledged_transactions_survive_sigkill(tmp_path: Path) -> None:
    spec = tmp_path / "node.json"
    spec.write_bytes(orjson.dumps({"node": {"data_dir": str(tmp_path)}, "chain": chain_table()}))
    auth = Authority(spec)
    try:
        assert auth.ready.wait(30), "authority did not start"
        txs = [Transaction.create(k, chain=auth.genesis, nonce=0, call="transfer", args={"dest": DEST, "amount": 1})
               for k in SENDERS]
        for i, tx in enumerate(txs[:200]):  # a steady stream; the kill lands in the middle of it
            auth.send(tx)
            if i % 10 == 9:
                time.sleep(0.002)
            if i == 150:
                auth.wait_acks(60, 20)
                break
        auth.kill()
    finally:
        if auth.proc.poll() is None:
            auth.proc.kill()
            auth.proc.wait()
    acked = set(auth.acked)
    assert len(acked) >= 60

    cfg = load_table(LocalChainConfig, {k: v for k, v in chain_table().items() if k != "type"})
    ledger = Ledger(tmp_path / "chain.sqlite", genesis_from_config(cfg, 1))
    try:
        for digest in acked:
            assert ledger.transaction_status(bytes.fromhex(digest)) is not None, f"acknowledged tx {digest} lost"
        assert ledger.verify_chain() == ledger.head().number + 1
        head_before = ledger.head().number
    finally:
        ledger.close()

    # The authority restarts on the same ledger, seals what was pending and keeps accepting.
    again = Authority(spec)
    try:
        assert again.ready.wait(30)
        for tx in txs[200:210]:
            again.send(tx)
        again.wait_acks(10, 20)
        time.sleep(0.1)
    finally:
        again.stop()
    ledger = Ledger(tmp_path / "chain.sqlite", genesis_from_config(cfg, 1))
    try:
        assert ledger.head().number > head_before
        for digest in acked | set(again.acked):
            status = ledger.transaction_status(bytes.fromhex(digest))
            assert status is not None and status["block"] is not None
        assert ledger.verify_chain() == ledger.head().number + 1
        # Transactions committed but killed before their acknowledgement was printed are kept too.
        sealed = sum(ledger.block(n).tx_count for n in range(1, ledger.head().number + 1))  # type: ignore[union-attr]
        assert ledger.balance(DEST) == sealed >= len(acked | set(again.acked))
    finally:
        ledger.close()
