"""Hostile input over real libp2p: validly signed frames the decoder does not expect, foreign signers.

Each frame is built by hand (``wire.signing_bytes`` + the key's ``sign``) so that its header
carries values ``wire.encode`` would never produce. The node must refuse it and keep serving.
"""

from __future__ import annotations

import os
import time
from typing import Any

import orjson
import pytest
import trio
from libp2p.peer.id import ID
from libp2p_helpers import make_node
from test_gossip import _collect, _plain_gossiper
from tnode import wire
from tnode.keys import Keypair
from tnode.plugins.libp2p.framing import read_frame
from tnode.plugins.libp2p.gossip import TOPIC

pytestmark = pytest.mark.anyio

# Payload descriptions the decoder does not expect, each with matching payload bytes.
HOSTILE_PD: dict[str, tuple[dict[str, Any], bytes]] = {
    "unhashable_dtype": ({"dtype": [1], "shape": [1]}, b"\0" * 4),
    "dtype_object": ({"dtype": {"x": 1}, "shape": [1]}, b"\0" * 4),
    "huge_dimension": ({"dtype": "float32", "shape": [2**63, 0]}, b""),
    "65_dimensions": ({"dtype": "float32", "shape": [1] * 65}, b"\0" * 4),
}


def hand_frame(key: Keypair, *, kind: str, receiver: str, pd: dict[str, Any] | None, payload: bytes = b"",
               modality: str = "echo", task: str = "echo", body: dict[str, Any] | None = None,
               reply_to: str = "", code: str = "") -> bytes:
    """A validly signed frame with an arbitrary header ``pd``."""
    body_bytes = orjson.dumps({"args": {}, "timeout_ms": 2000} if body is None else body)
    header: dict[str, Any] = {
        "v": wire.VERSION, "k": kind, "m": modality, "t": task, "s": key.public_hex, "r": receiver,
        "n": os.urandom(16).hex(), "ts": int(time.time() * 1000), "h": wire.body_hash(body_bytes, payload),
        "bl": len(body_bytes), "pl": len(payload), "pd": pd, "re": reply_to, "c": code,
    }
    header["sig"] = key.sign(wire.signing_bytes(header)).hex()
    hb = orjson.dumps(header)
    return b"".join((wire.PREFIX.pack(4 + len(hb) + len(body_bytes) + len(payload)), wire.PREFIX.pack(len(hb)), hb,
                     body_bytes, payload))


async def _exchange(client, server, frame: bytes) -> wire.Message:
    stream = await client.transport.host.new_stream(ID.from_base58(server.peer_id), ["/tnode/task/1"])
    await stream.write(frame)
    raw = await read_frame(stream, 1 << 24)
    await stream.close()
    assert raw is not None, "the node closed the stream without answering"
    return wire.Verifier(client.hotkey.public_hex).verify_body(raw, expect_kind="res")


@pytest.mark.parametrize("case", sorted(HOSTILE_PD))
async def test_hostile_payload_description_refused_and_node_keeps_serving(tmp_path, case):
    a = make_node(tmp_path, "a", dht=False, announce_interval=0)
    b = make_node(tmp_path, "b", dht=False, announce_interval=0)
    pd, payload = HOSTILE_PD[case]
    async with a.running(), b.running():
        await b.transport.connect(a.transport.listen_addrs()[0])
        frame = hand_frame(b.hotkey, kind="req", receiver=a.hotkey.public_hex, pd=pd, payload=payload)
        with trio.fail_after(10):
            answer = await _exchange(b, a, frame)
        assert answer.code in ("invalid_request", "malformed_frame"), answer
        # The same node still serves a normal request, on a new stream and on the pooled ones.
        for i in range(3):
            reply = await b.transport.request(a.peer_id, "echo", "echo", {"i": i}, timeout=5)
            assert reply.body == {"i": i}


async def test_signer_must_be_the_connection_peer(tmp_path):
    a = make_node(tmp_path, "a", dht=False, announce_interval=0)
    b = make_node(tmp_path, "b", dht=False, announce_interval=0)
    async with a.running(), b.running():
        await b.transport.connect(a.transport.listen_addrs()[0])
        other = Keypair.generate()
        forged = wire.encode(other, kind="req", modality="echo", task="echo", receiver=a.hotkey.public_hex,
                             body={"args": {"x": 1}, "timeout_ms": 2000})
        with trio.fail_after(10):
            answer = await _exchange(b, a, forged)
        assert answer.code == "wrong_sender"
        assert a.transport.tarpit.level(b.peer_id) > 0.5  # counted against the real peer (forgiven slowly)
        own = wire.encode(b.hotkey, kind="req", modality="echo", task="echo", receiver=a.hotkey.public_hex,
                          body={"args": {"x": 2}, "timeout_ms": 2000})
        with trio.fail_after(10):
            answer = await _exchange(b, a, own)
        assert answer.code == "" and answer.body == {"result": {"x": 2}}


async def test_hostile_answer_to_the_on_connect_announcement(tmp_path):
    victim = make_node(tmp_path, "victim", dht=False, announce_interval=30.0, gossip=False)
    evil = make_node(tmp_path, "evil", dht=False, announce_interval=0)
    answered = trio.Event()
    async with victim.running(), evil.running():

        async def hostile_server(stream: Any) -> None:
            # Answers every request with a validly signed response whose payload description is hostile.
            try:
                while (raw := await read_frame(stream, 1 << 24)) is not None:
                    req = wire.decode_body(raw)
                    pd, payload = HOSTILE_PD["unhashable_dtype"]
                    await stream.write(hand_frame(evil.hotkey, kind="res", receiver=req.header["s"], pd=pd,
                                                  payload=payload, modality=req.header["m"], task=req.header["t"],
                                                  body={"result": {}}, reply_to=req.header["n"]))
                    answered.set()
            finally:
                await stream.close()

        evil.transport.host.set_stream_handler("/tnode/task/1", hostile_server)
        await evil.transport.connect(victim.transport.listen_addrs()[0])
        with trio.fail_after(10):
            await answered.wait()  # the victim greeted and got the hostile answer
        await trio.sleep(0.2)
        assert victim.transport.stats["bad_responses"] >= 1
        # The victim's transport still runs: it serves requests and its own client refuses cleanly.
        reply = await evil.transport.request(victim.peer_id, "echo", "echo", {"up": True}, timeout=5)
        assert reply.body == {"up": True}
        from tnode.errors import TaskError

        with pytest.raises(TaskError) as err:
            await victim.transport.request(evil.peer_id, "echo", "echo", {}, timeout=5)
        assert err.value.code == "invalid_response"


async def test_hostile_gossip_announcement_does_not_stop_gossipsub(tmp_path):
    a = make_node(tmp_path, "a", announce_interval=30.0, dht=False)
    got = _collect(a)
    async with a.running():
        gossiper = Keypair.generate()
        async with _plain_gossiper(gossiper, a.transport.listen_addrs()[0]) as pubsub:
            body = {"modalities": ["evil"], "version": "0", "capacity": 1, "addrs": []}
            for case in ("unhashable_dtype", "65_dimensions"):
                pd, payload = HOSTILE_PD[case]
                await pubsub.publish(TOPIC, hand_frame(gossiper, kind="ann", receiver="", pd=pd, payload=payload,
                                                       modality="_announce", task="announce", body=body))
            stats = a.transport.gossip.stats
            with trio.fail_after(10):
                while stats["dropped"] < 2:
                    await trio.sleep(0.05)
            assert a.transport.gossip.running and not got
            # gossipsub still delivers: an authentic announcement from the same origin is recorded.
            good = wire.encode(gossiper, kind="ann", modality="_announce", task="announce", receiver="", body=body)
            await pubsub.publish(TOPIC, good)
            with trio.fail_after(10):
                while not got:
                    await trio.sleep(0.05)
    assert [ev.peer_id for ev in got] == [gossiper.peer_id]
