"""The image modality's wire name is its `serve_as` (default its type), never its table name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trio
from image_helpers import image_doc
from tnode.events import TaskReceived
from tnode.node import Node


@pytest.mark.parametrize(("serve_as", "expected"), [("", "image"), ("img2", "img2")])
def test_served_and_asked_under_the_wire_name_not_the_table(tmp_path: Path, serve_as: str, expected: str) -> None:
    doc = image_doc({"type": "blur"}, serve_as=serve_as)
    doc["modalities"] = {"pictures": doc["modalities"]["image"]}
    node = Node.from_dict(doc, data_dir=tmp_path)
    modality = node.component("modality", "pictures")

    async def main() -> tuple[set[str], str]:
        async with node.running():
            return set(node.bus.served_keys(TaskReceived)), modality.make_task(np.random.default_rng(0)).modality

    served, asked = trio.run(main)
    assert expected in served and "pictures" not in served
    assert asked == expected
