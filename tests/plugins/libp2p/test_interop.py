"""Interoperability: stock py-libp2p hosts (default stack, none of tnode's code) against a tnode node."""

from __future__ import annotations

import contextlib

import multiaddr
import pytest
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.host.ping import ID as PING_ID
from libp2p.host.ping import PingService
from libp2p.identity.identify.identify import ID as IDENTIFY_ID
from libp2p.identity.identify.pb.identify_pb2 import Identify
from libp2p.network.exceptions import SwarmException
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport
from libp2p.utils.varint import read_length_prefixed_protobuf
from libp2p_helpers import make_node, port_of

pytestmark = pytest.mark.anyio


@contextlib.asynccontextmanager
async def _plain_host(**kw):
    host = new_host(**kw)
    async with host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        try:
            yield host
        finally:
            with trio.CancelScope(shield=True):
                await host.close()


async def test_standard_host_pings_and_identifies_us(tmp_path):
    a = make_node(tmp_path, "a")
    async with a.running(), _plain_host() as plain:
        listen = a.transport.listen_addrs()[0]
        info = info_from_p2p_addr(multiaddr.Multiaddr(listen))
        with trio.fail_after(10):
            await plain.connect(info)
            rtts = await PingService(plain).ping(info.peer_id, ping_amt=3)
            assert len(rtts) == 3 and all(r >= 0 for r in rtts)

            stream = await plain.new_stream(info.peer_id, [IDENTIFY_ID])
            msg = Identify()
            msg.ParseFromString(await read_length_prefixed_protobuf(stream, use_varint_format=True))
            await stream.close()
        # The identify answer is about this node: its key, its listen address, its protocols.
        assert msg.public_key == a.transport.host.get_public_key().serialize()
        addrs = [str(multiaddr.Multiaddr(raw)) for raw in msg.listen_addrs]
        assert any(port_of(addr) == port_of(listen) for addr in addrs)
        protocols = set(msg.protocols)
        assert {"/tnode/task/1", str(PING_ID), str(IDENTIFY_ID), "/ipfs/kad/1.0.0", "/meshsub/1.0.0"} <= protocols
        # Its remote observed address is the plain host's side of the connection.
        assert msg.observed_addr


async def test_plaintext_dialer_is_refused(tmp_path):
    """The node speaks only Noise: a host offering only plaintext cannot connect."""
    kp = create_new_key_pair()
    a = make_node(tmp_path, "a")
    async with a.running(), _plain_host(key_pair=kp, sec_opt={PLAINTEXT_PROTOCOL_ID: InsecureTransport(kp)}) as plain:
        info = info_from_p2p_addr(multiaddr.Multiaddr(a.transport.listen_addrs()[0]))
        with trio.fail_after(10), pytest.raises(SwarmException):
            await plain.connect(info)
        assert not plain.get_network().get_connections(info.peer_id)
