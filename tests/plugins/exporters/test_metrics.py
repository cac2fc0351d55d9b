"""/metrics through a real libp2p node: parsed with prometheus-client's parser, refusals match the logs."""

from __future__ import annotations

import logging

import anyio
import pytest
import structlog
from exporters_helpers import get_json, http_get, samples
from tnode.errors import TaskError
from tnode.node import Node

pytestmark = pytest.mark.anyio

BURST = 3
REQUESTS = 10


def transport() -> dict:
    return {"type": "libp2p", "listen": ["/ip4/127.0.0.1/tcp/0"], "dht": False, "announce_interval": 0.0}


def server(tmp_path) -> Node:
    doc = {
        "transport": transport(),
        "modalities": {"echo": {"type": "echo"}},
        "spam": {"rate": {"type": "token_bucket", "rate": 0.0, "burst": float(BURST)}},
        "exporters": {"prom": {"type": "prometheus", "listen": "127.0.0.1:0", "poll_interval": 0.2}},
    }
    return Node.from_dict(doc, data_dir=tmp_path / "server")


async def test_refusals_on_metrics_equal_those_the_node_logged(tmp_path, monkeypatch) -> None:
    logging.getLogger("tnode.antispam").setLevel(logging.DEBUG)
    node = server(tmp_path)
    client = Node.from_dict({"transport": transport()}, data_dir=tmp_path / "client")
    refused_seen = 0
    with structlog.testing.capture_logs() as logs:
        async with node.running(), client.running():
            url = node.component("exporter", "prom").url
            addr = node.transport.listen_addrs()[0]
            for i in range(REQUESTS):
                try:
                    await client.transport.request(addr, "echo", "echo", {"i": i}, timeout=5.0)
                except TaskError as exc:
                    assert exc.code == "rate_limited"
                    refused_seen += 1
            with anyio.fail_after(10):
                while True:
                    status, body = await http_get(url + "metrics")
                    assert status == 200
                    got = samples(body.decode())
                    if got.get(("tnode_refusals_total", (("code", "rate_limited"),)), 0) >= refused_seen:
                        break
                    await anyio.sleep(0.05)
            stats = node.component("spam_filter", "rate").stats()
    logged = [e for e in logs if e.get("event") == "request refused" and e.get("code") == "rate_limited"]
    assert refused_seen == REQUESTS - BURST
    assert len(logged) == refused_seen
    assert got[("tnode_refusals_total", (("code", "rate_limited"),))] == len(logged)
    assert sum(stats["refused"].values()) == len(logged)
    assert got[("tnode_requests_total", (("code", "ok"), ("modality", "echo")))] == BURST
    assert got[("tnode_request_seconds_count", (("modality", "echo"),))] == REQUESTS
    assert got[("tnode_component_stat", (("component", "rate"), ("key", "refused.rate_limited"),
                                         ("kind", "spam_filter")))] == len(logged)
    # The bus is described too: each subscriber's queue and its drop and error counters.
    assert any(name == "tnode_bus_dropped_total" for name, _ in got)
    assert any(name == "tnode_bus_queue_depth" for name, _ in got)


async def test_health_endpoints_answer_json(tmp_path) -> None:
    node = server(tmp_path)
    async with node.running():
        url = node.component("exporter", "prom").url
        status, health = await get_json(url + "healthz")
        assert status == 200 and health["status"] == "alive"
        with anyio.fail_after(10):
            while True:
                status, ready = await get_json(url + "readyz")
                if status == 200:
                    break
                await anyio.sleep(0.05)
        assert ready["ready"] is True and ready["components_started"] is True
        status, missing = await get_json(url + "nope")
        assert status == 404 and "/metrics" in missing["paths"]


async def test_readyz_fails_without_enough_peers(tmp_path) -> None:
    doc = {"transport": transport(),
           "exporters": {"prom": {"type": "prometheus", "listen": "127.0.0.1:0", "min_peers": 1}}}
    node = Node.from_dict(doc, data_dir=tmp_path / "lonely")
    async with node.running():
        status, ready = await get_json(node.component("exporter", "prom").url + "readyz")
    assert status == 503
    assert ready == {"ready": False, "components_started": True, "peers": 0, "enough_peers": False}
