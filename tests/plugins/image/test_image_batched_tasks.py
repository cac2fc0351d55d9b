"""Batched image tasks over real libp2p: B restorations in one request and one answer frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from image_helpers import image_doc, transport
from tnode.errors import TaskError
from tnode.interfaces import BatchingModality
from tnode.node import Node

pytestmark = pytest.mark.anyio


async def test_a_batch_is_answered_row_by_row_as_single_requests_would_be(tmp_path: Path) -> None:
    miner = Node.from_dict(image_doc({"type": "classical"}, max_tasks=4), data_dir=tmp_path / "miner")
    client = Node.from_dict({"transport": transport()}, data_dir=tmp_path / "client")
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    async with miner.running(), client.running():
        addr = miner.transport.listen_addrs()[0]
        batch = await client.transport.request(addr, "image", "upscale", {"factor": 2, "batch": 3}, images, timeout=10)
        assert batch.payload.shape == (3, 32, 32, 3) and batch.payload.dtype == np.uint8
        for i in range(3):
            single = await client.transport.request(addr, "image", "upscale", {"factor": 2}, images[i], timeout=10)
            np.testing.assert_array_equal(batch.payload[i], single.payload)
        for body, payload, code in [
            ({"factor": 2, "batch": 5}, np.zeros((5, 16, 16, 3), np.uint8), "too_large"),  # over max_tasks
            ({"factor": 2, "batch": 2}, images, "invalid_request"),  # rows do not match
            ({"factor": 2, "batch": 2}, images[0], "invalid_request"),  # not (B, H, W, C)
            ({"label": 0, "batch": 2}, None, "invalid_request"),  # generate is not batched
        ]:
            task = "generate" if "label" in body else "upscale"
            with pytest.raises(TaskError) as err:
                await client.transport.request(addr, "image", task, body, payload, timeout=10)
            assert err.value.code == code, (body, str(err.value))


async def test_the_validator_side_batches_tasks_that_share_a_corruption(tmp_path: Path) -> None:
    miner = Node.from_dict(image_doc({"type": "blur"}), data_dir=tmp_path / "miner")
    validator = Node.from_dict(image_doc(tasks=["denoise"], sigmas=[15.0]), data_dir=tmp_path / "val")
    async with miner.running(), validator.running():
        modality = validator.component("modality", "image")
        assert isinstance(modality, BatchingModality)
        rng = np.random.default_rng(1)
        tasks = [modality.make_task(rng) for _ in range(3)]
        batch = modality.batch_tasks(tasks)
        assert batch is not None and batch.body == {"sigma": 15.0, "batch": 3}
        reply = await validator.transport.request(miner.transport.listen_addrs()[0], batch.modality, batch.task,
                                                  batch.body, batch.payload, timeout=10)
        answers = [modality.parse_response(t, r) for t, r in zip(tasks, modality.unbatch_reply(batch, tasks, reply),
                                                                 strict=True)]
        assert all(a.image.shape == t.truth.original.shape for a, t in zip(answers, tasks, strict=True))
        inpaint = Node.from_dict(image_doc(tasks=["inpaint"]), data_dir=tmp_path / "inp")
        async with inpaint.running():
            other = inpaint.component("modality", "image")
            masks = [other.make_task(rng) for _ in range(3)]
            assert other.batch_tasks(masks) is None  # masks differ per task: one request each
