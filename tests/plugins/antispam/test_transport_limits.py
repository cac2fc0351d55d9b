"""Through the real libp2p transport: ``limits`` judges a token payload by the shape the wire carries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from antispam_fakes import key, plugins
from tnode.errors import TaskError
from tnode.node import Node

pytestmark = pytest.mark.anyio


def transport() -> dict[str, Any]:
    return {"type": "libp2p", "listen": ["/ip4/127.0.0.1/tcp/0"], "dht": False, "announce_interval": 0.0}


async def test_token_payload_longer_than_max_sequence_length_is_refused(tmp_path: Path) -> None:
    server = Node.from_dict({"transport": transport(), "modalities": {"echo": {"type": "echo"}},
                             "spam": {"size": {"type": "limits", "max_sequence_length": 64, "max_batch": 2}}},
                            data_dir=tmp_path / "server", plugins=plugins("libp2p", "echo"))
    client = Node.from_dict({"transport": transport()}, data_dir=tmp_path / "client", hotkey=key("client"),
                            plugins=plugins("libp2p", "echo"))
    async with server.running(), client.running():
        peer = await client.transport.connect(server.transport.listen_addrs()[0])
        ok = await client.transport.request(peer, "echo", "next_token", {}, np.zeros((2, 64), np.int32), timeout=5)
        assert ok.payload.shape == (2, 64)
        with pytest.raises(TaskError) as long:
            await client.transport.request(peer, "echo", "next_token", {}, np.zeros((1, 65), np.int32), timeout=5)
        with pytest.raises(TaskError) as wide:
            await client.transport.request(peer, "echo", "next_token", {}, np.zeros((3, 8), np.int64), timeout=5)
        # A float tensor (an image) is not a token sequence: only its bytes are judged.
        await client.transport.request(peer, "echo", "denoise", {}, np.zeros((8, 8, 100), np.float32), timeout=5)
    assert long.value.code == "too_large" and "65 positions exceeds 64" in long.value.message
    assert wide.value.code == "too_large" and "batch of 3 rows exceeds 2" in wide.value.message
    assert server.component("spam_filter", "size").stats()["refused"] == {"sequence_length": 1, "batch": 1}
