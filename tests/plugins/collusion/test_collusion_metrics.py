"""/metrics of a node running a collusion detector: alarms by kind and detector, current suspects."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import pytest
from tnode.node import Node

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "exporters"))
from exporters_helpers import http_get, samples  # noqa: E402

pytestmark = pytest.mark.anyio


async def test_alarms_are_counted_by_kind_and_detector_and_suspects_gauged(tmp_path: Path) -> None:
    doc = {"exporters": {"prom": {"type": "prometheus", "listen": "127.0.0.1:0", "poll_interval": 0.2}},
           "collusion": {"relays": {"type": "relay"}, "lazies": {"type": "lazy"}}}
    node = Node.from_dict(doc, data_dir=tmp_path / "node")
    async with node.running():
        relay = node.component("collusion_detector", "relays")
        lazy = node.component("collusion_detector", "lazies")
        await relay.found((f"{7:064x}",), "relay", 0.9, "constructed", uids=(7,))
        await relay.found((f"{8:064x}",), "relay", 0.8, "constructed", uids=(8,))
        await lazy.found((f"{9:064x}",), "lazy", 0.5, "constructed", uids=(9,))
        url = node.component("exporter", "prom").url
        with anyio.fail_after(10):
            while True:
                status, body = await http_get(url + "metrics")
                assert status == 200
                got = samples(body.decode())
                if got.get(("tnode_collusion_suspected_total", (("detector", "lazies"), ("kind", "lazy")))) == 1:
                    break
                await anyio.sleep(0.05)
    assert got[("tnode_collusion_suspected_total", (("detector", "relays"), ("kind", "relay")))] == 2
    assert got[("tnode_collusion_suspects", (("detector", "relays"), ("kind", "relay")))] == 2
    assert got[("tnode_collusion_suspects", (("detector", "lazies"), ("kind", "lazy")))] == 1
