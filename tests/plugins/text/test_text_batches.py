"""Batched ``next_token`` requests: B tasks in one frame, answered like B single requests, refused
before inference when over ``max_tasks``, and counted as B tasks by the token bucket."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from text_helpers import task, text_doc, write_corpus
from tnode.errors import TaskError
from tnode.node import Node
from tnode.plugins.text.tokenizer import encode

pytestmark = pytest.mark.anyio

SHAPE = {"d_model": 32, "n_layers": 1, "n_heads": 2, "context": 16}


def miner(tmp_path: Path, *, spam: dict[str, Any] | None = None, **modality: Any) -> Node:
    pytest.importorskip("torch")
    corpus = write_corpus(tmp_path, files=4, words=50)
    doc = text_doc(corpus, {"type": "transformer", "threads": 1, **SHAPE}, top_k=4, **modality)
    doc["transport"] = {"type": "libp2p", "listen": ["/ip4/127.0.0.1/tcp/0"], "announce_interval": 0.0,
                        "dht": False, "gossip": False}
    if spam:
        doc["spam"] = spam
    return Node.from_dict(doc, data_dir=tmp_path / "miner")


def rows(b: int, t: int = 20) -> np.ndarray:
    text = encode("every validator keeps the held out text that no miner has seen, and the quick fox")
    return np.stack([text[i : i + t] for i in range(b)]).astype(np.int64)


async def test_a_batch_is_answered_like_its_tasks_one_by_one(tmp_path: Path) -> None:
    node = miner(tmp_path)
    with anyio.fail_after(60):
        async with node.running():
            text = node.component("modality", "text")
            batch = rows(5)
            for positions in ("all", "last"):
                got = await text.handle(task("next_token", {"k": 4, "positions": positions, "batch": 5}, batch))
                values = np.asarray(got.payload)
                assert values.shape == (5, 20 if positions == "all" else 1, 4)
                for i in range(5):
                    one = await text.handle(task("next_token", {"k": 4, "positions": positions}, batch[i]))
                    assert got.body["ids"][i] == one.body["ids"]
                    np.testing.assert_allclose(values[i], one.payload, atol=1e-5)


async def test_a_batch_over_max_tasks_or_not_matching_its_payload_is_refused_before_inference(
        tmp_path: Path) -> None:
    node = miner(tmp_path, max_tasks=4)
    with anyio.fail_after(60):
        async with node.running():
            text = node.component("modality", "text")
            before = text.batcher.requests
            with pytest.raises(TaskError, match="exceeds max_tasks 4") as too_many:
                await text.handle(task("next_token", {"k": 4, "batch": 5}, rows(5)))
            assert too_many.value.code == "too_large"
            for body, payload in (({"batch": 3}, rows(4)), ({"batch": True}, rows(1)), ({"batch": 2}, rows(2)[0]),
                                  ({}, rows(3))):  # without `batch` a request is one task: one row only
                with pytest.raises(TaskError) as bad:
                    await text.handle(task("next_token", {"k": 4, **body}, payload))
                assert bad.value.code == "invalid_request"
            assert text.batcher.requests == before  # nothing reached the model


async def test_the_token_bucket_counts_the_tasks_of_a_batch_over_libp2p(tmp_path: Path) -> None:
    node = miner(tmp_path, spam={"rate": {"type": "token_bucket", "rate": 0.0, "burst": 8.0}})
    client = Node.from_dict({"transport": {"type": "libp2p", "listen": ["/ip4/127.0.0.1/tcp/0"],
                                           "announce_interval": 0.0, "dht": False, "gossip": False}},
                            data_dir=tmp_path / "client")
    with anyio.fail_after(60):
        async with node.running(), client.running():
            addr = node.transport.listen_addrs()[0]
            reply = await client.transport.request(addr, "text", "next_token", {"k": 4, "batch": 6}, rows(6),
                                                   timeout=20)
            assert np.asarray(reply.payload).shape == (6, 1, 4)  # six tasks, one frame
            with pytest.raises(TaskError, match="rate_limited"):  # 2 tokens left, not 6
                await client.transport.request(addr, "text", "next_token", {"k": 4, "batch": 6}, rows(6),
                                               timeout=20)
            for _ in range(2):
                await client.transport.request(addr, "text", "next_token", {"k": 4}, rows(1)[0], timeout=20)
            with pytest.raises(TaskError, match="rate_limited"):
                await client.transport.request(addr, "text", "next_token", {"k": 4}, rows(1)[0], timeout=20)
