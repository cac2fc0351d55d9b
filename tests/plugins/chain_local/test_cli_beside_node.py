"""Operator commands run beside `tnode run` of the same node.toml (a real process on loopback)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from tnode.keys import Keystore

TNODE = [str(Path(sys.executable).parent / "tnode")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"tnode run exited with {proc.returncode}: {proc.stderr.read().decode() if proc.stderr else ''}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"tnode run did not listen on {port} within {timeout} s")


@pytest.fixture
def running_node(tmp_path: Path) -> Iterator[Path]:
    store = Keystore(tmp_path / "data")
    store.new("hotkey", role="hotkey")
    cold = store.new("coldkey", role="coldkey")
    port = free_port()
    path = tmp_path / "node.toml"
    path.write_text(f"""
[node]
data_dir = "data"

[log]
level = "warning"

[transport]
type = "libp2p"
listen = ["/ip4/127.0.0.1/tcp/{port}"]

[chain]
type = "local"
block_time = 0.1

[[chain.genesis.accounts]]
coldkey = "{cold.public_hex}"
balance = 10
""")
    env = {**os.environ, "TNODE_DISABLE_PLUGIN_AUTOLOAD": "1"}
    proc = subprocess.Popen([*TNODE, "run", "-c", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env, cwd=tmp_path)
    try:
        wait_listening(port, proc)
        yield path
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def tnode(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TNODE_DISABLE_PLUGIN_AUTOLOAD": "1"}
    return subprocess.run([*TNODE, *args], capture_output=True, text=True, timeout=60, env=env, cwd=cwd)


def test_read_commands_work_while_the_node_runs(running_node: Path) -> None:
    cfg, cwd = str(running_node), running_node.parent
    balance = tnode("wallet", "balance", "-c", cfg, "--json", cwd=cwd)
    assert balance.returncode == 0, balance.stderr
    assert orjson.loads(balance.stdout)["balance"] == 10 * 10**9
    info = tnode("chain", "info", "-c", cfg, cwd=cwd)
    assert info.returncode == 0, info.stderr
    assert "already in use" not in info.stderr
    mg = tnode("metagraph", "-c", cfg, "--json", cwd=cwd)
    assert mg.returncode == 0, mg.stderr
    assert orjson.loads(mg.stdout)["block"] >= 0
