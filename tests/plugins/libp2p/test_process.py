"""A node in a separate process (`tnode run`) answers a node in this process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio
from libp2p_helpers import make_node, port_is_free

pytestmark = pytest.mark.anyio


def _free_port() -> int:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


async def test_request_to_tnode_run_subprocess(tmp_path: Path):
    port = _free_port()
    (tmp_path / "node.toml").write_text(f"""
[node]
name = "remote"
data_dir = "data"
create_keys = true

[transport]
type = "libp2p"
listen = ["/ip4/127.0.0.1/tcp/{port}"]

[modalities.echo]
type = "echo"
""")
    tnode = Path(sys.executable).parent / "tnode"
    proc = subprocess.Popen([str(tnode), "run", "-c", str(tmp_path / "node.toml"), "--log-format", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ})
    try:
        # Wait for the hotkey file and the listening socket.
        deadline = time.monotonic() + 30
        while port_is_free(port):
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else "exited"
            assert time.monotonic() < deadline, "remote node did not start listening"
            await trio.sleep(0.1)
        from tnode.keys import read_keyfile_meta

        peer_id = read_keyfile_meta(tmp_path / "data" / "keys" / "hotkey.json")["peer_id"]
        local = make_node(tmp_path, "local")
        async with local.running():
            with trio.fail_after(20):
                while True:
                    try:
                        reply = await local.transport.request(f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id}", "echo",
                                                              "echo", {"from": "test"}, b"abc", timeout=5)
                        break
                    except Exception as exc:  # the remote may still be assembling
                        if getattr(exc, "code", "") != "starting":
                            raise
                        await trio.sleep(0.2)
            assert reply.body == {"from": "test"} and reply.payload == b"abc"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert port_is_free(port)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
