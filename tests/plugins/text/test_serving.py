"""The text modality served over real libp2p between two nodes on 127.0.0.1: answers, errors, batching,
deadlines, and the validator's checks of what miners send back."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trio
from text_helpers import task, text_doc, write_corpus
from tnode.contracts.text import TopKPrediction
from tnode.errors import TaskError
from tnode.events import TaskCompleted, TaskReceived
from tnode.interfaces import Reply, TaskResult, ValidatorTask
from tnode.node import Node
from tnode.plugins.text.checks import check_topk
from tnode.plugins.text.modality import TextModality
from tnode.plugins.text.tokenizer import VOCAB_SIZE, decode, encode

pytestmark = pytest.mark.anyio

CONTEXT = 16  # the tiny transformer's context: requests longer than it exercise the windowed path


def transport(**kw: Any) -> dict[str, Any]:
    return {"type": "libp2p", "listen": ["/ip4/127.0.0.1/tcp/0"], "announce_interval": 0.0, "dht": False,
            "gossip": False, **kw}


def miner_doc(corpus: Path, model: dict[str, Any], **modality: Any) -> dict[str, Any]:
    doc = text_doc(corpus, model, **modality)
    doc["transport"] = transport()
    return doc


def client_node(tmp: Path, corpus: Path | None = None, **kw: Any) -> Node:
    """A node with a transport only, or, given a corpus, also the validator side of the text modality."""
    doc: dict[str, Any] = {"transport": transport(**kw)}
    if corpus is not None:
        doc = text_doc(corpus, sequence_length=24, top_k=8, validation_positions="all")
        doc["transport"] = transport(**kw)
    return Node.from_dict(doc, data_dir=tmp / "client")


def ngram(order: int = 3) -> dict[str, Any]:
    return {"type": "ngram", "dataset": "tiny", "order": order}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("text"), files=8, words=200)


@pytest.fixture(scope="module")
def checkpoint(corpus: Path) -> Iterator[Path]:
    """A tiny transformer trained for a second on the corpus (a real checkpoint, real weights)."""
    pytest.importorskip("torch")
    from tnode.plugins.text.train import TrainSettings, train
    from tnode.plugins.text.transformer import Shape

    tokens = encode("".join(p.read_text() for p in sorted(corpus.glob("*.txt"))))
    path = corpus.parent / "tiny.pt"
    settings = TrainSettings(steps=30, batch_size=8, lr=1e-2, warmup=3, shape=Shape(32, 1, 2, CONTEXT),
                             checkpoint_every=30, eval_windows=4, threads=1)
    result = train(tokens, tokens, path, settings)
    assert result.heldout.nats < math.log(VOCAB_SIZE) - 1.0  # it learned something
    yield path


def direct_transformer(path: Path) -> Any:
    from tnode.plugins.text.config import TransformerConfig
    from tnode.plugins.text.transformer import TransformerModel

    model = TransformerModel(None, "direct", TransformerConfig(checkpoint=str(path), threads=1))
    model.load()
    return model


def topk(logprobs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-logprobs, axis=-1, kind="stable")[:, :k]
    return order, np.take_along_axis(logprobs, order, axis=-1)


def assert_topk_matches(reply: Reply, logprobs: np.ndarray, k: int, atol: float = 1e-5) -> None:
    """The reply's top-k is the model's: values equal, ids those values belong to (robust to ties)."""
    pred = check_topk(reply.body, reply.payload, rows=len(logprobs), k=k)
    _, want = topk(logprobs, k)
    np.testing.assert_allclose(pred.logprobs, want, atol=atol)
    np.testing.assert_allclose(np.take_along_axis(logprobs, pred.ids, axis=-1), pred.logprobs, atol=atol)


def greedy(model: Any, prompt: np.ndarray, n: int) -> list[int]:
    context, out = prompt.astype(np.int64), []
    for _ in range(n):
        window = context[-model.context :] if model.context else context[-1:]
        token = int(np.argmax(model.next_token_logprobs(window[None])[0, -1]))
        out.append(token)
        context = np.append(context, token)
    return out


# --------------------------------------------------------------------------- answers over the wire
async def test_ngram_answers_next_token_and_complete_over_libp2p(tmp_path: Path, corpus: Path) -> None:
    miner = Node.from_dict(miner_doc(corpus, ngram()), data_dir=tmp_path / "miner")
    client = client_node(tmp_path)
    async with miner.running(), client.running():
        addr = miner.transport.listen_addrs()[0]
        model = miner.component("model", "main")
        ids = encode("the quick brown fox jumps over the")
        last = await client.transport.request(addr, "text", "next_token", {"k": 5}, ids, timeout=5)
        assert last.hotkey == miner.hotkey.public_hex
        direct = model.next_token_logprobs(ids[None].astype(np.int64))[0]
        assert_topk_matches(last, direct[-1:], 5)
        assert last.body["ids"][0][0] == ord(" ")  # after "the" in this corpus, a space is the surest byte
        every = await client.transport.request(addr, "text", "next_token", {"k": 3, "positions": "all"},
                                               ids.astype(np.int32), timeout=5)
        assert every.payload.shape == (len(ids), 3) and every.payload.dtype == np.float32
        assert_topk_matches(every, direct, 3)

        prompt = "the lazy dog"
        done = await client.transport.request(addr, "text", "complete",
                                              {"prompt": prompt, "max_new_tokens": 12, "temperature": 0.0},
                                              timeout=5)
        assert done.body["ids"] == greedy(model, encode(prompt), 12)
        assert done.body["text"] == decode(done.body["ids"])
        # Sampling is reproducible from the seed, and the prompt may travel as token ids instead.
        body = {"max_new_tokens": 16, "temperature": 0.8, "top_p": 0.9, "seed": 7}
        a = await client.transport.request(addr, "text", "complete", {**body, "prompt": prompt}, timeout=5)
        b = await client.transport.request(addr, "text", "complete", body, encode(prompt), timeout=5)
        c = await client.transport.request(addr, "text", "complete", {**body, "prompt": prompt, "seed": 8},
                                           timeout=5)
        assert a.body == b.body and len(a.body["ids"]) == 16
        assert c.body != a.body


async def test_transformer_answers_next_token_and_complete_over_libp2p(tmp_path: Path, corpus: Path,
                                                                       checkpoint: Path) -> None:
    miner = Node.from_dict(miner_doc(corpus, {"type": "transformer", "checkpoint": str(checkpoint), "threads": 1}),
                           data_dir=tmp_path / "miner")
    client = client_node(tmp_path)
    direct = direct_transformer(checkpoint)
    async with miner.running(), client.running():
        addr = miner.transport.listen_addrs()[0]
        short = encode("the model counts")
        long = encode("every validator keeps the held out text that no miner has seen")
        assert len(short) <= CONTEXT < len(long)
        for ids in (short, long):
            full = direct.next_token_logprobs(ids[None].astype(np.int64))[0]
            every = await client.transport.request(addr, "text", "next_token", {"k": 4, "positions": "all"}, ids,
                                                   timeout=5)
            assert_topk_matches(every, full, 4)
            # The last position is computed from the model's context only (fewer tokens, same answer).
            last_direct = direct.next_token_logprobs(ids[None, -CONTEXT:].astype(np.int64))[0, -1:]
            last = await client.transport.request(addr, "text", "next_token", {"k": 4}, ids, timeout=5)
            assert_topk_matches(last, last_direct, 4)
        done = await client.transport.request(addr, "text", "complete",
                                              {"prompt": "the quick", "max_new_tokens": 20, "temperature": 0},
                                              timeout=5)
        assert done.body["ids"] == greedy(direct, encode("the quick"), 20)


async def test_validator_task_round_trip_and_scoring_input(tmp_path: Path, corpus: Path) -> None:
    """The validator side makes a task from held-out data, a miner answers it, the answer parses."""
    miner = Node.from_dict(miner_doc(corpus, ngram()), data_dir=tmp_path / "miner")
    validator = client_node(tmp_path, corpus)
    async with miner.running(), validator.running():
        text: TextModality = validator.component("modality", "text")
        vt = text.make_task(np.random.default_rng(3))
        assert vt.payload.shape == (24,) and vt.truth.shape == (24,)
        reply = await validator.transport.request(miner.transport.listen_addrs()[0], vt.modality, vt.task, vt.body,
                                                  vt.payload, timeout=5)
        pred = text.parse_response(vt, reply)
        assert isinstance(pred, TopKPrediction) and pred.ids.shape == (24, 8)
        # A real model puts the true next byte in its top 8 most of the time on this small vocabulary.
        hits = (pred.ids == vt.truth[:, None]).any(axis=1).mean()
        assert hits > 0.6


# --------------------------------------------------------------------------- typed errors over the wire
BAD_REQUESTS: list[tuple[str, dict[str, Any], Any, str, str]] = [
    # (task, body, payload, code, words the message must contain)
    ("next_token", {}, None, "invalid_request", "integer array"),
    ("next_token", {}, b"the quick", "invalid_request", "integer array"),
    ("next_token", {}, np.array([0.5, 1.0], dtype=np.float32), "invalid_request", "integer array"),
    ("next_token", {}, np.array([True, False]), "invalid_request", "integer array"),
    ("next_token", {}, np.zeros(0, dtype=np.int32), "invalid_request", "non-empty 1-D"),
    ("next_token", {}, np.zeros((2, 3), dtype=np.int32), "invalid_request", "non-empty 1-D"),
    ("next_token", {}, np.array([104, 256], dtype=np.int32), "invalid_request", "[0, 256)"),
    ("next_token", {}, np.array([104, -1], dtype=np.int64), "invalid_request", "[0, 256)"),
    ("next_token", {}, np.zeros(33, dtype=np.uint8), "too_large", "max_sequence_length 32"),
    ("next_token", {"k": 9}, np.zeros(3, dtype=np.uint8), "too_large", "k=9 exceeds the limit of 8"),
    ("next_token", {"k": 0}, np.zeros(3, dtype=np.uint8), "invalid_request", "k=0"),
    ("next_token", {"k": "3"}, np.zeros(3, dtype=np.uint8), "invalid_request", "k must be an integer"),
    ("next_token", {"k": True}, np.zeros(3, dtype=np.uint8), "invalid_request", "k must be an integer"),
    ("next_token", {"positions": "first"}, np.zeros(3, dtype=np.uint8), "invalid_request", "positions"),
    ("next_token", {"top": 3}, np.zeros(3, dtype=np.uint8), "invalid_request", "unknown next_token field"),
    ("complete", {}, None, "invalid_request", "give the prompt"),
    ("complete", {"prompt": ""}, None, "invalid_request", "give the prompt"),
    ("complete", {"prompt": 42}, None, "invalid_request", "give the prompt"),
    ("complete", {"prompt": "ab"}, np.zeros(2, dtype=np.uint8), "invalid_request", "not both"),
    ("complete", {"prompt": "é" * 17}, None, "too_large", "34 tokens exceed max_sequence_length 32"),
    ("complete", {}, np.full(40, 97, dtype=np.uint8), "too_large", "max_sequence_length"),
    ("complete", {}, np.array([97, 300], dtype=np.int32), "invalid_request", "[0, 256)"),
    ("complete", {"prompt": "a", "max_new_tokens": 11}, None, "too_large", "max_new_tokens=11 exceeds"),
    ("complete", {"prompt": "a", "max_new_tokens": 0}, None, "invalid_request", "max_new_tokens=0"),
    ("complete", {"prompt": "a", "temperature": -1}, None, "invalid_request", "temperature=-1"),
    ("complete", {"prompt": "a", "temperature": "hot"}, None, "invalid_request", "temperature must be a number"),
    ("complete", {"prompt": "a", "top_p": 0}, None, "invalid_request", "top_p=0"),
    ("complete", {"prompt": "a", "top_k": 257}, None, "invalid_request", "top_k=257"),
    ("complete", {"prompt": "a", "seed": -3}, None, "invalid_request", "seed=-3"),
    ("complete", {"prompt": "a", "beam": 4}, None, "invalid_request", "unknown complete field"),
    ("summarize", {}, None, "invalid_request", "unknown text task 'summarize'"),
]


async def test_bad_requests_get_typed_errors_over_the_wire(tmp_path: Path, corpus: Path) -> None:
    miner = Node.from_dict(miner_doc(corpus, ngram(), max_sequence_length=32, max_top_k=8, top_k=4,
                                     sequence_length=16, max_new_tokens=10), data_dir=tmp_path / "miner")
    client = client_node(tmp_path)
    async with miner.running(), client.running():
        addr = miner.transport.listen_addrs()[0]
        for name, body, payload, code, words in BAD_REQUESTS:
            with pytest.raises(TaskError) as err:
                await client.transport.request(addr, "text", name, body, payload, timeout=5)
            assert (err.value.code, words in err.value.message) == (code, True), (name, body, str(err.value))
        # Refusals cost the miner nothing lasting: a good request right after is answered.
        ok = await client.transport.request(addr, "text", "next_token", {"k": 8}, np.full(32, 97, np.uint8),
                                            timeout=5)
        assert ok.payload.shape == (1, 8)
        assert miner.component("modality", "text").batcher.requests == 1  # no bad request reached the model


async def test_a_request_past_its_deadline_gets_timeout_and_the_miner_stops(tmp_path: Path, corpus: Path) -> None:
    miner = Node.from_dict(miner_doc(corpus, ngram(), max_new_tokens=4096, batch_wait_ms=5.0),
                           data_dir=tmp_path / "miner")
    client = client_node(tmp_path)
    completed: list[TaskCompleted] = []

    async def on_completed(ev: TaskCompleted) -> None:
        completed.append(ev)

    miner.bus.subscribe(TaskCompleted, on_completed)
    async with miner.running(), client.running():
        addr = miner.transport.listen_addrs()[0]
        await client.transport.connect(addr)
        started = time.monotonic()
        # ~5 ms of batching per token: 4096 tokens cannot finish within 0.4 s.
        with pytest.raises(TaskError) as err:
            await client.transport.request(addr, "text", "complete", {"prompt": "the", "max_new_tokens": 4096},
                                           timeout=0.4)
        assert err.value.code == "timeout"
        assert time.monotonic() - started < 1.5
        with trio.fail_after(3):
            while not any(ev.task == "complete" for ev in completed):
                await trio.sleep(0.02)
        ev = next(ev for ev in completed if ev.task == "complete")
        assert (ev.ok, ev.code) == (False, "timeout")  # the miner gave up at the deadline, not after 4096 tokens
    # Within the modality: a task whose deadline already passed never reaches the model.
    text: TextModality = miner.component("modality", "text")
    before = text.batcher.requests
    async with trio.open_nursery() as nursery:
        nursery.start_soon(text.batcher.run)
        with pytest.raises(TaskError) as err:
            await text.handle(task("next_token", {}, np.arange(5, dtype=np.uint8), timeout=-0.01))
        assert err.value.code == "timeout"
        nursery.cancel_scope.cancel()
    assert text.batcher.requests == before


# --------------------------------------------------------------------------- batching
async def test_concurrent_requests_share_forward_passes(tmp_path: Path, corpus: Path, checkpoint: Path) -> None:
    miner = Node.from_dict(miner_doc(corpus, {"type": "transformer", "checkpoint": str(checkpoint), "threads": 1},
                                     batch_wait_ms=20.0, max_batch=16), data_dir=tmp_path / "miner")
    client = client_node(tmp_path, streams_per_peer=16)
    direct = direct_transformer(checkpoint)
    rng = np.random.default_rng(5)
    # Different lengths, some beyond the context: padding in a shared batch must not change any answer.
    inputs = [rng.integers(0, VOCAB_SIZE, int(n)).astype(np.int32) for n in rng.integers(3, 2 * CONTEXT + 5, 16)]
    replies: dict[int, Reply] = {}
    async with miner.running(), client.running():
        addr = miner.transport.listen_addrs()[0]
        await client.transport.connect(addr)

        async def one(i: int) -> None:
            replies[i] = await client.transport.request(addr, "text", "next_token", {"k": 5, "positions": "all"},
                                                        inputs[i], timeout=10)

        async with trio.open_nursery() as nursery:
            for i in range(len(inputs)):
                nursery.start_soon(one, i)
        batcher = miner.component("modality", "text").batcher
        assert batcher.requests == len(inputs)
        assert batcher.batches < batcher.requests, (batcher.batches, batcher.requests)
    for i, ids in enumerate(inputs):
        assert_topk_matches(replies[i], direct.next_token_logprobs(ids[None].astype(np.int64))[0], 5, atol=1e-4)


def test_padding_never_changes_a_transformer_answer(checkpoint: Path) -> None:
    """What makes batching safe: a position's answer depends on the tokens up to it only, also for
    sequences longer than the context (the batcher right-pads them to the longest in the batch)."""
    model = direct_transformer(checkpoint)
    x = np.random.default_rng(2).integers(0, VOCAB_SIZE, (1, 3 * CONTEXT + 3))
    padded = model.next_token_logprobs(x)
    for length in (CONTEXT - 1, CONTEXT, CONTEXT + 1, CONTEXT + 5, 2 * CONTEXT + 3, 3 * CONTEXT + 1):
        np.testing.assert_allclose(model.next_token_logprobs(x[:, :length])[0], padded[0, :length], atol=1e-5,
                                   err_msg=f"length {length}")


# --------------------------------------------------------------------------- a miner's answer, checked
def good_answer(rows: int = 2, k: int = 3) -> tuple[dict[str, Any], np.ndarray]:
    ids = [[(7 * r + j) % VOCAB_SIZE for j in range(k)] for r in range(rows)]
    return {"ids": ids}, np.log(np.full((rows, k), 0.2, dtype=np.float32))


def _mutate(kind: str) -> tuple[Any, Any]:
    body, payload = good_answer()
    if kind == "rows":
        return body | {"ids": body["ids"][:1]}, payload[:1]
    if kind == "k too large":
        return {"ids": [r + [200] for r in body["ids"]]}, np.log(np.full((2, 4), 0.1, np.float32))
    if kind == "1-D":
        return {"ids": body["ids"][0]}, payload[0]
    if kind == "shapes differ":
        return {"ids": [r[:2] for r in body["ids"]]}, payload
    if kind == "ragged":
        return {"ids": [body["ids"][0], body["ids"][1][:2]]}, payload
    if kind == "nan":
        payload[1, 1] = np.nan
    elif kind == "inf":
        payload[0, 0] = -np.inf
    elif kind == "positive":
        payload[0, 0] = 0.5
    elif kind == "mass > 1":
        payload[:] = np.log(0.4)
    elif kind == "repeated":
        body["ids"][1][2] = body["ids"][1][0]
    elif kind == "out of vocab":
        body["ids"][0][1] = VOCAB_SIZE
    elif kind == "negative id":
        body["ids"][0][1] = -1
    elif kind == "float ids":
        body["ids"] = [[float(x) for x in r] for r in body["ids"]]
    elif kind == "bool ids":
        body["ids"] = [[True, False, True], [False, True, False]]
    elif kind == "str ids":
        body["ids"][0][0] = "a"
    elif kind == "int payload":
        payload = np.zeros((2, 3), dtype=np.int32)
    elif kind == "bytes payload":
        payload = b"\x00" * 24
    elif kind == "no payload":
        payload = None
    elif kind == "no ids":
        body = {"logprobs": body["ids"]}
    elif kind == "body not object":
        body = [body]
    return body, payload


BAD_ANSWERS = ["rows", "k too large", "1-D", "shapes differ", "ragged", "nan", "inf", "positive", "mass > 1",
               "repeated", "out of vocab", "negative id", "float ids", "bool ids", "str ids", "int payload",
               "bytes payload", "no payload", "no ids", "body not object"]


def validator_modality() -> tuple[TextModality, ValidatorTask]:
    from tnode.plugins.text.config import TextModalityConfig

    text = TextModality(None, "text", TextModalityConfig(top_k=3))
    vt = ValidatorTask("text", "next_token", {"k": 3, "positions": "all"}, np.zeros(2, np.int32),
                       np.array([7, 8], dtype=np.int64))
    return text, vt


@pytest.mark.parametrize("kind", BAD_ANSWERS)
def test_invalid_answers_are_invalid_response(kind: str) -> None:
    text, vt = validator_modality()
    body, payload = _mutate(kind)
    with pytest.raises(TaskError) as err:
        text.parse_response(vt, Reply(body, payload, "peer", "00" * 32, 0.01))
    assert err.value.code == "invalid_response"


def test_sound_answers_parse() -> None:
    text, vt = validator_modality()
    body, payload = good_answer()
    pred = text.parse_response(vt, Reply(body, payload, "peer", "00" * 32, 0.01))
    assert pred.ids.dtype == np.int64 and pred.ids.tolist() == body["ids"]
    # Fewer than k entries is allowed (a miner may be sure of fewer tokens), and float64 / float16 too;
    # a total mass of exactly 1 and log-probabilities of 0 up to rounding are sound.
    check_topk({"ids": [[1], [2]]}, np.zeros((2, 1), dtype=np.float64), rows=2, k=3)
    check_topk({"ids": [[1, 2], [3, 4]]}, np.log(np.full((2, 2), 0.5, dtype=np.float16)), rows=2, k=3)
    exact = check_topk({"ids": [[5]]}, np.array([[1e-6]], dtype=np.float32), rows=1, k=1)
    assert exact.logprobs[0, 0] == 0.0  # rounding above 0 is clipped, not passed on


async def test_malformed_answers_from_a_lying_miner_are_caught_after_the_wire(tmp_path: Path) -> None:
    """A miner whose handler returns nonsense: the transport delivers it, the validator's check refuses it."""
    liar = Node.from_dict({"transport": transport()}, data_dir=tmp_path / "liar")
    client = client_node(tmp_path)
    answers = iter([_mutate(kind) for kind in ("nan", "mass > 1", "repeated", "out of vocab", "rows")])

    async def lie(_: TaskReceived) -> TaskResult:
        body, payload = next(answers)
        return TaskResult(body, payload)

    text, vt = validator_modality()
    async with liar.running(), client.running():
        liar.bus.serve(TaskReceived, lie, key="text")
        addr = liar.transport.listen_addrs()[0]
        for _ in range(5):
            reply = await client.transport.request(addr, "text", "next_token", vt.body, vt.payload, timeout=5)
            with pytest.raises(TaskError) as err:
                text.parse_response(vt, reply)
            assert err.value.code == "invalid_response"
