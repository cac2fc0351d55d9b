"""The text modality's contract (``tnode.contracts.text``): the types text plugins share.

Token datasets and next-token models (what the text modality serves and trains) and
:class:`TopKPrediction`, the parsed answer a text validator hands to scorers and answer filters.
Text, scoring and antispam plugins import these from here, never from each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


class TokenDataset(Protocol):
    """Token data with disjoint train / held-out splits, deterministic for a seed."""

    name: str
    vocab_size: int

    def tokens(self, split: str) -> np.ndarray:
        """All tokens of ``split`` ("train" or "heldout") as a 1-D int array."""
        ...

    def sample_windows(self, split: str, count: int, length: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` random windows of ``length`` tokens from ``split``, shape (count, length)."""
        ...


class LanguageModel(Protocol):
    """A next-token model over the network's shared tokenizer."""

    name: str
    vocab_size: int

    def next_token_logprobs(self, tokens: np.ndarray) -> np.ndarray:
        """Log-probabilities for the next token at every position.

        :param tokens: int array (batch, seq).
        :returns: float32 array (batch, seq, vocab_size).
        """
        ...


@dataclass(frozen=True, slots=True)
class TopKPrediction:
    """A parsed, validated next-token answer: per scored position the top-k ids and log-probs."""

    ids: np.ndarray  # int64 (positions, k)
    logprobs: np.ndarray  # float32 (positions, k)
    vocab_size: int
