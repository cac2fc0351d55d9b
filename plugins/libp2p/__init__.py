"""tnode plugin: the libp2p transport (TCP + Noise + Yamux, signed request/response, DHT, gossip)."""

from __future__ import annotations

from typing import Any

import tnode

from .config import Libp2pConfig


def _factory(node: Any, name: str, config: Libp2pConfig) -> Any:
    from .transport import Libp2pTransport  # py-libp2p costs ~0.7 s to import: only when used

    return Libp2pTransport(node, name, config)


@tnode.hookimpl
def tnode_register_components(register: Any) -> None:
    register(kind="transport", type="libp2p", factory=_factory, schema=Libp2pConfig,
             description="libp2p transport: TCP + Noise + Yamux, identify, ping, signed request/response, "
                         "Kademlia DHT, gossipsub announcements.")


@tnode.hookimpl
def tnode_add_cli_commands(app: Any) -> None:
    from .cli import register_commands

    register_commands(app)
