"""docs/grafana/tnode-node.json: a well-formed Grafana dashboard whose every query names metrics a real node
(embedded chain, a modality, the Prometheus exporter) exposes on /metrics."""

from __future__ import annotations

import re
from pathlib import Path

import anyio
import orjson
import pytest
from exporters_helpers import http_get
from prometheus_client.parser import text_string_to_metric_families
from tnode.keys import Keypair
from tnode.node import Node

pytestmark = pytest.mark.anyio

DASHBOARD = Path(__file__).resolve().parents[3] / "docs" / "grafana" / "tnode-node.json"
SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")


def queries() -> list[str]:
    dash = orjson.loads(DASHBOARD.read_bytes())
    panels = dash["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    out = []
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        if p["type"] == "row":
            continue
        assert p["targets"], p["title"]
        for t in p["targets"]:
            expr = t["expr"]
            assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
            assert 'instance=~"$instance"' in expr, f"{p['title']}: every query follows the node selector"
            out.append(expr)
    assert {v["name"] for v in dash["templating"]["list"]} == {"datasource", "instance"}
    return out


def exposed(text: str) -> set[str]:
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(s.name for s in family.samples)
    return names


async def test_every_dashboard_query_names_a_metric_the_node_exposes(tmp_path) -> None:
    wanted = {name for expr in queries() for name in re.findall(r"\btnode_[a-z_]+", expr)}
    assert len(wanted) >= 20
    cold, hot = Keypair.from_seed(b"g" * 32), Keypair.from_seed(b"h" * 32)
    doc = {
        "chain": {"type": "local", "block_time": 0.05, "hyperparameters": {"tempo": 4, "difficulty": 4},
                  "genesis": {"accounts": [{"coldkey": cold.public_hex, "hotkey": hot.public_hex, "balance": 10,
                                            "stake": 10}]}},
        "transport": {"type": "libp2p", "listen": ["/ip4/127.0.0.1/tcp/0"], "dht": False, "announce_interval": 0.0},
        "modalities": {"echo": {"type": "echo"}},
        "exporters": {"prom": {"type": "prometheus", "listen": "127.0.0.1:0", "poll_interval": 0.2}},
    }
    node = Node.from_dict(doc, data_dir=tmp_path / "node", hotkey=hot, coldkey=cold)
    async with node.running():
        url = node.component("exporter", "prom").url
        with anyio.fail_after(20):
            while True:
                status, body = await http_get(url + "metrics")
                assert status == 200
                names = exposed(body.decode())
                if "tnode_chain_height" in names and "tnode_neurons" in names:
                    break
                await anyio.sleep(0.1)
    missing = sorted(n for n in wanted if n not in names and not any(
        n.endswith(s) and n[: -len(s)] in names for s in SUFFIXES))
    assert not missing, f"dashboard queries name metrics /metrics does not have: {missing}"
