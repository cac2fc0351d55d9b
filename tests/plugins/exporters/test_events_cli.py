"""``tnode events`` subscribes to a running node's feed and prints JSON lines."""

from __future__ import annotations

import subprocess
import sys

import anyio
import orjson
import pytest
from tnode.events import BlockProduced
from tnode.node import Node

pytestmark = pytest.mark.anyio

TNODE = [sys.executable, "-c", "from tnode.cli import main; main()"]


async def test_tnode_events_prints_json_lines_of_the_chosen_topic(tmp_path) -> None:
    doc = {"exporters": {"feed": {"type": "zmq", "bind": "tcp://127.0.0.1:*"}}}
    node = Node.from_dict(doc, data_dir=tmp_path / "node")
    async with node.running():
        endpoint = node.component("exporter", "feed").endpoint
        proc = subprocess.Popen([*TNODE, "events", "--connect", endpoint, "--topic", "BlockProduced",
                                 "--count", "5", "--seconds", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            with anyio.fail_after(60):
                number = 0
                while proc.poll() is None:
                    await node.bus.publish(BlockProduced(number, "00" * 32, 1.0))
                    number += 1
                    await anyio.sleep(0.02)
            out, err = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    assert proc.returncode == 0, err.decode()
    lines = [orjson.loads(line) for line in out.splitlines()]
    assert len(lines) == 5
    assert all(line["topic"] == "BlockProduced" for line in lines)
    seqs = [line["seq"] for line in lines]
    assert seqs == list(range(seqs[0], seqs[0] + 5))
    assert [line["event"]["number"] for line in lines] == seqs  # one event per block, numbered like the feed
    assert b"gap" not in err
