"""The libp2p transport between several nodes in one process, on 127.0.0.1."""

from __future__ import annotations

import os

import numpy as np
import pytest
import trio
from libp2p_helpers import make_node, port_is_free, port_of
from tnode import wire
from tnode.errors import TaskError
from tnode.events import AnnouncementReceived, PeerConnected, TaskRefused

pytestmark = pytest.mark.anyio


async def test_bootstrap_identify_and_signed_echo(tmp_path):
    a = make_node(tmp_path, "a")
    async with a.running():
        addr = a.transport.listen_addrs()[0]
        assert addr.endswith(f"/p2p/{a.peer_id}")
        b = make_node(tmp_path, "b", bootstrap=(addr,))
        connected = []

        async def on_peer(ev: PeerConnected) -> None:
            connected.append(ev.peer_id)

        b.bus.subscribe(PeerConnected, on_peer)
        async with b.running():
            with trio.fail_after(10):
                while a.peer_id not in connected:
                    await trio.sleep(0.02)
            payload = np.arange(12, dtype=np.float32).reshape(3, 4)
            reply = await b.transport.request(a.peer_id, "echo", "echo", {"hello": "world"}, payload, timeout=5)
            assert reply.body == {"hello": "world"}
            assert reply.hotkey == a.hotkey.public_hex  # the answer was signed by a and verified by b
            np.testing.assert_array_equal(reply.payload, payload)
            # identify ran: a knows b's public key from the connection
            assert a.transport.host.get_peerstore().pubkey(b.transport.host.get_id()) is not None


async def test_request_by_multiaddr_and_unknown_modality(tmp_path):
    a = make_node(tmp_path, "a")
    b = make_node(tmp_path, "b")
    async with a.running(), b.running():
        addr = a.transport.listen_addrs()[0]
        reply = await b.transport.request(addr, "echo", "echo", {"n": 1}, b"raw", timeout=5)
        assert reply.payload == b"raw"
        with pytest.raises(TaskError) as err:
            await b.transport.request(a.peer_id, "image", "generate", {}, timeout=5)
        assert err.value.code == "unknown_modality"


async def test_deadline_exceeded_is_a_clean_timeout(tmp_path):
    a = make_node(tmp_path, "a", delay_ms=2000)
    b = make_node(tmp_path, "b")
    async with a.running(), b.running():
        with pytest.raises(TaskError) as err:
            await b.transport.request(a.transport.listen_addrs()[0], "echo", "echo", {}, timeout=0.3)
        assert err.value.code == "timeout"


async def _raw_exchange(b, a, frame: bytes) -> wire.Message:
    from libp2p.peer.id import ID

    stream = await b.transport.host.new_stream(ID.from_base58(a.peer_id), ["/tnode/task/1"])
    await stream.write(frame)
    from tnode.plugins.libp2p.framing import read_frame

    raw = await read_frame(stream, 1 << 24)
    await stream.close()
    return wire.Verifier(b.hotkey.public_hex).verify_body(raw, expect_kind="res")


async def test_forged_and_replayed_requests_refused(tmp_path):
    a = make_node(tmp_path, "a")
    b = make_node(tmp_path, "b")
    refused = []

    async def on_refused(ev: TaskRefused) -> None:
        refused.append(ev.code)

    a.bus.subscribe(TaskRefused, on_refused)
    async with a.running(), b.running():
        await b.transport.connect(a.transport.listen_addrs()[0])
        good = wire.encode(b.hotkey, kind="req", modality="echo", task="echo", receiver=a.hotkey.public_hex,
                           body={"args": {"v": 1}, "timeout_ms": 2000})
        first = await _raw_exchange(b, a, good)
        assert first.code == "" and first.body["result"] == {"v": 1}
        replay = await _raw_exchange(b, a, good)
        assert replay.code == "replayed"
        # Forged: body changed after signing → the signed hash no longer matches.
        forged = bytearray(wire.encode(b.hotkey, kind="req", modality="echo", task="echo",
                                       receiver=a.hotkey.public_hex, body={"args": {"v": 2}, "timeout_ms": 2000}))
        idx = forged.rindex(b'"v":2')
        forged[idx + 4] = ord("3")
        assert (await _raw_exchange(b, a, bytes(forged))).code == "body_hash_mismatch"
        # Signed by someone else than the sender it claims.
        from tnode.keys import Keypair

        mallory = Keypair.generate()
        header_forged = wire.encode(mallory, kind="req", modality="echo", task="echo",
                                    receiver=a.hotkey.public_hex, body={"args": {}, "timeout_ms": 2000})
        text = header_forged.replace(mallory.public_hex.encode(), b.hotkey.public_hex.encode())
        assert (await _raw_exchange(b, a, text)).code == "bad_signature"
        stale = wire.encode(b.hotkey, kind="req", modality="echo", task="echo", receiver=a.hotkey.public_hex,
                            body={"args": {}, "timeout_ms": 2000}, ts_ms=1_000)
        assert (await _raw_exchange(b, a, stale)).code == "stale"
        await trio.sleep(0.05)
        assert {"replayed", "body_hash_mismatch", "bad_signature", "stale"} <= set(refused)


async def test_oversized_frame_refused_unread(tmp_path):
    a = make_node(tmp_path, "a", max_frame_bytes=4096)
    b = make_node(tmp_path, "b")
    async with a.running(), b.running():
        with pytest.raises(TaskError) as err:
            await b.transport.request(a.transport.listen_addrs()[0], "echo", "echo", {}, os.urandom(10_000),
                                      timeout=5)
        assert err.value.code in ("frame_too_large", "unreachable")


async def test_peer_killed_mid_request_gives_clean_error(tmp_path):
    a = make_node(tmp_path, "a", delay_ms=3000)
    b = make_node(tmp_path, "b")
    async with b.running():
        outcome: list[str] = []
        async with trio.open_nursery() as nursery:
            cancel_a = trio.CancelScope()

            async def run_a(task_status=trio.TASK_STATUS_IGNORED):
                with cancel_a:
                    async with a.running():
                        task_status.started(a.transport.listen_addrs()[0])
                        await trio.sleep_forever()

            addr = await nursery.start(run_a)

            async def ask():
                try:
                    await b.transport.request(addr, "echo", "echo", {}, timeout=10)
                    outcome.append("ok")
                except TaskError as exc:
                    outcome.append(exc.code)

            nursery.start_soon(ask)
            await trio.sleep(0.5)
            cancel_a.cancel()  # a stops while b waits for its answer
        assert outcome and outcome[0] in ("unreachable", "timeout")
        assert outcome[0] == "unreachable"


async def test_shutdown_frees_the_listen_port(tmp_path):
    a = make_node(tmp_path, "a")
    async with a.running():
        port = port_of(a.transport.listen_addrs()[0])
        assert not port_is_free(port)
    await trio.sleep(0.1)
    assert port_is_free(port)


async def test_port_in_use_fails_clearly(tmp_path):
    import socket

    from tnode.errors import ComponentStartError

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    try:
        node = make_node(tmp_path, "a", port=port)
        with pytest.raises(ComponentStartError) as err:
            async with node.running():
                pass
        assert err.value.key_path == "transport" and "already in use" in str(err.value)
    finally:
        sock.close()


async def test_announcements_received(tmp_path):
    a = make_node(tmp_path, "a", announce_interval=0.5)
    got: list[AnnouncementReceived] = []
    async with a.running():
        b = make_node(tmp_path, "b", bootstrap=(a.transport.listen_addrs()[0],), announce_interval=0.5)

        async def on_ann(ev: AnnouncementReceived) -> None:
            got.append(ev)

        b.bus.subscribe(AnnouncementReceived, on_ann)
        async with b.running():
            with trio.fail_after(10):
                while not got:
                    await trio.sleep(0.05)
    assert got[0].peer_id == a.peer_id
    assert "echo" in got[0].modalities
    assert got[0].hotkey == a.hotkey.public_hex


async def test_task_completed_and_peer_disconnected_events(tmp_path):
    from tnode.events import PeerDisconnected, TaskCompleted

    a = make_node(tmp_path, "a")
    completed: list[TaskCompleted] = []
    gone: list[PeerDisconnected] = []

    async def on_done(ev: TaskCompleted) -> None:
        completed.append(ev)

    async def on_gone(ev: PeerDisconnected) -> None:
        gone.append(ev)

    a.bus.subscribe(TaskCompleted, on_done)
    a.bus.subscribe(PeerDisconnected, on_gone)
    async with a.running():
        b = make_node(tmp_path, "b")
        async with b.running():
            await b.transport.request(a.transport.listen_addrs()[0], "echo", "echo", {"k": 1}, timeout=5)
            with pytest.raises(TaskError):
                await b.transport.request(a.peer_id, "missing", "x", {}, timeout=5)
            await b.transport.host.disconnect(a.transport.host.get_id())
            with trio.fail_after(10):
                while not gone:
                    await trio.sleep(0.05)
        with trio.fail_after(10):
            while not gone:
                await trio.sleep(0.05)
    assert [(e.modality, e.ok) for e in completed if not e.modality.startswith("_")] == [("echo", True), ("missing", False)]
    # The on-connect announcement exchange (service "_announce") may complete in any order around these.
    assert [e for e in completed if not e.modality.startswith("_")][-1].code == "unknown_modality"
    assert gone[0].peer_id == b.peer_id


async def test_dead_addresses_tolerated_and_dial_backoff(tmp_path):
    from tnode.keys import Keypair

    a = make_node(tmp_path, "a")
    async with a.running():
        live = a.transport.listen_addrs()[0]
        dead_peer = Keypair.generate().peer_id
        dead = f"/ip4/127.0.0.1/tcp/9/p2p/{dead_peer}"  # nothing listens on port 9 here
        b = make_node(tmp_path, "b", bootstrap=(dead, live), dht=False, dial_backoff_seconds=5.0)
        async with b.running():
            with trio.fail_after(10):  # the dead bootstrap entry does not hold up the live one
                while a.peer_id not in {p.peer_id for p in b.transport.peers() if p.connected}:
                    await trio.sleep(0.05)
            # Several addresses for one peer: a dead one first, then the live one.
            c = make_node(tmp_path, "c", dht=False)
            async with c.running():
                b.transport.add_peer_addrs(c.peer_id, ["/ip4/127.0.0.1/tcp/9", c.transport.listen_addrs()[0]])
                reply = await b.transport.request(c.peer_id, "echo", "echo", {"n": 2}, timeout=5)
                assert reply.body == {"n": 2}
            # An unreachable peer is put under back-off: the next request fails without dialing.
            other = Keypair.generate().peer_id
            with pytest.raises(TaskError) as first:
                await b.transport.request(f"/ip4/127.0.0.1/tcp/9/p2p/{other}", "echo", "echo", {}, timeout=5)
            assert first.value.code == "unreachable" and "tcp/9" in first.value.message
            with pytest.raises(TaskError) as second:
                await b.transport.request(other, "echo", "echo", {}, timeout=5)
            assert second.value.code == "unreachable" and "back-off" in second.value.message


async def test_pipelined_requests_on_one_stream_are_answered_in_order(tmp_path):
    """Frames written back to back (several in one Yamux read) are each served: the server's greedy read
    keeps what follows a frame for the next one."""
    from libp2p.peer.id import ID
    from tnode.plugins.libp2p.framing import read_frame

    a = make_node(tmp_path, "a")
    b = make_node(tmp_path, "b")
    async with a.running(), b.running():
        await b.transport.connect(a.transport.listen_addrs()[0])
        frames = [wire.encode(b.hotkey, kind="req", modality="echo", task="echo", receiver=a.hotkey.public_hex,
                              body={"args": {"i": i}, "timeout_ms": 5000}, payload=os.urandom(100 + 300 * i))
                  for i in range(5)]
        stream = await b.transport.host.new_stream(ID.from_base58(a.peer_id), ["/tnode/task/1"])
        await stream.write(b"".join(frames))  # one write: the server meets several frames per read
        verifier = wire.Verifier(b.hotkey.public_hex)
        carry = bytearray()
        with trio.fail_after(10):
            answers = [verifier.verify_body(await read_frame(stream, 1 << 24, carry=carry), expect_kind="res")
                       for _ in frames]
        await stream.close()
        assert [m.body["result"] for m in answers] == [{"i": i} for i in range(5)]
        assert carry == bytearray()


class _ChunkStream:
    """A stream that returns its bytes in fixed pieces, whatever the reader asks for."""

    def __init__(self, data: bytes, piece: int) -> None:
        self.data, self.piece = data, piece

    async def read(self, n: int) -> bytes:
        take = min(n, self.piece)
        out, self.data = self.data[:take], self.data[take:]
        return out


@pytest.mark.parametrize("piece", [1, 3, 7, 4096, 1 << 20])
async def test_greedy_read_frame_splits_any_chunking(piece):
    from tnode.errors import TruncatedFrame
    from tnode.plugins.libp2p.framing import read_frame

    bodies = [os.urandom(n) for n in (4, 5, 70_000, 9)]  # a tnode frame holds at least its header length
    data = b"".join(len(x).to_bytes(4, "big") + x for x in bodies)
    stream, carry = _ChunkStream(data + b"\x00\x00", piece), bytearray()
    assert [await read_frame(stream, 1 << 20, carry=carry) for _ in bodies] == bodies
    with pytest.raises(TruncatedFrame):  # two bytes of a prefix, then the end of the stream
        await read_frame(stream, 1 << 20, carry=carry)
    assert await read_frame(_ChunkStream(b"", piece), 1 << 20, carry=bytearray()) is None
