"""Shared pieces of the image plugin's tests: node documents with image datasets, models and the modality."""

from __future__ import annotations

from typing import Any


def transport() -> dict[str, Any]:
    return {"type": "libp2p", "listen": ["/ip4/127.0.0.1/tcp/0"], "announce_interval": 0.0, "dht": False,
            "gossip": False}


def image_doc(model: dict[str, Any] | None = None, *, size: int = 16, **modality: Any) -> dict[str, Any]:
    """A node.toml document: a shapes dataset, an optional model served by the image modality."""
    doc: dict[str, Any] = {
        "transport": transport(),
        "datasets": {"scenes": {"type": "shapes", "size": size}},
        "modalities": {"image": {"type": "image", "dataset": "scenes", **modality}},
    }
    if model is not None:
        doc["models"] = {"main": model}
        doc["modalities"]["image"]["model"] = "main"
    return doc
