"""The teacher client: batching by the source's max_tasks, failures and refusals tolerated, answers
cached on disk so a resumed run does not re-ask; a distilled training run resumes its gate."""

from __future__ import annotations

import anyio
import numpy as np
import pytest
import torch
from tnode.contracts.learning import Teacher, TeacherReply
from tnode.plugins.text.distill import Distiller, gating_rows
from tnode.plugins.text.teacher_cache import AnswerCache
from tnode.plugins.text.teachers import TeacherClient
from tnode.plugins.text.train import TrainSettings, train
from tnode.plugins.text.transformer import Shape, load_checkpoint

pytestmark = pytest.mark.anyio

K = 4


class Source:
    """A TeacherSource over computed answers: teacher "good" puts 0.9 on the byte after each
    position's byte ((x + 1) mod 256), "refuses" answers rate_limited, "flaky" refuses its second request."""

    name = "constructed"
    max_tasks = 3

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def teachers(self) -> list[Teacher]:
        return [Teacher("good", 1), Teacher("refuses", 2), Teacher("flaky", 3)]

    async def ask(self, hotkey: str, windows: np.ndarray, *, k: int, timeout: float) -> TeacherReply:
        assert windows.shape[0] <= self.max_tasks
        self.calls.append((hotkey, windows.shape[0]))
        await anyio.sleep(0)
        flaky_calls = sum(1 for h, _ in self.calls if h == "flaky")
        if hotkey == "refuses" or (hotkey == "flaky" and flaky_calls == 2):
            return TeacherReply(hotkey, error="rate_limited")
        ids = np.stack([(windows + j + 1) % 256 for j in range(k)], axis=-1).astype(np.int64)
        lp = np.log(np.array([0.9] + [0.1 / (k - 1)] * (k - 1), dtype=np.float32))
        return TeacherReply(hotkey, ids, np.broadcast_to(lp, ids.shape).copy())


def windows(n: int, t: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, t))


async def test_failures_and_refusals_leave_only_the_answers_that_came(tmp_path) -> None:
    source = Source()
    client = TeacherClient(source, source.teachers(), k=K, rps=0, floor=1e-8)
    w = windows(7)
    got = await client.distributions(w)
    # 7 windows in requests of at most 3: 3 requests per teacher.
    assert sorted(n for h, n in source.calls if h == "good") == [1, 3, 3]
    assert got.answered[0].all() and not got.answered[1].any()
    assert got.answered[2].sum() == 4  # flaky: its second request (3 windows) refused, the others answered
    assert got.errors["refuses"] == "rate_limited"
    good = got.probs[0]
    np.testing.assert_allclose(np.take_along_axis(good, ((w + 1) % 256)[..., None], -1)[..., 0], 0.9, atol=1e-5)
    assert float(got.probs[1].sum()) == 0.0
    assert client.failures["rate_limited"] >= 3


async def test_a_resumed_client_takes_answers_from_the_cache(tmp_path) -> None:
    w = windows(5)
    source = Source()
    first = TeacherClient(source, source.teachers()[:1], cache=AnswerCache(tmp_path / "c.sqlite"), k=K, rps=0)
    a = await first.distributions(w)
    first.cache.close()
    again = Source()
    cache = AnswerCache(tmp_path / "c.sqlite")
    second = TeacherClient(again, again.teachers()[:1], cache=cache, k=K, rps=0)
    b = await second.distributions(w)
    assert again.calls == [] and cache.hits == 5
    np.testing.assert_allclose(a.probs, b.probs, atol=2e-3)  # float16 on disk
    await second.distributions(windows(2, seed=9))  # new windows are asked
    assert again.calls == [("good", 2)]


async def test_requests_are_paced_to_the_rate_bound() -> None:
    source = Source()
    client = TeacherClient(source, source.teachers()[:1], k=K, rps=20.0)
    start = anyio.current_time()
    await client.distributions(windows(9))  # 3 requests: the 2nd and 3rd wait 50 ms each
    assert anyio.current_time() - start >= 0.09


def test_distilled_training_saves_and_resumes_its_gate(tmp_path) -> None:
    torch.set_num_threads(1)
    tokens = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz" * 200, dtype=np.uint8).astype(np.int64)
    teachers = [Teacher("good", 1), Teacher("bad", 2)]

    def fetch(w: np.ndarray):
        from tnode.plugins.text.teachers import TeacherBatch

        b, t = w.shape
        good = np.full((b, t, 256), 0.1 / 255, dtype=np.float32)
        np.put_along_axis(good, ((w - 97 + 1) % 26 + 97)[..., None], 0.9, axis=-1)
        bad = np.full((b, t, 256), 1 / 256, dtype=np.float32)
        return TeacherBatch(teachers, np.stack([good, bad]), np.ones((2, b), dtype=bool))

    settings = TrainSettings(steps=6, batch_size=4, shape=Shape(16, 1, 2, 16), checkpoint_every=3, eval_windows=4,
                             threads=1, warmup=2)
    ckpt = tmp_path / "s.pt"
    train(tokens, tokens, ckpt, TrainSettings(**{**settings.__dict__, "steps": 3}), resume=False,
          distiller=Distiller(teachers, fetch))
    mid = gating_rows(load_checkpoint(ckpt)[1])
    resumed = Distiller(teachers, fetch)
    train(tokens, tokens, ckpt, settings, distiller=resumed)
    rows = gating_rows(load_checkpoint(ckpt)[1])
    assert [r["answered"] for r in mid] == [12, 12] and [r["answered"] for r in rows] == [24, 24]
    assert rows[0]["mean_weight"] > rows[1]["mean_weight"]
    assert [r["uid"] for r in rows] == [1, 2]
