"""`tnode status` against a running authority node over real libp2p on 127.0.0.1."""

from __future__ import annotations

import socket

import anyio
import pytest
from tnode.keys import Keypair, Keystore
from tnode.node import Node
from tnode.plugins.validator.devnet.plan import to_toml
from tnode.plugins.validator.remote import NodeTarget, read_status
from typer.testing import CliRunner

pytestmark = pytest.mark.anyio


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def authority_config(tmp_path, port: int) -> tuple[dict, Keypair]:
    store = Keystore(tmp_path / "data")
    hot, cold = store.new("hotkey", role="hotkey"), store.new("coldkey", role="coldkey")
    doc = {
        "node": {"name": "auth", "data_dir": "./data"},
        "transport": {"type": "libp2p", "listen": [f"/ip4/127.0.0.1/tcp/{port}"], "announce_interval": 0.0,
                      "dht": False},
        "chain": {"type": "local", "block_time": 0.1, "genesis": {"accounts": [
            {"coldkey": cold.public_hex, "hotkey": hot.public_hex, "stake": 5.0}]}},
    }
    (tmp_path / "node.toml").write_text(to_toml(doc))
    return doc, hot


@pytest.mark.slow
async def test_status_reads_the_nodes_standing_from_its_chain(tmp_path) -> None:
    port = _free_port()
    doc, hot = authority_config(tmp_path, port)
    node = Node.from_file(tmp_path / "node.toml")
    target = NodeTarget.from_config(tmp_path / "node.toml")
    assert target.authority == f"/ip4/127.0.0.1/tcp/{port}/p2p/{hot.peer_id}"
    async with node.running():
        with anyio.fail_after(30):
            status = await read_status(target, timeout=20)
    assert status["registered"] and status["name"] == "auth"
    assert status["neuron"]["uid"] == 0 and status["neuron"]["stake"] == pytest.approx(5.0)
    assert status["hotkey"] == hot.public_hex


def test_status_of_a_node_that_is_not_running_fails_cleanly(tmp_path) -> None:
    from tnode.cli import build_app

    authority_config(tmp_path, _free_port())
    result = CliRunner().invoke(build_app(), ["status", "-c", str(tmp_path / "node.toml"), "--timeout", "2"])
    assert result.exit_code == 1
    assert "no answer from the chain" in result.output or "unreachable" in result.output
