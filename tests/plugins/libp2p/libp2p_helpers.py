"""Helpers for transport tests: nodes on 127.0.0.1 with the echo modality."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from tnode.node import Node


def node_doc(*, port: int = 0, bootstrap: tuple[str, ...] = (), delay_ms: int = 0, extra: dict[str, Any] | None = None,
             **transport: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "transport": {"type": "libp2p", "listen": [f"/ip4/127.0.0.1/tcp/{port}"], "bootstrap": list(bootstrap),
                      **transport},
        "modalities": {"echo": {"type": "echo", "delay_ms": delay_ms}},
    }
    doc.update(extra or {})
    return doc


def make_node(tmp: Path, name: str, **kw: Any) -> Node:
    return Node.from_dict(node_doc(**kw), data_dir=tmp / name)


def port_is_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:port (bound without SO_REUSEPORT)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # SO_REUSEADDR tolerates TIME_WAIT leftovers but still fails while anything LISTENs there.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        sock.close()


def port_of(addr: str) -> int:
    return int(addr.split("/tcp/")[1].split("/")[0])
