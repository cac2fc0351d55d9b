"""The network's shared tokenizer: UTF-8 bytes, ids 0..255, no special tokens.

Every node on a subnet uses it, so any validator can score any miner without agreeing on a
vocabulary file. Byte-level means every text (and every byte string) has exactly one encoding and
decoding round-trips; a model needs no unknown-token or padding id because requests carry plain
sequences and batches are padded out of band.
"""

from __future__ import annotations

import numpy as np

VOCAB_SIZE = 256


def encode(text: str | bytes) -> np.ndarray:
    """Token ids (uint8) of ``text``'s UTF-8 bytes (or of ``bytes`` as they are)."""
    raw = text if isinstance(text, bytes) else text.encode("utf-8")
    return np.frombuffer(raw, dtype=np.uint8).copy()


def decode_bytes(ids: np.ndarray | list[int]) -> bytes:
    """Token ids back to bytes; ``ValueError`` for ids outside 0..255."""
    arr = np.asarray(ids)
    if arr.size and (arr.min() < 0 or arr.max() >= VOCAB_SIZE):
        raise ValueError(f"token ids must lie in [0, {VOCAB_SIZE})")
    return arr.astype(np.uint8).tobytes()


def decode(ids: np.ndarray | list[int]) -> str:
    """Token ids back to text; bytes that are not valid UTF-8 become U+FFFD."""
    return decode_bytes(ids).decode("utf-8", errors="replace")
