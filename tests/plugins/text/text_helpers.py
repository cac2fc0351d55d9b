"""Shared pieces of the text plugin's tests: a tiny corpus and node documents using it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from tnode.events import TaskReceived

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "while", "a", "model", "counts", "bytes", "and", "predicts", "the", "next", "one", "every", "validator", "keeps", "the", "held", "out", "text", "that", "no", "miner", "has", "seen"]


def write_corpus(root: Path, files: int = 12, words: int = 300, seed: int = 0) -> Path:
    """``files`` small text files of pseudo-sentences under ``root/corpus``."""
    rng = np.random.default_rng(seed)
    corpus = root / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        text = " ".join(rng.choice(WORDS, size=words)) + ".\n"
        (corpus / f"doc{i:02d}.txt").write_text(text)
    return corpus


def text_doc(corpus: Path, model: dict[str, Any] | None = None, **modality: Any) -> dict[str, Any]:
    """A node.toml document with a text_files dataset, an optional model and the text modality."""
    doc: dict[str, Any] = {
        # The topology check wants a transport wherever a modality is served; loopback, port 0.
        "transport": {"type": "libp2p", "listen": ["/ip4/127.0.0.1/tcp/0"], "announce_interval": 0.0},
        "datasets": {"tiny": {"type": "text_files", "path": str(corpus), "heldout_fraction": 0.25}},
        "modalities": {"text": {"type": "text", "dataset": "tiny", **modality}},
    }
    if model is not None:
        doc["models"] = {"main": model}
        doc["modalities"]["text"]["model"] = "main"
    return doc


def task(name: str, body: dict[str, Any], payload: Any = None, *, timeout: float = 5.0) -> TaskReceived:
    return TaskReceived(modality="text", task=name, body=body, payload=payload, sender="00" * 32, peer_id="peer",
                        deadline=time.monotonic() + timeout)
