"""Image models served from worker processes (``[models.NAME] workers = N``): the same answers as in
process (restoration, batched restoration, generate), memory reported per worker, a killed worker gives
its request a typed error and the node keeps serving, an oversized batch never reaches the model, and
bad settings name their key."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from image_helpers import image_doc
from tnode.contracts.image import Corruption
from tnode.errors import ConfigError, TaskError
from tnode.events import TaskReceived
from tnode.node import Node
from tnode.plugins.image.corrupt import encode_mask
from tnode.plugins.image.passes import decode_answer, decode_request, encode_answer, encode_request
from tnode.workers import WorkerLost

pytestmark = pytest.mark.anyio


def task(name: str, body: dict[str, Any], payload: Any = None, *, timeout: float = 30.0) -> TaskReceived:
    return TaskReceived(modality="image", task=name, body=body, payload=payload, sender="00" * 32, peer_id="peer",
                        deadline=time.monotonic() + timeout)


def unet(workers: int) -> dict[str, Any]:
    pytest.importorskip("torch")
    return {"type": "unet", "threads": 1, "workers": workers, "dataset": "scenes"}


def requests() -> list[TaskReceived]:
    """One of each task on 16×16 RGB inputs, and a batched denoise of three rows."""
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    mask = rng.random((16, 16)) < 0.3  # free-form: sent as bits
    return [task("inpaint", {"mask": encode_mask(mask)}, images[0]),
            task("denoise", {"sigma": 25.0}, images[1]),
            task("upscale", {"factor": 2}, images[2]),
            task("generate", {"label": 2, "height": 16, "width": 16, "channels": 3, "seed": 7}),
            task("denoise", {"sigma": 10.0, "batch": 3}, images[1:4])]


async def answers(node: Node) -> list[np.ndarray]:
    image = node.component("modality", "image")
    return [np.asarray((await image.handle(t)).payload) for t in requests()]  # one at a time: same passes


async def test_workers_answer_like_the_model_in_process_and_report_their_memory(tmp_path: Path) -> None:
    with anyio.fail_after(60):
        async with Node.from_dict(image_doc(unet(0)), data_dir=tmp_path / "inproc").running() as inproc:
            want = await answers(inproc)
        async with Node.from_dict(image_doc(unet(1)), data_dir=tmp_path / "workers").running() as miner:
            model = miner.component("model", "main")
            assert model.model is None  # the weights live in the worker only
            got = await answers(miner)
            stats = model.stats()
    for w, g in zip(want, got, strict=True):
        assert g.dtype == np.uint8 and g.shape == w.shape
        np.testing.assert_array_equal(g, w)
    assert got[-1].shape == (3, 16, 16, 3)
    (worker,) = stats["workers"]
    assert worker["state"] == "idle" and worker["rss_bytes"] > 50 * 2**20  # torch and the U-Net
    assert stats["requests"] == 7 and stats["restarts"] == 0  # the batch's rows went one by one


async def test_concurrent_requests_are_batched_across_two_workers_and_each_gets_its_own_answer(tmp_path: Path) -> None:
    from tnode.plugins.image.config import BlurConfig
    from tnode.plugins.image.models import BlurModel

    reference = BlurModel(None, "direct", BlurConfig())
    rng = np.random.default_rng(9)
    images = rng.integers(0, 256, (24, 16, 16, 3), dtype=np.uint8)
    asks = [task(("denoise", "upscale")[i % 2], {"sigma": 25.0} if i % 2 == 0 else {"factor": 2}, images[i])
            for i in range(20)] + [task("denoise", {"sigma": 25.0, "batch": 4}, images[20:24])]
    got: list[Any] = [None] * len(asks)
    miner = Node.from_dict(image_doc({"type": "blur", "workers": 2}), data_dir=tmp_path / "miner")
    with anyio.fail_after(60):
        async with miner.running():
            image = miner.component("modality", "image")

            async def one(i: int) -> None:
                got[i] = np.asarray((await image.handle(asks[i])).payload)

            async with anyio.create_task_group() as tg:
                for i in range(len(asks)):
                    tg.start_soon(one, i)
            stats = miner.component("model", "main").stats()
    for i, t in enumerate(asks[:20]):
        c = Corruption("denoise", sigma=25.0) if t.task == "denoise" else Corruption("upscale", factor=2)
        np.testing.assert_array_equal(got[i], reference.restore(images[i], c))
    np.testing.assert_array_equal(got[20], np.stack([reference.restore(x, Corruption("denoise", sigma=25.0))
                                                     for x in images[20:24]]))
    assert stats["requests"] == 24 and stats["batches"] < 24  # requests shared the workers' passes
    assert len(stats["workers"]) == 2 and all(w["rss_bytes"] > 0 for w in stats["workers"])


async def test_a_killed_worker_fails_its_request_typed_and_the_node_keeps_serving(tmp_path: Path) -> None:
    miner = Node.from_dict(image_doc({"type": "classical", "workers": 1}), data_dir=tmp_path / "miner")
    image_in = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    with anyio.fail_after(60):
        async with miner.running():
            image = miner.component("modality", "image")
            model = miner.component("model", "main")
            (victim,) = model.pool.pids()
            os.kill(victim, signal.SIGSTOP)  # the request below reaches it and stays there
            failure: list[BaseException] = []

            async def ask() -> None:
                try:
                    await image.handle(task("denoise", {"sigma": 25.0}, image_in))
                except TaskError as exc:
                    failure.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(ask)
                while model.stats()["workers"][0].get("state") != "busy":
                    await anyio.sleep(0.01)
                os.kill(victim, signal.SIGKILL)
            assert isinstance(failure[0], WorkerLost) and failure[0].code == "internal"
            result = await image.handle(task("upscale", {"factor": 2}, image_in))  # the restarted worker
            assert np.asarray(result.payload).shape == (32, 32, 3)
            assert model.stats()["restarts"] == 1 and victim not in model.pool.pids()


async def test_a_batch_over_max_tasks_is_refused_before_inference(tmp_path: Path) -> None:
    miner = Node.from_dict(image_doc({"type": "blur", "workers": 1}, max_tasks=2), data_dir=tmp_path / "miner")
    with anyio.fail_after(60):
        async with miner.running():
            image = miner.component("modality", "image")
            with pytest.raises(TaskError) as err:
                await image.handle(task("denoise", {"sigma": 25.0, "batch": 3}, np.zeros((3, 16, 16, 3), np.uint8)))
            assert err.value.code == "too_large"
            unsupported = miner.component("model", "main")  # no dataset: generate fails in the worker, typed
            with pytest.raises(TaskError) as err:
                await image.handle(task("generate", {"label": 0, "height": 8, "width": 8, "channels": 1, "seed": 1}))
            assert err.value.code == "unsupported"
            stats = unsupported.stats()
            assert stats["requests"] == 1 and image.batcher.requests == 1  # only generate reached the worker


def test_bad_worker_settings_name_their_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        Node.from_dict(image_doc({"type": "classical", "workers": -1}), data_dir=tmp_path / "a")
    assert "models.main.workers" in str(err.value)
    with pytest.raises(ConfigError) as err:
        Node.from_dict(image_doc({"type": "unet", "workers": 1, "checkpoint": "missing.pt"}), data_dir=tmp_path / "b")
    assert "models.main.checkpoint" in str(err.value)


def test_requests_and_answers_cross_processes_unchanged() -> None:
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    mask = rng.random((5, 7)) < 0.5
    for img, c in [(image, Corruption("inpaint", mask=mask)), (image, Corruption("upscale", factor=4)),
                   (None, Corruption("generate", label=3, height=9, width=4, channels=1, seed=2**61))]:
        back_img, back = decode_request(encode_request(img, c))
        assert (back_img is None) == (img is None) and (img is None or np.array_equal(back_img, img))
        assert (back.task, back.factor, back.label, back.height, back.width, back.channels, back.seed) == \
            (c.task, c.factor, c.label, c.height, c.width, c.channels, c.seed)
        assert (back.mask is None) == (c.mask is None) and (c.mask is None or np.array_equal(back.mask, c.mask))
    with pytest.raises(ValueError):
        decode_request(encode_request(image, Corruption("inpaint", mask=mask))[:-1])  # a mask byte short
    assert np.array_equal(decode_answer(encode_answer(image)), image)
    for error, code in [(TaskError("unsupported", "no dataset"), "unsupported"), (RuntimeError("boom"), "internal"),
                        (np.zeros((4, 4, 3), np.float32), "internal")]:
        with pytest.raises(TaskError) as err:
            decode_answer(encode_answer(error))
        assert err.value.code == code
