"""The ZeroMQ event feed: bitcoind-shaped messages, in order, gaps reported past the high-water mark."""

from __future__ import annotations

import struct

import anyio
import orjson
import pytest
from tnode.errors import ConfigError
from tnode.events import BlockProduced, SpamDetected
from tnode.node import Node
from tnode.plugins.exporters.subscriber import FeedSubscriber

pytestmark = pytest.mark.anyio


def feed_node(tmp_path, **feed) -> Node:
    doc = {"exporters": {"feed": {"type": "zmq", "bind": "tcp://127.0.0.1:*", **feed}}}
    return Node.from_dict(doc, data_dir=tmp_path / "node")


async def connected(node: Node, sub: FeedSubscriber) -> None:
    """Publish probes until the subscriber sees one (a SUB socket joins a moment after connecting)."""
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            async def probes() -> None:
                while True:
                    await node.bus.publish(SpamDetected("probe", "probe"))
                    await anyio.sleep(0.01)

            tg.start_soon(probes)
            async for batch in sub.batches():
                if any(topic == "SpamDetected" for topic, _, _ in batch):
                    tg.cancel_scope.cancel()
                    break


async def test_n_events_arrive_in_order_without_gaps(tmp_path) -> None:
    node = feed_node(tmp_path)
    n = 5000
    async with node.running():
        feed = node.component("exporter", "feed")
        with FeedSubscriber(feed.endpoint, ["BlockProduced", "SpamDetected"]) as sub:
            await connected(node, sub)
            for i in range(n):
                await node.bus.publish(BlockProduced(i, f"{i:064x}", 1.0, 0))
            got: list[tuple[int, int]] = []
            with anyio.fail_after(20):
                async for topic, body, seq in sub.messages():
                    if topic != "BlockProduced":
                        continue
                    assert sub.gaps.see(topic, seq) is None
                    got.append((orjson.loads(body)["number"], seq))
                    if len(got) == n:
                        break
    assert [number for number, _ in got] == list(range(n))
    assert [seq for _, seq in got] == list(range(n))  # per-topic sequence from 0
    assert sub.gaps.missed == 0
    assert feed.stats()["dropped"] == 0


async def test_message_shape_is_topic_json_and_u32_le_sequence(tmp_path) -> None:
    import zmq

    node = feed_node(tmp_path)
    async with node.running():
        feed = node.component("exporter", "feed")
        sock = zmq.Context.instance().socket(zmq.SUB)
        try:
            sock.setsockopt(zmq.SUBSCRIBE, b"")
            sock.connect(feed.endpoint)
            frames = None
            with anyio.fail_after(10):
                while frames is None:
                    await node.bus.publish(BlockProduced(7, "ab" * 32, 2.5, 3))
                    await anyio.sleep(0.02)
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        pass
        finally:
            sock.close(linger=0)
    assert len(frames) == 3
    assert frames[0] == b"BlockProduced"
    assert orjson.loads(frames[1]) == {"number": 7, "hash": "ab" * 32, "timestamp": 2.5, "tx_count": 3}
    assert len(frames[2]) == 4 and struct.unpack("<I", frames[2])[0] >= 0


async def test_slow_subscriber_past_the_high_water_mark_sees_gaps_and_the_node_keeps_running(tmp_path) -> None:
    node = feed_node(tmp_path, hwm=100)
    total = 20_000
    async with node.running():
        feed = node.component("exporter", "feed")
        with FeedSubscriber(feed.endpoint, ["BlockProduced", "SpamDetected"], rcvhwm=100) as slow:
            await connected(node, slow)
            slow.gaps.next_seq["BlockProduced"] = 0  # count from the topic's first message
            # The subscriber reads nothing while the node publishes far more than both high-water marks.
            with anyio.fail_after(30):
                for i in range(total):
                    await node.bus.publish(BlockProduced(i, "", 0.0))
                while feed.stats()["sent"].get("BlockProduced", 0) < total:
                    await anyio.sleep(0.01)
            numbers: list[int] = []

            async def read_until(last: int | None, idle: float) -> None:
                while True:
                    with anyio.move_on_after(idle) as scope:
                        async for topic, body, seq in slow.messages():
                            if topic == "BlockProduced":
                                slow.gaps.see(topic, seq)
                                numbers.append(orjson.loads(body)["number"])
                                if numbers[-1] == last:
                                    return
                                break
                    if scope.cancelled_caught and last is None:
                        return

            with anyio.fail_after(20):
                await read_until(None, 0.5)  # what it kept through the overflow
                # An event published once it reads again arrives, numbered after the gap.
                await node.bus.publish(BlockProduced(total, "", 0.0))
                await read_until(total, 5.0)
            # The node kept running: its bus still delivers, the feed still publishes.
            await node.bus.publish(SpamDetected("after", "probe"))
            with anyio.fail_after(10):
                async for topic, _body, _seq in slow.messages():
                    if topic == "SpamDetected":
                        break
        assert feed.stats()["dropped"] == 0  # the bus never dropped: the socket did, per subscriber
    assert slow.gaps.missed > 0, "the slow subscriber should have missed messages"
    assert slow.gaps.received + slow.gaps.missed == total + 1
    assert numbers == sorted(numbers) and len(numbers) < total + 1


async def test_unknown_event_class_is_a_config_error_naming_the_key(tmp_path) -> None:
    node = feed_node(tmp_path, events=["BlockProduced", "BlockProducd"])
    with pytest.raises(Exception) as err:
        async with node.running():
            pass
    text = str(err.value)
    assert "exporters.feed" in text and "BlockProducd" in text and "BlockProduced" in text


def test_non_loopback_bind_is_refused_without_allow_remote(tmp_path) -> None:
    with pytest.raises(ConfigError) as err:
        feed_node(tmp_path, bind="tcp://0.0.0.0:28332")
    assert "exporters.feed.bind" in str(err.value) and "allow_remote" in str(err.value)
