"""The image batcher: concurrent requests share forward passes (split by output size), each answer is
what the request alone would get, and a model's own TaskError reaches its request unchanged."""

from __future__ import annotations

import time

import anyio
import numpy as np
import pytest
from tnode.contracts.image import Corruption
from tnode.errors import TaskError
from tnode.plugins.image.batcher import ImageBatcher
from tnode.plugins.image.config import ClassicalConfig, ShapesConfig, UNetConfig
from tnode.plugins.image.corrupt import corrupt
from tnode.plugins.image.datasets import ShapesDataset
from tnode.plugins.image.models import ClassicalModel, UNetModel

pytestmark = pytest.mark.anyio


def requests(n: int, size: int, seed: int) -> list[tuple[np.ndarray, Corruption]]:
    rng = np.random.default_rng(seed)
    images, _ = ShapesDataset(None, "s", ShapesConfig(size=size)).sample("heldout", n, rng)
    return [corrupt(img, ("denoise", "inpaint")[i % 2], rng) for i, img in enumerate(images)]


def accept(out: object, image: np.ndarray | None, c: Corruption) -> np.ndarray:
    return np.asarray(out)


async def answer_all(batcher: ImageBatcher, reqs: list[tuple[np.ndarray | None, Corruption]]) -> list[object]:
    out: list[object] = [None] * len(reqs)

    async def one(i: int) -> None:
        try:
            out[i] = await batcher.infer(reqs[i][0], reqs[i][1], time.monotonic() + 60)
        except TaskError as exc:
            out[i] = exc

    async with anyio.create_task_group() as tg:
        tg.start_soon(batcher.run)
        async with anyio.create_task_group() as clients:
            for i in range(len(reqs)):
                clients.start_soon(one, i)
        tg.cancel_scope.cancel()
    return out


async def test_concurrent_requests_share_passes_and_get_their_own_answers() -> None:
    model = UNetModel(None, "u", UNetConfig())
    model.load()
    reqs = requests(6, 32, 1) + requests(4, 16, 2)  # two output sizes: at least two passes
    batcher = ImageBatcher(model, accept, max_batch=16, wait=0.05)
    answers = await answer_all(batcher, list(reqs))
    assert batcher.requests == 10 and 2 <= batcher.batches < 10
    for (img, c), got in zip(reqs, answers, strict=True):
        alone = model.restore(img, c)  # the same as alone, whatever it was batched with (float sums may round apart)
        assert isinstance(got, np.ndarray) and np.abs(got.astype(int) - alone.astype(int)).max() <= 1


async def test_a_model_without_batching_answers_in_turn_and_its_task_errors_pass_through() -> None:
    model = ClassicalModel(None, "c", ClassicalConfig())  # no dataset: generate is "unsupported"
    reqs: list[tuple[np.ndarray | None, Corruption]] = [*requests(2, 16, 3),
                                                        (None, Corruption("generate", label=0, height=8, width=8,
                                                                          channels=1))]
    answers = await answer_all(ImageBatcher(model, accept, max_batch=4, wait=0.05), reqs)
    assert isinstance(answers[2], TaskError) and answers[2].code == "unsupported"
    for (img, c), got in zip(reqs[:2], answers[:2], strict=True):
        assert img is not None and np.array_equal(got, model.restore(img, c))


async def test_an_answer_that_fails_its_check_fails_only_its_request() -> None:
    model = UNetModel(None, "u", UNetConfig())
    model.load()
    reqs = requests(3, 16, 4)

    def check(out: object, image: np.ndarray | None, c: Corruption) -> np.ndarray:
        if c.task == "inpaint":
            raise TaskError("internal", "refused by the check")
        return np.asarray(out)

    answers = await answer_all(ImageBatcher(model, check, max_batch=8, wait=0.05), list(reqs))
    assert isinstance(answers[1], TaskError) and answers[1].code == "internal"
    assert isinstance(answers[0], np.ndarray) and isinstance(answers[2], np.ndarray)
