"""Through the real libp2p transport: waiting tasks execute by stake, and an unregistered flood is
refused before it takes a slot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from antispam_fakes import hotkey, key, plugins
from tnode.errors import TaskError
from tnode.node import Node

pytestmark = pytest.mark.anyio

WORK_MS = 150  # each task holds the only slot this long


def transport() -> dict[str, Any]:
    return {"type": "libp2p", "listen": ["/ip4/127.0.0.1/tcp/0"], "dht": False, "announce_interval": 0.0}


def server(tmp_path: Path) -> Node:
    doc = {
        "transport": transport(),
        "chain": {"type": "memory"},
        "modalities": {"echo": {"type": "echo", "delay_ms": WORK_MS}},
        "spam": {"reg": {"type": "registered_only"},
                 "prio": {"type": "stake_priority", "max_concurrent": 1, "max_queue": 8}},
    }
    node = Node.from_dict(doc, data_dir=tmp_path / "server", plugins=plugins("libp2p", "echo"))
    for name, stake in (("owner", 5.0), ("low", 1.0), ("mid", 50.0), ("high", 1000.0)):
        node.chain.add_neuron(hotkey(name), stake=stake)
    return node


def client(tmp_path: Path, name: str) -> Node:
    return Node.from_dict({"transport": transport()}, data_dir=tmp_path / name, hotkey=key(name),
                          plugins=plugins("libp2p", "echo"))


async def test_queued_tasks_execute_highest_stake_first(tmp_path) -> None:
    node = server(tmp_path)
    names = ("owner", "low", "mid", "high", "stranger")
    clients = {name: client(tmp_path, name) for name in names}
    finished: list[str] = []
    async with node.running():
        addr = node.transport.listen_addrs()[0]
        prio = node.component("spam_filter", "prio")
        async with clients["owner"].running(), clients["low"].running(), clients["mid"].running(), \
                clients["high"].running(), clients["stranger"].running():
            peers = {name: await c.transport.connect(addr) for name, c in clients.items()}

            async def ask(name: str) -> None:
                await clients[name].transport.request(peers[name], "echo", "echo", {"who": name}, timeout=10)
                finished.append(name)

            with anyio.fail_after(20):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(ask, "owner")
                    while prio.running < 1:
                        await anyio.sleep(0.002)
                    for i, name in enumerate(("low", "mid", "high")):  # enqueue strictly in this order
                        tg.start_soon(ask, name)
                        while prio.queued < i + 1:
                            await anyio.sleep(0.002)
                    # While the slot is busy, an unregistered sender is refused without queueing.
                    with pytest.raises(TaskError) as err:
                        await clients["stranger"].transport.request(peers["stranger"], "echo", "echo", {},
                                                                    timeout=10)
                    assert err.value.code == "unregistered"
                    assert prio.queued == 3
    assert finished == ["owner", "high", "mid", "low"]
    stats = prio.stats()
    assert stats["admitted_by"] == {"free_slot": 1, "granted_by_priority": 3}
    assert (stats["running"], stats["queued"]) == (0, 0)
    assert node.component("spam_filter", "reg").stats()["refused"] == {"not_registered": 1}
