"""The image modality over real libp2p between two nodes on 127.0.0.1: answers, and typed refusals of
payloads with the wrong dtype, shape or size and of malformed bodies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from image_helpers import image_doc, transport
from tnode.contracts.image import ImageAnswer
from tnode.errors import TaskError
from tnode.node import Node
from tnode.plugins.image.corrupt import encode_mask

pytestmark = pytest.mark.anyio

IMG = np.full((16, 16, 3), 100, dtype=np.uint8)
BOX = {"mask": {"box": [2, 2, 8, 8]}}

BAD: list[tuple[str, dict[str, Any], Any, str, str]] = [
    # (task, body, payload, code, words the message must contain)
    ("denoise", {"sigma": 10}, None, "invalid_request", "needs the image"),
    ("denoise", {"sigma": 10}, b"raw bytes", "invalid_request", "must be a uint8 (H, W, C) array"),
    ("denoise", {"sigma": 10}, IMG.astype(np.float32), "invalid_request", "must be uint8, got float32"),
    ("denoise", {"sigma": 10}, IMG.astype(np.int16), "invalid_request", "must be uint8, got int16"),
    ("denoise", {"sigma": 10}, IMG[..., 0], "invalid_request", "shape (H, W, C)"),
    ("denoise", {"sigma": 10}, np.zeros((16, 16, 2), np.uint8), "invalid_request", "C in (1, 3)"),
    ("denoise", {"sigma": 10}, np.zeros((16, 16, 3, 1), np.uint8), "invalid_request", "shape (H, W, C)"),
    ("denoise", {"sigma": 10}, np.zeros((65, 8, 3), np.uint8), "too_large", "max_side 64"),
    ("denoise", {"sigma": 10}, np.zeros((48, 48, 3), np.uint8), "too_large", "max_pixels 2048"),
    ("denoise", {"sigma": 500}, IMG, "invalid_request", "sigma must be a number in [0, 100.0]"),
    ("denoise", {"sigma": "high"}, IMG, "invalid_request", "sigma must be a number"),
    ("denoise", {"noise": 3}, IMG, "invalid_request", "unknown denoise field"),
    ("upscale", {"factor": 3}, IMG, "invalid_request", "factor must be 2 or 4"),
    ("upscale", {"factor": 4}, np.zeros((16, 16, 3), np.uint8), "too_large", "64×64 answer exceeds"),
    ("inpaint", {}, IMG, "invalid_request", "mask must be"),
    ("inpaint", {"mask": {"box": [0, 0, 20, 4]}}, IMG, "invalid_request", "outside the 16×16 image"),
    ("inpaint", {"mask": {"box": [4, 4, 4, 8]}}, IMG, "invalid_request", "empty"),
    ("inpaint", {"mask": {"box": [0, 0, 1.5, 4]}}, IMG, "invalid_request", "four integers"),
    ("inpaint", {"mask": {"bits": "!!!"}}, IMG, "invalid_request", "base64"),
    ("inpaint", {"mask": {"bits": "AAAA"}}, IMG, "invalid_request", "needs 32"),
    ("generate", {"label": 1}, IMG, "invalid_request", "takes no payload"),
    ("generate", {}, None, "invalid_request", "label is required"),
    ("generate", {"label": 0, "height": 100, "width": 100}, None, "too_large", "exceeds max_side"),
    ("colorize", {}, IMG, "invalid_request", "unknown image task 'colorize'"),
]


async def test_bad_payloads_and_bodies_get_typed_refusals_over_libp2p(tmp_path: Path) -> None:
    miner = Node.from_dict(image_doc({"type": "blur"}, max_side=64, max_pixels=2048), data_dir=tmp_path / "miner")
    client = Node.from_dict({"transport": transport()}, data_dir=tmp_path / "client")
    async with miner.running(), client.running():
        addr = miner.transport.listen_addrs()[0]
        for task, body, payload, code, words in BAD:
            with pytest.raises(TaskError) as err:
                await client.transport.request(addr, "image", task, body, payload, timeout=5)
            assert (err.value.code, words in err.value.message) == (code, True), (task, body, str(err.value))
        # The blur model has no dataset to generate from: a typed refusal, not a crash.
        with pytest.raises(TaskError) as err:
            await client.transport.request(addr, "image", "generate", {"label": 0}, timeout=5)
        assert err.value.code == "unsupported"
        # Refusals leave the miner serving.
        ok = await client.transport.request(addr, "image", "inpaint", BOX, IMG, timeout=5)
        assert ok.payload.dtype == np.uint8 and ok.payload.shape == IMG.shape


async def test_every_task_round_trips_and_the_validator_parses_answers(tmp_path: Path) -> None:
    miner = Node.from_dict(image_doc({"type": "classical"}), data_dir=tmp_path / "miner")
    validator = Node.from_dict(image_doc(tasks=["inpaint", "denoise", "upscale"]), data_dir=tmp_path / "val")
    async with miner.running(), validator.running():
        addr = miner.transport.listen_addrs()[0]
        modality = validator.component("modality", "image")
        rng = np.random.default_rng(5)
        seen = set()
        for _ in range(12):
            vt = modality.make_task(rng)
            seen.add(vt.task)
            # The hidden original never travels: the payload differs from it.
            assert not np.array_equal(vt.payload, vt.truth.original) or vt.task == "upscale"
            reply = await validator.transport.request(addr, vt.modality, vt.task, vt.body, vt.payload, timeout=5)
            answer = modality.parse_response(vt, reply)
            assert isinstance(answer, ImageAnswer) and answer.image.shape == vt.truth.original.shape
        assert seen == {"inpaint", "denoise", "upscale"}
        # A free-form mask travels as packed bits.
        mask = np.zeros((16, 16), bool)
        mask[3, 3:9] = mask[4:9, 8] = True
        body = {"mask": encode_mask(mask)}
        assert "bits" in body["mask"]
        ok = await validator.transport.request(addr, "image", "inpaint", body, IMG, timeout=5)
        np.testing.assert_array_equal(ok.payload[~mask], IMG[~mask])  # known pixels kept


def test_answers_of_the_wrong_dtype_or_shape_are_invalid_responses() -> None:
    from tnode.interfaces import Reply
    from tnode.plugins.image.config import ImageModalityConfig
    from tnode.plugins.image.modality import ImageModality

    class _DS:
        height = width = 16
        channels = 3
        num_classes = 3

        def sample(self, split: str, count: int, rng: Any) -> Any:
            return np.full((count, 16, 16, 3), 7, np.uint8), np.zeros(count, np.int64)

    modality = ImageModality(None, "image", ImageModalityConfig(tasks=["denoise"]))
    modality.dataset = _DS()
    vt = modality.make_task(np.random.default_rng(0))
    for payload in (None, b"x", vt.truth.original.astype(np.float32), vt.truth.original[:8]):
        with pytest.raises(TaskError) as err:
            modality.parse_response(vt, Reply({}, payload, "peer", "00", 0.01))
        assert err.value.code == "invalid_response"
