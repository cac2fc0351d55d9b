"""Reading a node's standing from the chain it uses, from outside the node (``tnode status``)."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from tnode.errors import ChainError, ConfigError, TnodeError, find_error
from tnode.node import Node

from .status import node_status


@dataclass(frozen=True)
class NodeTarget:
    """Whom to ask about which hotkey."""

    name: str
    hotkey: str
    authority: str  # multiaddr of the chain authority, with /p2p/<peer id>
    transport: dict[str, Any]
    netuid: int = 1  # the node's [node] netuid: the subnet shown unless another is asked for

    @classmethod
    def from_config(cls, path: Path) -> NodeTarget:
        """Read node.toml (no components start) and work out where its chain is."""
        node = Node.from_file(path, kinds=())
        raw = node.config.raw
        chain = raw.get("chain")
        transport = raw.get("transport")
        if not isinstance(chain, dict) or not isinstance(transport, dict):
            raise ConfigError("the node has no [chain] or no [transport]: nothing to read its standing from",
                              file=str(path), key_path="chain")
        if chain.get("mode", "authority") == "client":
            authority = str(chain.get("authority", ""))
        else:
            listen = [a for a in transport.get("listen", []) if "/tcp/" in a and not a.endswith("/tcp/0")]
            if not listen:
                raise ConfigError("an authority node needs a fixed TCP listen port for `tnode status` to reach it",
                                  file=str(path), key_path="transport.listen")
            authority = f"{listen[0].replace('/ip4/0.0.0.0/', '/ip4/127.0.0.1/')}/p2p/{node.peer_id}"
        return cls(node.name, node.hotkey.public_hex, authority, transport, node.netuid)


async def read_status(target: NodeTarget, timeout: float, netuid: int | None = None) -> dict[str, Any]:
    """The status document of ``target`` in subnet ``netuid`` (default: the node's), read through a
    temporary chain client."""
    netuid = target.netuid if netuid is None else netuid
    tmp = Path(tempfile.mkdtemp(prefix="tnode-status-"))
    transport = {k: v for k, v in target.transport.items() if k not in ("listen", "bootstrap")}
    doc = {
        "node": {"name": "status", "create_keys": True, "netuid": netuid},
        "log": {"level": "warning"},
        "transport": {**transport, "listen": ["/ip4/127.0.0.1/tcp/0"]},
        "chain": {"type": "local", "mode": "client", "authority": target.authority, "request_timeout": timeout},
    }
    try:
        node = Node.from_dict(doc, data_dir=tmp, kinds={"transport", "chain"})
        with anyio.fail_after(timeout):
            async with node.running():
                mg = await node.chain.metagraph()
    except TimeoutError:
        raise ChainError("unreachable", f"no answer from the chain at {target.authority} in {timeout:.0f} s "
                                        f"(is the node running?)") from None
    except BaseExceptionGroup as group:
        cause = find_error(group, TnodeError)
        if cause is None:
            raise
        raise cause from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return node_status(mg, target.hotkey, name=target.name)
