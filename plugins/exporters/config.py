"""Configuration of the exporters: ``[exporters.NAME] type = "zmq"`` (event feed) and
``[exporters.NAME] type = "prometheus"`` (metrics, health endpoints and the dashboard)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from tnode.config import option

DEFAULT_FEED_EVENTS = [
    "BlockProduced", "EpochCompleted", "NeuronRegistered", "WeightsSubmitted", "ResponseScored",
    "TaskRefused", "SpamDetected", "CollusionSuspected",
]


def _loopback_host(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1", "[::1]") or host.startswith("127.")


@dataclass(frozen=True)
class ZmqFeedConfig:
    """A ZeroMQ PUB socket publishing bus events in bitcoind's shape: topic | orjson body | u32 LE sequence."""

    bind: str = option("tcp://127.0.0.1:28332", "ZeroMQ endpoint the PUB socket binds (tcp://HOST:PORT or ipc://PATH).")
    events: list[str] = option(DEFAULT_FEED_EVENTS, "Event class names to publish; each is its own topic.")
    hwm: int = option(10_000, "Messages queued per subscriber before ZeroMQ drops for that subscriber.", ge=1)
    queue: int = option(65_536, "Events buffered between the bus and the socket; past it events are dropped "
                                "and counted (the node never waits for the feed).", ge=1)
    allow_remote: bool = option(False, "Allow binding a non-loopback address (the feed has no authentication).")

    def check(self) -> Iterator[tuple[str, str, str]]:
        if not self.bind.startswith(("tcp://", "ipc://", "inproc://")):
            yield "bind", f"expected tcp://HOST:PORT, ipc://PATH or inproc://NAME, got {self.bind!r}", ""
        elif self.bind.startswith("tcp://") and not self.allow_remote:
            host = self.bind[len("tcp://"):].rsplit(":", 1)[0]
            if not _loopback_host(host):
                yield ("bind", f"{self.bind!r} is not a loopback address and the feed has no authentication",
                       "set allow_remote = true to publish beyond this machine")


@dataclass(frozen=True)
class PrometheusConfig:
    """An HTTP server with /metrics (Prometheus), /healthz, /readyz and the live dashboard at /."""

    listen: str = option("127.0.0.1:9464", "HOST:PORT the HTTP server listens on (port 0 picks a free one).")
    dashboard: bool = option(True, "Serve the dashboard page at / and its data at /api/state.")
    min_peers: int = option(0, "Peers /readyz requires before the node counts as ready.", ge=0)
    chain_stale_seconds: float = option(30.0, "/readyz fails when the chain did not answer for this long.", ge=0.1)
    poll_interval: float = option(2.0, "Seconds between reads of the metagraph, difficulty and peers.", ge=0.05)
    history: int = option(200, "Epochs kept for the dashboard's plots.", ge=1)
    alarms: int = option(50, "Recent alarms (spam, collusion, refusals) kept for the dashboard.", ge=1)
    allow_remote: bool = option(False, "Allow listening on a non-loopback address.")

    def check(self) -> Iterator[tuple[str, str, str]]:
        host, sep, port = self.listen.rpartition(":")
        if not sep or not port.isdigit() or not host:
            yield "listen", f"expected HOST:PORT, got {self.listen!r}", ""
        elif not self.allow_remote and not _loopback_host(host):
            yield ("listen", f"{self.listen!r} is not a loopback address",
                   "set allow_remote = true to serve beyond this machine")
