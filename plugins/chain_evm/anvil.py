"""Start and stop a local anvil node (Foundry's EVM node from npm) on a free loopback port.

Used by the tests, the bench and ``tnode devnet --chain evm``. The binary is looked up in
``$TNODE_ANVIL``, then in the npm install next to the contract
(``contract/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil``, see ``.ci/install``), then on
``PATH``. Gas is free (``--gas-price 0 --base-fee 0``) so balances move by exactly the amounts sent.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
from tnode.errors import ChainError

DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
"""Anvil's first pre-funded development account (public knowledge: never use it on a real network)."""

_HERE = Path(__file__).resolve().parent


def anvil_binary() -> str:
    """Path of the anvil binary, or a ChainError saying how to install it."""
    env = os.environ.get("TNODE_ANVIL")
    candidates = [env] if env else []
    candidates.append(str(_HERE / "contract/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"))
    found = shutil.which("anvil")
    if found:
        candidates.append(found)
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return c
    raise ChainError("anvil_missing", "anvil not found: run .ci/install (npm ci in plugins/chain_evm/contract) "
                                      "or set TNODE_ANVIL")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Anvil:
    """One anvil process; ``start()`` waits until it answers JSON-RPC, ``stop()`` ends it."""

    def __init__(self, *, port: int | None = None, block_time: float | None = None, chain_id: int = 31337,
                 state: Path | None = None, balance: int | None = None) -> None:
        self.port = port or free_port()
        self.balance = balance  # ether of each development account (anvil's default: 10000)
        self.block_time = block_time
        self.state = state  # keep the chain in this file (loaded at start, written every second and on exit)
        self.chain_id = chain_id
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> Anvil:
        args = [anvil_binary(), "--host", "127.0.0.1", "--port", str(self.port), "--chain-id", str(self.chain_id),
                "--gas-price", "0", "--base-fee", "0", "--no-priority-fee", "--silent", "--accounts", "2", "--gas-limit", "300000000"]
        if self.block_time:
            args += ["--block-time", str(self.block_time)]
        if self.balance is not None:
            args += ["--balance", str(self.balance)]
        if self.state is not None:
            args += ["--state", str(self.state), "--state-interval", "1"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise ChainError("anvil_failed", f"anvil exited with {self.proc.returncode}: {err[-500:]}")
            try:
                r = httpx.post(self.url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
                               timeout=1.0)
                if r.status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise ChainError("anvil_failed", f"anvil did not answer on {self.url} within {timeout} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()

    def __enter__(self) -> Anvil:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
