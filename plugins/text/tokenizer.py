"""The network's shared tokenizer: bytes. Every validator can score every miner."""

from __future__ import annotations

import numpy as np

VOCAB_SIZE = 256


def encode(text: str) -> np.ndarray:
    """UTF-8 bytes as token ids (uint8)."""
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy()


def decode(ids: np.ndarray | list[int]) -> str:
    """Token ids back to text; invalid UTF-8 sequences become U+FFFD."""
    return bytes(np.asarray(ids, dtype=np.uint8).tolist()).decode("utf-8", errors="replace")
