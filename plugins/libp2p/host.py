"""Building a py-libp2p host the way tnode needs it: Noise only, Yamux, one connection per peer."""

from __future__ import annotations

import errno
import logging
import socket
from typing import Any

import multiaddr
import trio
from libp2p import create_yamux_muxer_option, new_host
from libp2p.crypto.ed25519 import Ed25519PrivateKey
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_pair
from libp2p.network.config import ConnectionConfig, RetryConfig
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from tnode.errors import ConfigError
from tnode.keys import Keypair

from . import muxer, yamux

#: ``[transport] yamux`` values: tnode's own Yamux, or py-libp2p's (with tnode's patches).
YAMUX_IMPLEMENTATIONS = ("tnode", "py-libp2p")

# py-libp2p 0.8.1 pins its auto-connector's logger to INFO at import (a line per dial round); let it
# follow the level the node configured for py-libp2p (warning unless the node logs at debug).
logging.getLogger("libp2p.network.auto_connector").setLevel(logging.NOTSET)

# py-libp2p detaches its logger on import; route it through the node's logging again.
for _name in ("libp2p",):
    logging.getLogger(_name).propagate = True


def libp2p_keypair(key: Keypair) -> KeyPair:
    """The libp2p identity of a tnode key: same Ed25519 key, so the same peer id."""
    private = Ed25519PrivateKey.from_bytes(key.seed)
    return KeyPair(private, private.get_public_key())


def build_host(key: Keypair, *, max_connections: int, listen: list[multiaddr.Multiaddr],
               announce: list[multiaddr.Multiaddr] | None = None, mdns: bool = False,
               stream_limits: muxer.StreamLimits | None = None, yamux_impl: str = "tnode",
               on_violation: yamux.ViolationCallback | None = None) -> Any:
    """A host that accepts only Noise (no plaintext, no secio/TLS) and multiplexes with Yamux.

    ``stream_limits`` bound each connection's inbound streams and receive windows (defaults when None).
    ``yamux_impl`` picks the Yamux implementation (:data:`YAMUX_IMPLEMENTATIONS`): ``"tnode"``
    (:mod:`.yamux`) or ``"py-libp2p"`` (py-libp2p's, patched by :mod:`.muxer`); the wire is the same.
    ``on_violation`` is told, with the peer id, of each Yamux protocol violation that closes a
    connection (tnode's Yamux only; py-libp2p's closes the connection and counts it in ``stream_limits``).
    """
    if yamux_impl not in YAMUX_IMPLEMENTATIONS:
        raise ValueError(f"yamux_impl must be one of {YAMUX_IMPLEMENTATIONS}, got {yamux_impl!r}")
    kp = libp2p_keypair(key)
    noise = NoiseTransport(kp, noise_privkey=new_x25519_pair().private_key)
    host = new_host(
        key_pair=kp,
        sec_opt={NOISE_PROTOCOL_ID: noise},
        muxer_opt=create_yamux_muxer_option(),
        connection_config=ConnectionConfig(
            max_connections_per_peer=1,  # otherwise every connect waits ~250 ms for a second one
            max_connections=max_connections,
            # No auto-dialling toward a minimum: the node decides whom it talks to.
            min_connections=0,
            low_watermark=0,
            high_watermark=max_connections,
        ),
        listen_addrs=listen,
        announce_addrs=announce or None,
        enable_mDNS=mdns,
    )
    # The transport has its own per-peer back-off and tries every address itself: one quick retry
    # per address is enough (the default, 3 retries with growing delays, costs ~0.7 s per dead address).
    host.get_network().retry_config = RetryConfig(max_retries=1, initial_delay=0.1)
    if yamux_impl == "tnode":
        yamux.install(host, stream_limits, on_violation=on_violation)
    else:
        # Reset streams give back their buffered bytes at once (not after 60-90 s); streams and windows bounded.
        muxer.install(host, stream_limits)
    return host


async def wait_for_protocols(host: Any, pid: Any, seconds: float = 5.0) -> set[str]:
    """Protocols a connected peer listed in identify, waiting up to ``seconds`` for identify to finish.

    Empty when identify did not finish in time or the connection went away meanwhile.
    """
    store = host.get_peerstore()
    with trio.move_on_after(seconds):
        while True:
            try:
                protocols = store.get_protocols(pid)
            except Exception:  # the peerstore raises for a peer it has not recorded yet
                protocols = None
            if protocols:
                return {str(p) for p in protocols}
            if not host.get_network().get_connections(pid):
                return set()
            await trio.sleep(0.05)
    return set()


def check_port_free(addr: multiaddr.Multiaddr, key_path: str) -> None:
    """Fail clearly when a TCP listen port is taken.

    py-libp2p binds with SO_REUSEPORT, so a second node on the same port would start silently and
    share the traffic; bind once ourselves without it to find out first.
    """
    protos = {p.name for p in addr.protocols()}
    if "tcp" not in protos:
        return
    port = int(addr.value_for_protocol("tcp"))
    if port == 0:
        return
    family, host = (socket.AF_INET6, addr.value_for_protocol("ip6")) if "ip6" in protos else (
        socket.AF_INET, addr.value_for_protocol("ip4") if "ip4" in protos else "0.0.0.0")
    sock = socket.socket(family, socket.SOCK_STREAM)
    # SO_REUSEADDR (not SO_REUSEPORT): TIME_WAIT leftovers are fine, a live listener is not.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        reason = "already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise ConfigError(f"cannot listen on {addr}: port {port} {reason}", key_path=key_path,
                          hint="pick another port or use tcp/0") from None
    finally:
        sock.close()
