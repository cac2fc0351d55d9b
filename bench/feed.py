"""Event feed benchmark: bus events through the ZeroMQ feed vs raw pyzmq PUB/SUB, and the bus's own rate
with the feed exporter on and off.

Baseline, measured in the same run: a raw pyzmq PUB socket sending the same three-frame messages
(topic, the same JSON body, u32 sequence) from a plain loop. Both are received by the same
blocking SUB socket in a thread, over ipc, with unlimited high-water marks so nothing is dropped.
Goal: the feed carries ≥ 0.5× the raw rate. The bus's rate with the exporter on vs off is
reported as a figure (the cost the feed adds to every publish of a published event class).

    python bench/feed.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import anyio
import trio
import zmq
from tnode.events import BlockProduced, SpamDetected
from tnode.node import Node
from tnode.plugins.exporters.codec import SEQ, encode_body

GOAL_RATIO = 0.5
HASH = "ab" * 32


class Receiver:
    """A blocking SUB socket in a thread that counts messages until it has ``n``."""

    def __init__(self, endpoint: str, n: int) -> None:
        self.n = n
        self.sock = zmq.Context.instance().socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"BlockProduced")
        self.sock.setsockopt(zmq.SUBSCRIBE, b"SpamDetected")  # warm-up probes, not counted
        self.sock.setsockopt(zmq.RCVTIMEO, 20_000)
        self.sock.connect(endpoint)
        self.got = 0
        self.first_seen = threading.Event()
        self.done_at = 0.0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while True:
                frames = self.sock.recv_multipart()
                if frames[0] == b"SpamDetected":
                    self.first_seen.set()
                    continue
                self.got += 1
                if self.got == self.n:
                    self.done_at = time.perf_counter()
                    return
        except zmq.Again:
            return
        finally:
            self.sock.close(linger=0)


def raw_rate(n: int, endpoint: str) -> float:
    """Messages/s of a plain pyzmq PUB loop sending the feed's frames."""
    pub = zmq.Context.instance().socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 0)
    pub.bind(endpoint)
    rx = Receiver(endpoint, n)
    try:
        warm = encode_body(SpamDetected("warm-up", "probe"))
        while not rx.first_seen.is_set():
            pub.send_multipart((b"SpamDetected", warm, SEQ.pack(0)))
            time.sleep(0.01)
        time.sleep(0.05)
        events = [BlockProduced(i, HASH, 1.0, 0) for i in range(n)]
        t0 = time.perf_counter()
        for i, ev in enumerate(events):  # encoded in the loop, as the feed does
            pub.send_multipart((b"BlockProduced", encode_body(ev), SEQ.pack(i)), flags=zmq.NOBLOCK)
        rx.thread.join(60)
        return n / (rx.done_at - t0) if rx.got == n else 0.0
    finally:
        pub.close(linger=0)


async def feed_rate(n: int, endpoint: str, tmp: Path) -> float:
    """Events/s published on a node's bus until the SUB thread received all of them from the feed."""
    doc = {"exporters": {"feed": {"type": "zmq", "bind": endpoint, "hwm": 1_000_000, "queue": n + 10}}}
    node = Node.from_dict(doc, data_dir=tmp / "feed-node")
    async with node.running():
        feed = node.component("exporter", "feed")
        feed_sock = feed._socket
        feed_sock.setsockopt(zmq.SNDHWM, 0)
        rx = Receiver(feed.endpoint, n)
        while not rx.first_seen.is_set():
            await node.bus.publish(SpamDetected("warm-up", "probe"))
            await anyio.sleep(0.01)
        await anyio.sleep(0.05)
        events = [BlockProduced(i, HASH, 1.0, 0) for i in range(n)]
        t0 = time.perf_counter()
        for ev in events:
            await node.bus.publish(ev)
        await anyio.to_thread.run_sync(rx.thread.join, 60)
        return n / (rx.done_at - t0) if rx.got == n else 0.0


async def bus_rate(n: int, tmp: Path, *, exporter: bool, endpoint: str) -> float:
    """Events/s through the bus to one counting subscriber, with or without the feed exporter."""
    # A node needs a component: both runs carry the same transport and echo modality.
    doc: dict = {"transport": {"type": "libp2p", "listen": ["/ip4/127.0.0.1/tcp/0"], "dht": False,
                               "announce_interval": 0.0},
                 "modalities": {"echo": {"type": "echo"}}}
    if exporter:
        doc["exporters"] = {"feed": {"type": "zmq", "bind": endpoint, "queue": n + 10}}
    node = Node.from_dict(doc, data_dir=tmp / ("bus-on" if exporter else "bus-off"))
    done = anyio.Event()
    count = 0

    async def handler(_ev: BlockProduced) -> None:
        nonlocal count
        count += 1
        if count == n:
            done.set()

    async with node.running():
        node.bus.subscribe(BlockProduced, handler, name="bench", maxsize=n + 10)
        events = [BlockProduced(i, HASH, 1.0, 0) for i in range(n)]
        await anyio.sleep(0.01)
        t0 = time.perf_counter()
        for ev in events:
            await node.bus.publish(ev)
        await done.wait()
        return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer events and runs (seconds)")
    args = parser.parse_args()
    n = 20_000 if args.quick else 100_000
    runs = 3 if args.quick else 5
    tmp = Path(tempfile.mkdtemp(prefix="tnode-bench-feed-"))
    raws, feeds, ons, offs = [], [], [], []
    for r in range(runs):
        raws.append(raw_rate(n, f"ipc://{tmp}/raw{r}"))
        feeds.append(trio.run(feed_rate, n, f"ipc://{tmp}/feed{r}", tmp / f"f{r}"))
        offs.append(trio.run(lambda r=r: bus_rate(n, tmp / f"b{r}", exporter=False, endpoint="")))
        ons.append(trio.run(lambda r=r: bus_rate(n, tmp / f"b{r}", exporter=True,
                                                  endpoint=f"ipc://{tmp}/bus{r}")))
    raw, feed, on, off = (statistics.median(x) for x in (raws, feeds, ons, offs))
    print(f"{n:,} BlockProduced events, median of {runs} runs (trio, ipc, one SUB thread)")
    print(f"  raw pyzmq PUB/SUB      {raw:12,.0f} msg/s")
    print(f"  tnode feed (bus → PUB) {feed:12,.0f} events/s   {feed / raw:.2f}× raw")
    print(f"  bus, exporter off      {off:12,.0f} events/s")
    print(f"  bus, exporter on       {on:12,.0f} events/s   {on / off:.2f}× off")
    ratio = feed / raw if raw else 0.0
    print(f"{'PASS' if ratio >= GOAL_RATIO else 'FAIL'}: feed {ratio:.2f}× raw pyzmq, goal ≥ {GOAL_RATIO}×")


if __name__ == "__main__":
    main()
