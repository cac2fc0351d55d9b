"""Tokenizer, datasets, models and the text modality (over the real libp2p transport)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trio
from text_helpers import miner_doc, write_corpus
from tnode.errors import TaskError
from tnode.interfaces import Reply
from tnode.node import Node
from tnode.plugins.text.config import NgramConfig, PythonDocsConfig, TextFilesConfig, UniformConfig
from tnode.plugins.text.datasets import TokenDataset
from tnode.plugins.text.modality import check_topk
from tnode.plugins.text.models import NgramModel, UniformModel
from tnode.plugins.text.tokenizer import decode, encode
from tnode.plugins.text.transformer import cross_entropy


def test_tokenizer_round_trip():
    text = "héllo, wörld — ∑ 🐍"
    ids = encode(text)
    assert ids.dtype == np.uint8 and decode(ids) == text


def test_python_docs_is_deterministic_and_splits_are_disjoint():
    a = TokenDataset(None, "d", PythonDocsConfig(max_bytes=200_000))
    b = TokenDataset(None, "d", PythonDocsConfig(max_bytes=200_000))
    assert np.array_equal(a.tokens("train"), b.tokens("train"))
    assert np.array_equal(a.tokens("heldout"), b.tokens("heldout"))
    from tnode.plugins.text.datasets import _heldout, stdlib_documents

    names = [n for n, _ in stdlib_documents(200_000)]
    held = {n for n in names if _heldout(n, 0, 0.1)}
    assert held and held != set(names)  # both splits hold whole, different modules
    c = TokenDataset(None, "d", PythonDocsConfig(max_bytes=200_000, seed=1))
    assert not np.array_equal(c.tokens("heldout"), a.tokens("heldout"))


def test_sample_windows_deterministic_for_a_seed(tmp_path: Path):
    class Node:
        class config:
            base_dir = tmp_path

    ds = TokenDataset(Node, "d", TextFilesConfig(path=str(write_corpus(tmp_path)), heldout_fraction=0.3))
    w1 = ds.sample_windows("heldout", 4, 16, np.random.default_rng(5))
    w2 = ds.sample_windows("heldout", 4, 16, np.random.default_rng(5))
    assert w1.shape == (4, 16) and np.array_equal(w1, w2)


def test_ngram_beats_uniform():
    ds = TokenDataset(None, "d", PythonDocsConfig(max_bytes=300_000))
    ngram = NgramModel(None, "n", NgramConfig(dataset="d", order=3))
    ngram.fit(ds.tokens("train"))
    held = ds.tokens("heldout")
    assert cross_entropy(ngram, held, windows=16) < cross_entropy(UniformModel(None, "u", UniformConfig()), held,
                                                                  windows=16) - 2.0


def test_transformer_loss_falls_in_seconds(tmp_path: Path):
    from tnode.plugins.text.train import train
    from tnode.plugins.text.transformer import Shape

    tokens = encode("abcabcabd " * 400)
    losses: list[float] = []
    result = train(tokens, tokens, tmp_path / "m.pt", steps=60, batch_size=8, lr=1e-2, shape=Shape(32, 1, 2, 32),
                   progress=lambda s, n, loss: losses.append(loss), checkpoint_every=30)
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5])
    assert result.heldout_loss < 2.0 and (tmp_path / "m.pt").exists()
    # Resuming continues from the saved step.
    again = train(tokens, tokens, tmp_path / "m.pt", steps=70, batch_size=8, shape=Shape(32, 1, 2, 32))
    assert again.step == 70


def _reply(body, payload):
    return Reply(body, payload, "peer", "hot", 0.01)


def test_checker_refuses_invalid_answers():
    good_ids = [[1, 2, 3]]
    good = np.log(np.array([[0.5, 0.2, 0.1]], dtype=np.float32))
    assert check_topk({"ids": good_ids}, good, expected_rows=1, k=3).ids.shape == (1, 3)
    cases = [
        ({"ids": good_ids}, np.array([[0.0, 0.0, 0.0]], dtype=np.float32)),  # mass 3
        ({"ids": [[1, 1, 3]]}, good),  # repeated id
        ({"ids": [[1, 2, 999]]}, good),  # out of vocabulary
        ({"ids": good_ids}, np.array([[np.nan, -1, -2]], dtype=np.float32)),
        ({"ids": good_ids}, good[:, :2]),  # shape mismatch
        ({"ids": "nope"}, good),
        ({"ids": good_ids}, b"bytes"),
        ({"ids": [[1, 2, 3]] * 2}, np.vstack([good, good])),  # wrong row count
    ]
    for body, payload in cases:
        with pytest.raises(TaskError) as err:
            check_topk(body, payload, expected_rows=1, k=3)
        assert err.value.code == "invalid_response"




@pytest.mark.anyio
@pytest.mark.parametrize("model", [{"type": "ngram", "dataset": "docs"}, {"type": "transformer", "d_model": 32,
                                                                          "n_layers": 1, "n_heads": 2,
                                                                          "context": 64}])
async def test_miner_answers_over_libp2p(tmp_path: Path, model):
    corpus = write_corpus(tmp_path)
    miner = Node.from_dict(miner_doc(corpus, model), data_dir=tmp_path / "miner")
    validator = Node.from_dict(miner_doc(corpus, {"type": "uniform"}), data_dir=tmp_path / "validator")
    async with miner.running(), validator.running():
        text = validator.component("modality", "text")
        task = text.make_task(np.random.default_rng(0))
        addr = miner.transport.listen_addrs()[0]
        reply = await validator.transport.request(addr, "text", task.task, task.body, task.payload, timeout=20)
        pred = text.parse_response(task, reply)
        assert pred.ids.shape == (32, 8)
        done = await validator.transport.request(addr, "text", "complete", {"prompt": "The quick", "max_new_tokens": 5,
                                                                            "temperature": 0.0}, timeout=20)
        assert len(done.body["ids"]) == 5 and isinstance(done.body["text"], str)
        # Bad requests get typed errors.
        for body, payload, code in [
            ({"k": 8}, np.array([1, 2, 300], dtype=np.int64), "invalid_request"),
            ({"k": 99}, np.array([1, 2, 3], dtype=np.int64), "too_large"),
            ({"k": 8}, np.zeros(65, dtype=np.int64), "too_large"),
            ({"k": 8}, b"not ids", "invalid_request"),
            ({"k": 8, "positions": "middle"}, np.array([1, 2], dtype=np.int64), "invalid_request"),
        ]:
            with pytest.raises(TaskError) as err:
                await validator.transport.request(addr, "text", "next_token", body, payload, timeout=20)
            assert err.value.code == code
        with pytest.raises(TaskError) as err:
            await validator.transport.request(addr, "text", "complete", {"prompt": "x", "max_new_tokens": 500},
                                              timeout=20)
        assert err.value.code == "too_large"


@pytest.mark.anyio
async def test_concurrent_requests_are_batched(tmp_path: Path):
    corpus = write_corpus(tmp_path)
    miner = Node.from_dict(miner_doc(corpus, {"type": "ngram", "dataset": "docs"}), data_dir=tmp_path / "m")
    client = Node.from_dict(miner_doc(corpus, {"type": "uniform"}), data_dir=tmp_path / "c")
    async with miner.running(), client.running():
        addr = miner.transport.listen_addrs()[0]
        await client.transport.connect(addr)
        text = miner.component("modality", "text")
        before = text.batches

        async def ask():
            await client.transport.request(miner.peer_id, "text", "next_token", {"k": 4},
                                           np.arange(16, dtype=np.int64), timeout=20)

        async with trio.open_nursery() as nursery:
            for _ in range(12):
                nursery.start_soon(ask)
        assert text.batches - before < 12
