"""Connection churn: inbound slots are given back when connections close, so a node accepts forever."""

from __future__ import annotations

import os

import multiaddr
import pytest
import trio
from libp2p.peer.id import ID
from libp2p_helpers import make_node
from tnode.keys import Keypair
from tnode.plugins.libp2p.host import build_host

pytestmark = pytest.mark.anyio

CYCLES = int(os.environ.get("TNODE_CHURN_CYCLES", "5200"))
CLIENTS = 48


def _task_count() -> int:
    """Every task alive in this trio run."""
    seen = 0
    stack = [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        seen += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return seen


async def _churn(target: multiaddr.Multiaddr, pid: ID, cycles: int, done: list[int]) -> None:
    """One client host connecting and disconnecting ``cycles`` times (a reused peer id)."""
    host = build_host(Keypair.generate(), max_connections=4, listen=[])
    network = host.get_network()
    async with host.run([]), trio.open_nursery() as closing:
        try:
            for _ in range(cycles):
                with trio.fail_after(10):
                    conn = await network.dial_addr(target, pid)
                # Closing waits ~200 ms for the muxer's goodbye: let it finish while the next dial starts.
                closing.start_soon(conn.close)
                done[0] += 1
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await host.close()


async def test_node_accepts_after_thousands_of_connect_close_cycles(tmp_path):
    # A small connection limit: py-libp2p's own handler would refuse everything after 64 connects.
    a = make_node(tmp_path, "a", dht=False, announce_interval=0, max_connections=64)
    async with a.running():
        addr = a.transport.listen_addrs()[0]
        target = multiaddr.Multiaddr(addr.split("/p2p/")[0])
        pid = ID.from_base58(a.peer_id)
        done = [0]
        # Warm-up, then the baseline of tasks with nothing connected.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_churn, target, pid, 20, done)
        await trio.sleep(0.5)
        tasks_before = _task_count()
        async with trio.open_nursery() as nursery:
            for _ in range(CLIENTS):
                nursery.start_soon(_churn, target, pid, CYCLES // CLIENTS, done)
        assert done[0] >= CYCLES - CLIENTS + 20
        with trio.fail_after(10):
            while a.transport.inbound.open:
                await trio.sleep(0.05)
        # Handler tasks end with their connections: nothing grows per cycle.
        assert _task_count() <= tasks_before + 20
        assert not a.transport.inbound.by_ip and not a.transport.inbound.by_peer
        # A fresh node still connects and is served.
        b = make_node(tmp_path, "b", dht=False, announce_interval=0)
        async with b.running():
            reply = await b.transport.request(addr, "echo", "echo", {"after": done[0]}, timeout=10)
            assert reply.body == {"after": done[0]}
