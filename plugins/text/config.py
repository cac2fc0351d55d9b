"""Configuration schemas of the text plugin: datasets, models and the text modality."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tnode.config import option


@dataclass(frozen=True)
class PythonDocsConfig:
    """A corpus built on any machine from the docstrings of the installed Python's standard library."""

    max_bytes: int = option(4_000_000, "Stop collecting after this many bytes of text.", ge=10_000)
    heldout_fraction: float = option(0.1, "Share of modules kept out of the train split.", ge=0.01, le=0.9)
    seed: int = option(0, "Seed of the train/held-out split (the corpus itself is deterministic).")


@dataclass(frozen=True)
class TextFilesConfig:
    """Text from a file or a directory of files (one document per file)."""

    path: str = option(doc="A file or directory (relative to node.toml's directory).")
    glob: str = option("**/*.txt", "Pattern of files to read under a directory.")
    heldout_fraction: float = option(0.1, "Share of files kept out of the train split.", ge=0.01, le=0.9)
    seed: int = option(0, "Seed of the train/held-out split.")


@dataclass(frozen=True)
class TransformerConfig:
    """A small causal byte-level transformer (torch), loaded from a checkpoint when one is named."""

    checkpoint: str = option("", "Checkpoint written by `tnode train` (relative to node.toml's directory); "
                                 "empty: untrained weights.")
    d_model: int = option(128, "Width of the residual stream.", ge=8)
    n_layers: int = option(4, "Transformer blocks.", ge=1)
    n_heads: int = option(4, "Attention heads.", ge=1)
    context: int = option(128, "Longest context the model attends to, in tokens.", ge=8)
    threads: int = option(2, "torch threads used for inference.", ge=1)


@dataclass(frozen=True)
class NgramConfig:
    """A byte-level n-gram baseline with Witten-Bell interpolation, fit at start on a dataset's train split."""

    dataset: str = option(doc="The [datasets.NAME] whose train split it counts.", ref="datasets")
    order: int = option(3, "n: the number of bytes of a context plus one.", ge=1, le=3)


@dataclass(frozen=True)
class UniformConfig:
    """The uniform distribution over all bytes: the floor every real model must beat."""


@dataclass(frozen=True)
class GarbageConfig:
    """A spam miner: answers with random or constant distributions that ignore the input."""

    mode: Literal["random", "constant"] = option("random", "Random distributions, or the same one every time.")
    seed: int = option(0, "Seed of the random answers.")


@dataclass(frozen=True)
class TextModalityConfig:
    """Text modality: serves next-token prediction and completion (miner) and makes checkable tasks (validator)."""

    model: str = option("", "The [models.NAME] this node serves; empty: validator-only.", ref="models")
    dataset: str = option("", "The [datasets.NAME] validation tasks are drawn from (held-out split).", ref="datasets")
    sequence_length: int = option(64, "Tokens in a validation task's context.", ge=1)
    max_sequence_length: int = option(256, "Longest context a request may carry.", ge=1)
    top_k: int = option(16, "k asked for in validation tasks.", ge=1)
    max_top_k: int = option(64, "Largest k a request may ask for.", ge=1, le=256)
    max_new_tokens: int = option(128, "Most tokens one `complete` request may ask for.", ge=1)
    max_batch: int = option(16, "Requests stacked into one forward pass.", ge=1)
    batch_wait_ms: float = option(2.0, "How long the batcher waits for more requests once one arrived.", ge=0)
    validation_positions: Literal["last", "all"] = option(
        "all", "Score every position of a task's context or only the last one."
    )
