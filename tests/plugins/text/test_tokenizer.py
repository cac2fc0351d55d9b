"""The shared byte tokenizer."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tnode.plugins.text.tokenizer import VOCAB_SIZE, decode, decode_bytes, encode


@given(st.text())
def test_text_round_trips(text: str) -> None:
    ids = encode(text)
    assert ids.dtype == np.uint8 and len(ids) == len(text.encode("utf-8"))
    assert decode(ids) == text


@given(st.binary())
def test_bytes_round_trip(raw: bytes) -> None:
    assert decode_bytes(encode(raw)) == raw


def test_vocabulary_is_the_256_bytes() -> None:
    assert VOCAB_SIZE == 256
    assert encode("é").tolist() == [0xC3, 0xA9]
    assert decode([0xFF]) == "\ufffd"  # invalid UTF-8 is replaced, never an exception


def test_ids_outside_the_vocabulary_are_refused() -> None:
    with pytest.raises(ValueError, match="token ids"):
        decode([256])
    with pytest.raises(ValueError, match="token ids"):
        decode_bytes(np.array([-1]))
