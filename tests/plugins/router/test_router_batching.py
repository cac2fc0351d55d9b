"""Concurrent queries to one miner share batched requests: fewer requests, the same answers, a bad
row fails only its miner, a query that gives up leaves the batch to the others, and the off switch."""

from __future__ import annotations

import time

import anyio
import numpy as np
import pytest
import tnode.plugins.router as router_plugin
from tnode import dispatch
from tnode.errors import TaskError
from tnode.events import TaskReceived
from tnode.interfaces import TaskResult
from tnode.keys import Keypair
from tnode.node import Node
from tnode.plugins.router.localnet import heldout_windows, local_net
from tnode.testing import LoopbackNetwork, MemoryChain, plugin_manager

pytestmark = pytest.mark.anyio


def favourite_of(row: np.ndarray) -> int:
    return int(row[-1]) ^ 0x55  # a different answer per context, so rows cannot be mixed up unnoticed


def batched_topk(seen: list[int], *, delay: float = 0.0, bad_row: bool = False):
    """A text miner that answers single and batched ``next_token`` tasks (last position), after
    ``delay``; ``seen`` records each request's batch size. ``bad_row``: the last row of a batch
    repeats a token id (an invalid answer); single answers stay valid."""
    async def respond(task: TaskReceived) -> TaskResult:
        seen.append(task.body.get("batch", 0))
        await anyio.sleep(delay)
        rows = task.payload if "batch" in task.body else task.payload[None]
        ids = [[[favourite_of(r), (favourite_of(r) + 1) % 256]] for r in rows]
        if bad_row and "batch" in task.body:
            ids[-1] = [[7, 7]]
        values = np.log(np.array([[[0.6, 0.2]]] * len(rows), dtype=np.float32))
        if "batch" in task.body:
            return TaskResult({"ids": ids}, values)
        return TaskResult({"ids": ids[0]}, values[0])
    return respond


def painter(seen: list[int], value: int, *, delay: float):
    async def respond(task: TaskReceived) -> TaskResult:
        seen.append(task.body.get("batch", 0))
        await anyio.sleep(delay)
        return TaskResult({}, np.full(task.payload.shape, value, np.uint8))
    return respond


def setup(tmp_path, responders, **router):
    chain, network = MemoryChain(), LoopbackNetwork()
    hot = []
    for respond in responders:
        key = Keypair.generate()
        chain.add_neuron(key.public_hex, addrs=[network.add_responder(key, respond)], peer_id=key.peer_id)
        hot.append(key.public_hex)
    cfg = {"type": "moe", "modality": "text", "seed": 3, "timeout": 2.0, "timeout_after_k_min": 0.3, **router}
    node = Node.from_dict({"transport": {"type": "loopback"}, "chain": {"type": "memory"}, "routers": {"r": cfg}},
                          data_dir=tmp_path / "client", hotkey=Keypair.generate(),
                          plugins=plugin_manager(chain=chain, network=network, extra=[router_plugin]))
    return node, hot


async def concurrently(n: int, query) -> list:
    out: list = [None] * n

    async def one(i: int) -> None:
        out[i] = await query(i)

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
    return out


@pytest.mark.slow
async def test_concurrent_queries_share_requests_and_answer_as_unbatched_routing(tmp_path) -> None:
    common = {"k": 2, "k_min": 2, "timeout": 5.0, "timeout_after_k_min": 5.0, "seed": 5}
    async with local_net(tmp_path, (25_000, 50_000), router={**common, "batch_window_ms": 20.0},
                         more_routers={"plain": {**common, "batch": False}}) as net:
        batched, plain = net.router("main"), net.router("plain")
        windows = heldout_windows(net.heldout, 24, 33, seed=2)
        served = [dispatch.of(m).stats["served"] for m in net.miners]
        mixed = await concurrently(len(windows), lambda i: batched.next_token(windows[i]))
        requests = [dispatch.of(m).stats["served"] - s for m, s in zip(net.miners, served, strict=True)]
        single = [await plain.next_token(w) for w in windows]
        # A completion per client at once: their contexts grow in step, so each step shares requests.
        served = [dispatch.of(m).stats["served"] for m in net.miners]
        prompts = [w[:16] for w in windows[:8]]
        completions = await concurrently(len(prompts), lambda i: batched.complete(prompts[i], 6))
        completion_requests = [dispatch.of(m).stats["served"] - s for m, s in zip(net.miners, served, strict=True)]
        alone = [(await plain.complete(p, 6))[0] for p in prompts]
    assert all(0 < r < len(windows) / 2 for r in requests), requests  # 24 queries per miner, far fewer requests
    assert batched.coalescer is None  # the router stopped with its node
    for b, s in zip(mixed, single, strict=True):
        assert sorted(b.used) == sorted(s.used)
        assert np.allclose(b.value, s.value, atol=1e-12)
        for h in b.used:
            assert np.array_equal(b.parts[b.used.index(h)], s.parts[s.used.index(h)])
    assert [c[0] for c in completions] == alone
    # 48 steps per miner; clients drift apart a little as each mixes its answers, so not every step
    # of every client shares one request, but many do.
    assert all(r < 0.8 * 6 * len(prompts) for r in completion_requests), completion_requests


async def test_a_bad_row_fails_that_miner_for_its_batch_and_only_that_miner(tmp_path) -> None:
    seen: list[list[int]] = [[], [], []]
    node, hot = setup(tmp_path, [batched_topk(seen[0], delay=0.05), batched_topk(seen[1], delay=0.05),
                                 batched_topk(seen[2], delay=0.05, bad_row=True)],
                      k=3, k_min=2, batch_window_ms=500.0, backoff_base=5.0, backoff_max=5.0)
    contexts = [np.array([1, 2, i], np.int32) for i in range(8)]
    async with node.running():
        router = node.component("router")
        start = time.monotonic()
        mixed = await concurrently(8, lambda i: router.next_token(contexts[i]))
        elapsed = time.monotonic() - start
        bad = router.board.miners[hot[2]]
    # The first query goes alone; the seven behind it share the next request once the first returns.
    assert seen == [[0, 7], [0, 7], [0, 7]] and elapsed < 0.4
    for i, m in enumerate(mixed):
        assert hot[0] in m.used and hot[1] in m.used
        assert int(np.argmax(m.value[0])) == favourite_of(contexts[i])  # each query got its own row
    failed = [m for m in mixed if hot[2] in m.outcome.failures]
    assert len(failed) == 7 and {m.outcome.failures[hot[2]] for m in failed} == {"invalid_response"}
    assert bad.errors == {"invalid_response": 7}
    assert bad.failures == 1 and bad.backoff_until > time.monotonic()  # one batched request: one failure
    assert router.board.miners[hot[0]].failures == 0 and router.board.miners[hot[0]].answered == 8


async def test_a_query_that_gives_up_leaves_the_batch_to_the_others(tmp_path) -> None:
    seen: list[int] = []
    node, hot = setup(tmp_path, [batched_topk(seen, delay=0.2)], k=1, k_min=1, batch_window_ms=1000.0)
    contexts = [np.array([3, i], np.int32) for i in range(4)]
    results: dict[int, object] = {}
    async with node.running():
        router = node.component("router")
        scopes = [anyio.CancelScope() for _ in contexts]

        async def query(i: int) -> None:
            with scopes[i]:
                results[i] = await router.next_token(contexts[i])

        async with anyio.create_task_group() as tg:
            tg.start_soon(query, 0)  # goes at once and keeps the miner busy for 0.2 s
            await anyio.sleep(0.05)
            for i in (1, 2, 3):
                tg.start_soon(query, i)
            await anyio.sleep(0.05)
            scopes[1].cancel()  # gives up while waiting to be sent
            await anyio.sleep(0.2)  # query 0 returned; 2 and 3 travel as one batch
            assert seen == [0, 2]
            scopes[2].cancel()  # gives up while its batch is in flight
        rec = router.board.miners[hot[0]]
    assert sorted(results) == [0, 3]
    assert int(np.argmax(results[3].value[0])) == favourite_of(contexts[3])
    assert rec.failures == 0 and not rec.errors and rec.answered == 2


async def test_a_batch_whose_every_query_gave_up_is_cancelled(tmp_path) -> None:
    seen: list[int] = []
    finished: list[int] = []
    inner = batched_topk(seen, delay=0.2)

    async def respond(task: TaskReceived) -> TaskResult:
        result = await inner(task)
        finished.append(task.body.get("batch", 0))
        return result

    node, _ = setup(tmp_path, [respond], k=1, k_min=1, batch_window_ms=500.0)
    async with node.running():
        router = node.component("router")
        scopes = [anyio.CancelScope() for _ in range(3)]

        async def query(i: int) -> None:
            with scopes[i]:
                await router.next_token(np.array([6, i], np.int32))

        async with anyio.create_task_group() as tg:
            tg.start_soon(query, 0)
            await anyio.sleep(0.05)
            tg.start_soon(query, 1)
            tg.start_soon(query, 2)
            await anyio.sleep(0.25)  # query 0 returned; 1 and 2 are in flight as one batch
            scopes[1].cancel()
            scopes[2].cancel()
        await anyio.sleep(0.5)  # past the window of the two: nothing of the lane is left
        lanes = len(router.coalescer.lanes)
    assert seen == [0, 2] and finished == [0] and lanes == 0


def capped(seen: list[int], most: int, *, delay: float):
    """A text miner whose max_tasks is ``most``: larger batches are refused as too_large."""
    inner = batched_topk(seen, delay=delay)

    async def respond(task: TaskReceived) -> TaskResult:
        if task.body.get("batch", 1) > most:
            seen.append(-task.body["batch"])
            raise TaskError("too_large", f"a batch of {task.body['batch']} tasks exceeds max_tasks {most}")
        return await inner(task)
    return respond


async def test_a_miner_refusing_large_batches_gets_smaller_ones_and_no_query_fails(tmp_path) -> None:
    seen: list[int] = []
    node, hot = setup(tmp_path, [capped(seen, 3, delay=0.05)], k=1, k_min=1, batch_window_ms=500.0)
    contexts = [np.array([4, i], np.int32) for i in range(10)]
    async with node.running():
        router = node.component("router")
        mixed = await concurrently(10, lambda i: router.next_token(contexts[i]))
        limits = list(router.coalescer.limits.values())
        rec = router.board.miners[hot[0]]
    assert [int(np.argmax(m.value[0])) for m in mixed] == [favourite_of(c) for c in contexts]
    assert seen[:2] == [0, -9] and limits == [2]  # 9 refused, then 4 refused, then 2 at a time
    assert sum(max(b, 1) for b in seen if b >= 0) == 10 and max(seen) <= 3
    assert rec.failures == 0 and not rec.errors and rec.answered == 10


async def test_images_of_one_task_and_size_share_a_request(tmp_path) -> None:
    seen: list[list[int]] = [[], []]
    node, hot = setup(tmp_path, [painter(seen[0], 100, delay=0.05), painter(seen[1], 104, delay=0.05)],
                      modality="image", k=2, k_min=2, batch_window_ms=500.0)
    images = [np.full((8, 8, 1), 90 + i, np.uint8) for i in range(5)]
    async with node.running():
        router = node.component("router")
        mixed = await concurrently(5, lambda i: router.image("denoise", images[i], {"sigma": 10.0}, how="median"))
    assert seen == [[0, 4], [0, 4]]
    assert all(m.value.shape == (8, 8, 1) and int(m.value[0, 0, 0]) == 102 and len(m.used) == 2 for m in mixed)


@pytest.mark.parametrize("off", [{"batch": False}, {"batch_window_ms": 0.0}])
async def test_the_off_switch_sends_one_request_per_query(tmp_path, off) -> None:
    seen: list[int] = []
    node, _ = setup(tmp_path, [batched_topk(seen, delay=0.05)], k=1, k_min=1, **off)
    async with node.running():
        router = node.component("router")
        assert router.coalescer is None
        await concurrently(6, lambda i: router.next_token(np.array([5, i], np.int32)))
    assert seen == [0] * 6


async def test_a_lone_query_does_not_wait_the_window(tmp_path) -> None:
    seen: list[int] = []
    node, _ = setup(tmp_path, [batched_topk(seen)], k=1, k_min=1, batch_window_ms=1000.0)
    async with node.running():
        router = node.component("router")
        start = time.monotonic()
        for i in range(3):
            await router.next_token(np.array([9, i], np.int32))
        elapsed = time.monotonic() - start
    assert seen == [0, 0, 0] and elapsed < 0.5  # three windows would be 3 s
