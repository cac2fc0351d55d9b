"""token_bucket: per-sender rates with bursts, per-modality overrides, bounded memory."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from antispam_fakes import hotkey, make_node, request
from tnode.config import load_table
from tnode.errors import ConfigError, TaskError
from tnode.plugins.antispam.bucket import Buckets, TokenBucket
from tnode.plugins.antispam.config import TokenBucketConfig

pytestmark = pytest.mark.anyio

ALICE, BOB = hotkey("alice"), hotkey("bob")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def bucket_filter(clock: Clock, **options: object) -> TokenBucket:
    config = load_table(TokenBucketConfig, options)
    return TokenBucket(SimpleNamespace(bus=None, log=None), "rate", config, clock=clock)


async def admitted(flt: TokenBucket, sender: str, modality: str = "text") -> bool:
    try:
        await flt.admit(request(sender, modality))
    except TaskError as exc:
        assert exc.code == "rate_limited"
        return False
    return True


async def test_burst_then_refill_at_the_rate() -> None:
    clock = Clock()
    flt = bucket_filter(clock, rate=2.0, burst=5.0)
    assert [await admitted(flt, ALICE) for _ in range(7)] == [True] * 5 + [False] * 2
    clock.now += 0.5  # one token back
    assert [await admitted(flt, ALICE) for _ in range(2)] == [True, False]
    clock.now += 100.0  # refills only up to the burst
    assert sum([await admitted(flt, ALICE) for _ in range(10)]) == 5
    assert flt.stats()["admitted"] == 11
    assert flt.stats()["refused"] == {"rate_limited": 8}


async def test_senders_have_separate_buckets() -> None:
    flt = bucket_filter(Clock(), rate=0.0, burst=2.0)
    assert [await admitted(flt, ALICE) for _ in range(3)] == [True, True, False]
    assert [await admitted(flt, BOB) for _ in range(3)] == [True, True, False]


async def test_refusal_says_when_to_retry() -> None:
    flt = bucket_filter(Clock(), rate=4.0, burst=1.0)
    await flt.admit(request(ALICE))
    with pytest.raises(TaskError, match=r"retry in 0\.25 s"):
        await flt.admit(request(ALICE))


async def test_modality_override_has_its_own_bucket() -> None:
    clock = Clock()
    flt = bucket_filter(clock, rate=0.0, burst=3.0, modalities={"text": {"rate": 0.0, "burst": 1.0}})
    assert [await admitted(flt, ALICE, "text") for _ in range(2)] == [True, False]
    # Other modalities share the default bucket, untouched by the text requests.
    assert [await admitted(flt, ALICE, "echo") for _ in range(2)] + [await admitted(flt, ALICE, "chain")] + [
        await admitted(flt, ALICE, "chain")] == [True, True, True, False]


async def test_allowlist_and_exempt_modalities() -> None:
    flt = bucket_filter(Clock(), rate=0.0, burst=1.0, allow=[BOB], exempt_modalities=["chain"])
    assert all([await admitted(flt, BOB) for _ in range(20)])
    assert all([await admitted(flt, ALICE, "chain") for _ in range(20)])


def test_memory_is_bounded_by_max_peers() -> None:
    buckets = Buckets(capacity=100, clock=Clock())
    for i in range(10_000):
        buckets.take(f"sender-{i}", "*", 1.0, 2.0)
    assert len(buckets) == 100
    assert buckets.evicted == 9_900


def test_least_recently_used_bucket_is_the_one_forgotten() -> None:
    clock = Clock()
    buckets = Buckets(capacity=2, clock=clock)
    assert buckets.take("a", "*", 0.0, 1.0) == 0.0
    buckets.take("b", "*", 0.0, 1.0)
    assert buckets.take("a", "*", 0.0, 1.0) > 0  # a is empty and now most recently used
    buckets.take("c", "*", 0.0, 1.0)  # forgets b, not a
    assert buckets.take("a", "*", 0.0, 1.0) > 0
    assert buckets.take("b", "*", 0.0, 1.0) == 0.0  # b starts over with a full bucket


def test_bad_override_table_is_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError) as err:
        make_node(tmp_path, {"rate": {"type": "token_bucket", "modalities": {"text": {"rate": 1.0, "brust": 2}}}})
    assert "spam.rate.modalities.text" in str(err.value)


async def test_configured_in_a_node(tmp_path) -> None:
    node = make_node(tmp_path, {"rate": {"type": "token_bucket", "rate": 1.0, "burst": 2.0}})
    async with node.running():
        flt = node.component("spam_filter", "rate")
        await flt.admit(request(ALICE))
        await flt.admit(request(ALICE))
        with pytest.raises(TaskError):
            await flt.admit(request(ALICE))
    assert flt.stats() == {"type": "token_bucket", "admitted": 2, "admitted_by": {"within_rate": 2},
                           "refused": {"rate_limited": 1}, "buckets": 1, "evicted": 0}


async def test_a_batched_request_pays_one_token_per_task() -> None:
    clock = Clock()
    flt = bucket_filter(clock, rate=1.0, burst=10.0)
    await flt.admit(request(ALICE, body={"batch": 6}))  # 6 of 10 tokens
    with pytest.raises(TaskError, match="tasks/s"):
        await flt.admit(request(ALICE, body={"batch": 6}))  # 4 left: a second batch of 6 waits
    assert [await admitted(flt, ALICE) for _ in range(5)] == [True] * 4 + [False]  # single tasks pay one each
    clock.now += 3.0
    await flt.admit(request(ALICE, body={"batch": 3}))


async def test_a_batch_larger_than_the_burst_is_refused_for_good() -> None:
    flt = bucket_filter(Clock(), rate=100.0, burst=8.0)
    with pytest.raises(TaskError, match="batch of 9 tasks exceeds the burst of 8"):
        await flt.admit(request(ALICE, body={"batch": 9}))
    for malformed in (0, -3, True, 2.5, "16"):  # not a task count: the request counts as one task
        assert request(ALICE, body={"batch": malformed}).tasks == 1
