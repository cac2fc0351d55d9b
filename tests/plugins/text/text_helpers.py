"""Small corpora and node documents for text tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CORPUS = ("The quick brown fox jumps over the lazy dog. " * 40 + "\n\n") + (
    "Pack my box with five dozen liquor jugs. " * 40)


def write_corpus(tmp: Path) -> Path:
    d = tmp / "corpus"
    d.mkdir(parents=True, exist_ok=True)
    for i in range(6):
        (d / f"doc{i}.txt").write_text(CORPUS[i * 50:] + CORPUS[: i * 50])
    return d


def miner_doc(corpus: Path, model: dict[str, Any]) -> dict[str, Any]:
    return {
        "transport": {"type": "libp2p", "listen": ["/ip4/127.0.0.1/tcp/0"], "announce_interval": 0},
        "datasets": {"docs": {"type": "text_files", "path": str(corpus), "heldout_fraction": 0.3}},
        "models": {"main": model},
        "modalities": {"text": {"type": "text", "model": "main", "dataset": "docs", "sequence_length": 32,
                                "max_sequence_length": 64, "top_k": 8, "max_top_k": 16, "max_new_tokens": 16}},
    }
