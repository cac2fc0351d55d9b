"""Text models served from worker processes (``[models.NAME] workers = N``): same answers as in process,
memory reported per worker, a killed worker gives a typed error and the node keeps serving."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from text_helpers import task, text_doc, write_corpus
from tnode.errors import TaskError
from tnode.node import Node
from tnode.plugins.text.tokenizer import encode
from tnode.workers import WorkerLost

pytestmark = pytest.mark.anyio

SHAPE = {"d_model": 32, "n_layers": 1, "n_heads": 2, "context": 16}  # untrained, seeded: real torch, fast


def transformer(workers: int) -> dict[str, Any]:
    pytest.importorskip("torch")
    return {"type": "transformer", "threads": 1, "workers": workers, **SHAPE}


def direct() -> Any:
    from tnode.plugins.text.config import TransformerConfig
    from tnode.plugins.text.transformer import TransformerModel

    model = TransformerModel(None, "direct", TransformerConfig(threads=1, **SHAPE))
    model.load()
    return model


def node(tmp_path: Path, model: dict[str, Any]) -> Node:
    corpus = write_corpus(tmp_path, files=4, words=50)
    return Node.from_dict(text_doc(corpus, model, top_k=4), data_dir=tmp_path / "miner")


async def test_workers_answer_like_the_model_in_process(tmp_path: Path) -> None:
    miner = node(tmp_path, transformer(workers=2))
    reference = direct()
    with anyio.fail_after(60):
        async with miner.running():
            text = miner.component("modality", "text")
            model = miner.component("model", "main")
            assert model.model is None and model.context == SHAPE["context"]  # no weights in the node itself
            ids = encode("every validator keeps the held out text")
            want = reference.next_token_logprobs(ids[None].astype(np.int64))[0]
            results = await _gather([text.handle(task("next_token", {"k": 4, "positions": "all"}, ids))
                                     for _ in range(20)])
            for result in results:
                got = np.asarray(result.payload)
                np.testing.assert_allclose(got, -np.sort(-want, axis=-1)[:, :4], atol=1e-5)
            stats = model.stats()
            assert [w["state"] for w in stats["workers"]] == ["idle", "idle"]
            assert all(w["rss_bytes"] > 20 * 2**20 for w in stats["workers"])  # torch + weights per worker
            assert stats["requests"] == 20


async def test_a_killed_worker_fails_its_request_typed_and_the_node_keeps_serving(tmp_path: Path) -> None:
    miner = node(tmp_path, transformer(workers=1))
    with anyio.fail_after(60):
        async with miner.running():
            text = miner.component("modality", "text")
            model = miner.component("model", "main")
            (victim,) = model.pool.pids()
            os.kill(victim, signal.SIGSTOP)  # the request below reaches it and stays there
            ids = encode("the quick brown fox")
            async with anyio.create_task_group() as tg:
                failure: list[BaseException] = []

                async def ask() -> None:
                    try:
                        await text.handle(task("next_token", {"k": 4}, ids, timeout=30))
                    except TaskError as exc:
                        failure.append(exc)

                tg.start_soon(ask)
                while model.stats()["workers"][0].get("state") != "busy":
                    await anyio.sleep(0.01)
                os.kill(victim, signal.SIGKILL)
            assert isinstance(failure[0], WorkerLost) and failure[0].code == "internal"
            result = await text.handle(task("next_token", {"k": 4}, ids, timeout=30))  # the restarted worker
            assert np.asarray(result.payload).shape == (1, 4)
            assert model.stats()["restarts"] == 1 and victim not in model.pool.pids()


async def test_in_process_models_report_the_nodes_memory(tmp_path: Path) -> None:
    miner = node(tmp_path, {"type": "uniform"})
    async with miner.running():
        stats = miner.component("model", "main").stats()
        assert stats["workers"] == 0 and stats["rss_bytes"] > 0


async def _gather(calls: list[Any]) -> list[Any]:
    out: list[Any] = [None] * len(calls)

    async def one(i: int) -> None:
        out[i] = await calls[i]

    async with anyio.create_task_group() as tg:
        for i in range(len(calls)):
            tg.start_soon(one, i)
    return out
