"""Filters run in configured order, as the transport runs them, and keep a staked sender served under a flood."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest
from antispam_fakes import hotkey, make_node, request
from tnode.errors import TaskError
from tnode.interfaces import InboundRequest
from tnode.node import Node

pytestmark = pytest.mark.anyio

VALIDATOR = hotkey("validator")


async def admit_all(node: Node, req: InboundRequest) -> list[Callable[[], None]]:
    """The transport's contract: every filter in order; on a refusal, release what earlier ones granted."""
    releases: list[Callable[[], None]] = []
    try:
        for flt in node.components_of("spam_filter").values():
            release = await flt.admit(req)
            if release is not None:
                releases.append(release)
    except BaseException:
        for release in reversed(releases):
            release()
        raise
    return releases


def flood_node(tmp_path) -> Node:
    node = make_node(tmp_path, {
        "size": {"type": "limits"},
        "reg": {"type": "registered_only"},
        "rate": {"type": "token_bucket", "rate": 1000.0, "burst": 1000.0},
        "prio": {"type": "stake_priority", "max_concurrent": 2, "max_queue": 4, "max_wait": 2.0},
    })
    node.chain.add_neuron(VALIDATOR, stake=100.0)
    for i in range(5):
        node.chain.add_neuron(hotkey(f"miner-{i}"), stake=0.0)
    return node


async def test_configured_order_is_kept(tmp_path) -> None:
    node = flood_node(tmp_path)
    assert list(node.components_of("spam_filter")) == ["size", "reg", "rate", "prio"]


async def test_unregistered_flood_never_reaches_the_queue(tmp_path) -> None:
    node = flood_node(tmp_path)
    async with node.running():
        filters = node.components_of("spam_filter")
        for i in range(200):
            with pytest.raises(TaskError) as err:
                await admit_all(node, request(hotkey(f"stranger-{i % 20}")))
            assert err.value.code == "unregistered"
        assert filters["prio"].stats()["admitted"] == 0
        assert filters["rate"].stats()["buckets"] == 0  # refused before a bucket was made
        releases = await admit_all(node, request(VALIDATOR))
        for release in releases:
            release()


async def test_staked_sender_is_served_while_registered_zero_stake_peers_saturate_the_node(tmp_path) -> None:
    node = flood_node(tmp_path)
    served: list[str] = []
    shed = 0
    async with node.running():
        prio = node.components_of("spam_filter")["prio"]

        async def client(sender: str, work: float) -> None:
            nonlocal shed
            try:
                releases = await admit_all(node, request(sender))
            except TaskError as exc:
                assert exc.code == "overloaded"
                shed += 1
                return
            try:
                served.append(sender)
                await anyio.sleep(work)
            finally:
                for release in releases:
                    release()

        async with anyio.create_task_group() as tg:
            for i in range(40):  # zero-stake peers: far more than slots + queue
                tg.start_soon(client, hotkey(f"miner-{i % 5}"), 0.02)
            with anyio.fail_after(2):
                while prio.queued < 4:
                    await anyio.sleep(0.001)
            tg.start_soon(client, VALIDATOR, 0.0)
    assert VALIDATOR in served
    # The validator overtook every zero-stake request still waiting when it arrived.
    assert served.index(VALIDATOR) <= 2 + 2
    assert shed > 0
    assert prio.stats()["running"] == 0
