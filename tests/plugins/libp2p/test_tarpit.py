"""Slow refusals: a peer that keeps earning abuse refusals is answered slowly; others are not."""

from __future__ import annotations

import time

import anyio
import pytest
from libp2p_helpers import make_node
from tnode.errors import TaskError
from tnode.plugins.libp2p.tarpit import Tarpit

pytestmark = pytest.mark.anyio


def test_strikes_accumulate_decay_and_only_abuse_counts() -> None:
    pit = Tarpit(after=3, delay=0.5, forgive_per_second=0.0)
    for _ in range(3):
        pit.strike("p", "unregistered")
    assert pit.delay("p") == 0.0  # at the threshold, not over it
    pit.strike("p", "overloaded")  # the node's own state is no strike
    pit.strike("p", "timeout")
    assert pit.delay("p") == 0.0
    pit.strike("p", "bad_signature")
    assert pit.delay("p") == 0.5
    assert pit.delay("q") == 0.0
    forgiving = Tarpit(after=1, delay=0.5, forgive_per_second=1000.0)
    forgiving.strike("p", "rate_limited")
    forgiving.strike("p", "rate_limited")
    time.sleep(0.01)  # 1000 strikes/s forgiven: both are gone
    assert forgiving.delay("p") == 0.0


def test_memory_is_bounded() -> None:
    pit = Tarpit(after=1, delay=0.1, forgive_per_second=0.0, max_peers=100)
    for i in range(1000):
        pit.strike(f"peer{i}", "unregistered")
    assert len(pit._levels) == 100
    assert pit.level("peer999") == 1.0 and pit.level("peer0") == 0.0


def test_disabled_never_delays() -> None:
    pit = Tarpit(after=0, delay=0.5, forgive_per_second=0.0)
    for _ in range(50):
        pit.strike("p", "unregistered")
    assert pit.delay("p") == 0.0


async def _refusal_times(client, target: str, n: int) -> list[float]:
    times = []
    for _ in range(n):
        began = time.monotonic()
        with pytest.raises(TaskError) as err:
            await client.transport.request(target, "echo", "echo", {}, timeout=5)
        assert err.value.code == "rate_limited"
        times.append(time.monotonic() - began)
    return times


async def test_a_flooding_peer_gets_slow_refusals_and_a_polite_one_does_not(tmp_path) -> None:
    limited = {"spam": {"rate": {"type": "token_bucket", "rate": 0.0, "burst": 1}}}
    a = make_node(tmp_path, "a", tarpit_after=5, tarpit_delay=0.6, tarpit_forgive_per_second=0.0, extra=limited)
    flooder = make_node(tmp_path, "flooder")
    polite = make_node(tmp_path, "polite")
    async with a.running(), flooder.running(), polite.running():
        target = a.transport.listen_addrs()[0]
        await flooder.transport.request(target, "echo", "echo", {}, timeout=5)  # the burst of 1
        fast = await _refusal_times(flooder, target, 3)
        assert max(fast) < 0.5, fast
        # Strikes 1..5 are answered at once (announcements refused by the rate limit may be among
        # them); from the sixth on, every refusal waits.
        rest = await _refusal_times(flooder, target, 5)
        slow_from = next(i for i, t in enumerate(rest) if t >= 0.6)
        assert slow_from <= 2 and min(rest[slow_from:]) >= 0.6, rest
        # Another peer is judged on its own record.
        await polite.transport.request(target, "echo", "echo", {}, timeout=5)
        with anyio.fail_after(5):
            (first,) = await _refusal_times(polite, target, 1)
        assert first < 0.5
        assert a.transport.tarpit.delayed >= 3
