"""Event bus benchmark: throughput to 1 and 8 subscribers, publish→deliver latency.

Baselines, measured in the same run on the same backend (trio): an anyio memory object stream
and a raw trio memory channel carrying the same events from one producer to one consumer.
Goals: ≥ 200k events/s to one subscriber and p50 publish→deliver latency ≤ 50 µs.

    python bench/bus.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
import trio
from tnode.bus import EventBus
from tnode.events import Event

GOAL_EVENTS_PER_S = 200_000
GOAL_P50_US = 50.0


@dataclass(frozen=True, slots=True)
class Sampled(Event):
    """A benchmark event carrying its publish time."""

    n: int
    t0: int = 0


# --------------------------------------------------------------------------- throughput
async def bus_throughput(events: int, subscribers: int) -> float:
    """Events published per second until every subscriber has received all of them."""
    done = anyio.Event()
    remaining = subscribers

    def make_handler() -> Callable[[Sampled], Awaitable[None]]:
        count = 0

        async def handler(ev: Sampled) -> None:
            nonlocal count, remaining
            count += 1
            if count == events:
                remaining -= 1
                if remaining == 0:
                    done.set()

        return handler

    async with EventBus() as bus:
        for i in range(subscribers):
            bus.subscribe(Sampled, make_handler(), name=f"bench-{i}", maxsize=1024, when_full="block")
        batch = [Sampled(i) for i in range(events)]
        start = time.perf_counter()
        for ev in batch:
            await bus.publish(ev)
        await done.wait()
        elapsed = time.perf_counter() - start
    return events / elapsed


async def anyio_stream_throughput(events: int) -> float:
    send, receive = anyio.create_memory_object_stream[Sampled](1024)
    batch = [Sampled(i) for i in range(events)]

    async def consume() -> None:
        async with receive:
            async for _ in receive:
                pass

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        async with send:
            for ev in batch:
                await send.send(ev)
    return events / (time.perf_counter() - start)


async def trio_channel_throughput(events: int) -> float:
    send, receive = trio.open_memory_channel[Sampled](1024)
    batch = [Sampled(i) for i in range(events)]

    async def consume() -> None:
        async with receive:
            async for _ in receive:
                pass

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        async with send:
            for ev in batch:
                await send.send(ev)
    return events / (time.perf_counter() - start)


# --------------------------------------------------------------------------- latency
async def bus_latency(samples: int) -> list[float]:
    """Microseconds from publish() to the handler, one event in flight at a time."""
    out: list[float] = []
    arrived = anyio.Event()

    async def handler(ev: Sampled) -> None:
        out.append((time.perf_counter_ns() - ev.t0) / 1000)
        arrived.set()

    async with EventBus() as bus:
        bus.subscribe(Sampled, handler, name="latency")
        await anyio.sleep(0)
        for i in range(samples):
            arrived = anyio.Event()
            await bus.publish(Sampled(i, time.perf_counter_ns()))
            await arrived.wait()
    return out


async def trio_channel_latency(samples: int) -> list[float]:
    out: list[float] = []
    send, receive = trio.open_memory_channel[Sampled](1024)
    acks_send, acks_receive = trio.open_memory_channel[None](1)

    async def consume() -> None:
        async for ev in receive:
            out.append((time.perf_counter_ns() - ev.t0) / 1000)
            await acks_send.send(None)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        for i in range(samples):
            await send.send(Sampled(i, time.perf_counter_ns()))
            await acks_receive.receive()
        nursery.cancel_scope.cancel()
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer events and runs (seconds)")
    args = parser.parse_args()
    events = 50_000 if args.quick else 200_000
    runs = 3 if args.quick else 7
    samples = 2_000 if args.quick else 10_000

    def median_of(fn: Callable[..., Awaitable[float]], *a: int) -> float:
        return statistics.median(trio.run(fn, *a) for _ in range(runs))

    print(f"tnode bus benchmark (trio backend): {events} events x {runs} runs, medians")
    one = median_of(bus_throughput, events, 1)
    eight = median_of(bus_throughput, events, 8)
    stream = median_of(anyio_stream_throughput, events)
    channel = median_of(trio_channel_throughput, events)
    print(f"{'case':44} {'events/s':>12} {'vs anyio stream':>16} {'vs trio channel':>16}")
    for label, value in (
        ("bus, 1 subscriber", one),
        ("bus, 8 subscribers (each event delivered 8x)", eight),
        ("baseline: anyio memory object stream", stream),
        ("baseline: trio memory channel", channel),
    ):
        print(f"{label:44} {value:12,.0f} {value / stream:15.2f}x {value / channel:15.2f}x")
    print(f"{'bus, 8 subscribers: deliveries/s':44} {eight * 8:12,.0f}")

    lat_runs = [trio.run(bus_latency, samples) for _ in range(runs)]
    base_runs = [trio.run(trio_channel_latency, samples) for _ in range(runs)]
    p50 = statistics.median(pct(r, 0.50) for r in lat_runs)
    p99 = statistics.median(pct(r, 0.99) for r in lat_runs)
    b50 = statistics.median(pct(r, 0.50) for r in base_runs)
    b99 = statistics.median(pct(r, 0.99) for r in base_runs)
    print(f"\npublish→deliver latency, one event in flight, {samples} samples x {runs} runs (µs):")
    print(f"{'':44} {'p50':>8} {'p99':>8}")
    print(f"{'bus':44} {p50:8.1f} {p99:8.1f}")
    print(f"{'baseline: trio memory channel':44} {b50:8.1f} {b99:8.1f}")

    ok_rate = one >= GOAL_EVENTS_PER_S
    ok_lat = p50 <= GOAL_P50_US
    print(f"\ngoal ≥ {GOAL_EVENTS_PER_S:,} events/s to 1 subscriber: {one:,.0f} -> {'PASS' if ok_rate else 'FAIL'}")
    print(f"goal p50 ≤ {GOAL_P50_US:.0f} µs: {p50:.1f} µs -> {'PASS' if ok_lat else 'FAIL'}")


if __name__ == "__main__":
    main()
