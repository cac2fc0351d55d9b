"""Routes over real libp2p: modalities by wire name, services under ``svc:``, one refusal set."""

from __future__ import annotations

import anyio
import pytest
from libp2p_helpers import make_node
from tnode import dispatch
from tnode.errors import TaskError
from tnode.interfaces import TaskResult
from tnode.plugins.libp2p.tarpit import STRIKE_CODES

pytestmark = pytest.mark.anyio


def test_the_tarpit_strikes_the_cores_abuse_codes() -> None:
    assert STRIKE_CODES == dispatch.STRIKE_CODES


async def test_services_are_routed_apart_from_modalities(tmp_path) -> None:
    a = make_node(tmp_path, "a", dht=False, announce_interval=0.0)
    b = make_node(tmp_path, "b", dht=False, announce_interval=0.0,
                  extra={"modalities": {"main": {"type": "echo", "serve_as": "mirror"}}})

    async def probe(call: dispatch.ServiceCall) -> TaskResult:
        return TaskResult({"pong": call.task, "sender": call.sender, "entry": call.entry})

    async with a.running(), b.running():
        undo = dispatch.of(b).serve_service("probe", probe)
        peer = await a.transport.connect(b.transport.listen_addrs()[0])
        with anyio.fail_after(10):
            reply = await a.transport.request(peer, dispatch.service_route("probe"), "ping", {}, timeout=5)
            assert reply.body == {"pong": "ping", "sender": a.hotkey.public_hex, "entry": "libp2p"}
            assert (await a.transport.request(peer, "mirror", "echo", {"x": 1}, timeout=5)).body == {"x": 1}
            refused = {}
            for route in ("main", "probe", "svc:nothing", "chain"):
                with pytest.raises(TaskError) as err:
                    await a.transport.request(peer, route, "echo", {}, timeout=5)
                refused[route] = err.value.code
        undo()
    # A service is not a modality, and a table name is not a wire name.
    assert refused == {"main": "unknown_modality", "probe": "unknown_modality", "svc:nothing": "unknown_service",
                       "chain": "unknown_modality"}


async def test_announcements_list_wire_names_and_no_services(tmp_path) -> None:
    a = make_node(tmp_path, "a", dht=False, gossip=False, announce_interval=30.0)
    b = make_node(tmp_path, "b", dht=False, gossip=False, announce_interval=30.0,
                  extra={"modalities": {"main": {"type": "echo", "serve_as": "mirror"}}})
    async with a.running(), b.running():
        await a.transport.connect(b.transport.listen_addrs()[0])
        with anyio.fail_after(10):
            while b.peer_id not in a.transport.announcements.received:
                await anyio.sleep(0.02)
        assert "announce" in dispatch.of(b).services()
    assert a.transport.announcements.received[b.peer_id].modalities == ("mirror",)
