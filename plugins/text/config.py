"""Configuration schemas of the text plugin: datasets, models and the text modality."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from tnode.config import option


@dataclass(frozen=True)
class PythonDocsConfig:
    """A corpus built on any machine, without download, from the installed Python's standard-library
    docstrings; cached under the node's data_dir."""

    max_bytes: int = option(8_000_000, "Stop collecting after this many bytes of text.", ge=10_000)
    heldout_fraction: float = option(0.1, "Share of modules kept out of the train split.", ge=0.01, le=0.9)
    seed: int = option(0, "Seed of the train/held-out split (the corpus itself does not depend on it).")
    cache: bool = option(True, "Keep the extracted corpus in <data_dir>/datasets/ to start faster.")


@dataclass(frozen=True)
class TextFilesConfig:
    """Text from a file or a directory of files (one document per file)."""

    path: str = option(doc="A file or directory (relative to node.toml's directory).")
    glob: str = option("**/*.txt", "Pattern of files to read under a directory.")
    heldout_fraction: float = option(0.1, "Share of files kept out of the train split (a single file is cut "
                                          "at this fraction from its end).", ge=0.01, le=0.9)
    seed: int = option(0, "Seed of the train/held-out split.")


@dataclass(frozen=True)
class TransformerConfig:
    """A small causal byte-level transformer (torch), loaded from a checkpoint when one is named."""

    checkpoint: str = option("", "Checkpoint written by `tnode train` (relative to node.toml's directory); "
                                 "\"builtin\": the model shipped with tnode (trained on python_docs); "
                                 "empty: untrained weights of the shape below.")
    d_model: int = option(128, "Width of the residual stream (untrained weights only).", ge=8)
    n_layers: int = option(3, "Transformer blocks (untrained weights only).", ge=1)
    n_heads: int = option(4, "Attention heads (untrained weights only).", ge=1)
    context: int = option(64, "Longest context attended to, in tokens (untrained weights only).", ge=8)
    threads: int = option(2, "torch threads used for inference (per worker when workers > 0).", ge=1)
    workers: int = option(0, "Processes that run inference, each with its own copy of the weights, behind a "
                             "ZeroMQ socket in the data dir; requests are batched across them. 0: in the node's "
                             "process.", ge=0, le=64)

    def check(self) -> Iterator[tuple[str, str]]:
        """Untrained weights need a width the heads divide."""
        if not self.checkpoint and self.d_model % self.n_heads:
            yield "n_heads", f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}"


@dataclass(frozen=True)
class NgramConfig:
    """A byte n-gram baseline with interpolated Witten-Bell smoothing, fit at start on a dataset's
    train split."""

    dataset: str = option(doc="The [datasets.NAME] whose train split it counts.", ref="datasets")
    order: int = option(3, "n: bytes of context plus one.", ge=1, le=7)


@dataclass(frozen=True)
class UniformConfig:
    """The uniform distribution over all 256 bytes: the floor every real model must beat."""

    workers: int = option(0, "Processes that run inference, each with its own copy of the weights, behind a "
                             "ZeroMQ socket in the data dir; requests are batched across them. 0: in the node's "
                             "process.", ge=0, le=64)


@dataclass(frozen=True)
class GarbageConfig:
    """A spam miner for devnet experiments: distributions that ignore the input."""

    mode: Literal["random", "constant"] = option("random", "New random distributions every time, or one "
                                                           "fixed distribution.")
    seed: int = option(0, "Seed of the distributions.")
    workers: int = option(0, "Processes that run inference, each with its own copy of the weights, behind a "
                             "ZeroMQ socket in the data dir; requests are batched across them. 0: in the node's "
                             "process.", ge=0, le=64)


@dataclass(frozen=True)
class TextModalityConfig:
    """Text modality: serves next-token prediction and completion (miners) and makes checkable tasks
    from held-out data (validators)."""

    serve_as: str = option("", "Name peers reach this modality under on the wire (and validators ask it by); "
                               "empty: its type, \"text\". The table name is only how node.toml refers to it.")
    model: str = option("", "The [models.NAME] this node serves; empty: the node serves no text.", ref="models")
    dataset: str = option("", "The [datasets.NAME] validation tasks are drawn from (its held-out split); "
                              "empty: the node makes no tasks.", ref="datasets")
    sequence_length: int = option(64, "Tokens of context in a validation task.", ge=1)
    validation_positions: Literal["last", "all"] = option(
        "all", "Validation tasks ask for every position of the context, or only the last one.")
    top_k: int = option(16, "k asked for in validation tasks.", ge=1)
    max_sequence_length: int = option(256, "Longest context a request may carry, in tokens.", ge=1, le=65536)
    max_top_k: int = option(64, "Largest k a request may ask for.", ge=1, le=256)
    max_new_tokens: int = option(128, "Most tokens one `complete` request may ask for.", ge=1, le=4096)
    max_batch: int = option(16, "Most requests stacked into one forward pass.", ge=1, le=1024)
    max_tasks: int = option(16, "Most tasks one batched `next_token` request may carry (body `batch` = B, payload "
                                "(B, T) token ids); larger batches are refused before inference. Rate limits "
                                "count B.", ge=1, le=1024)
    batch_wait_ms: float = option(
        0.0, "How long an idle batcher waits for more requests after the first, in ms. Requests that arrive "
             "during a forward pass join the next one anyway; waiting adds latency (measured: 1 client "
             "5.8 ms → 3.5 ms p50 at 0) for little batching gain.", ge=0, le=1000)

    def check(self) -> Iterator[tuple[str, str]]:
        """What this node asks for must lie within what it would accept itself."""
        if self.top_k > self.max_top_k:
            yield "top_k", f"top_k {self.top_k} exceeds max_top_k {self.max_top_k}"
        if self.sequence_length > self.max_sequence_length:
            yield "sequence_length", (f"sequence_length {self.sequence_length} exceeds max_sequence_length "
                                      f"{self.max_sequence_length}")


@dataclass(frozen=True)
class TextTrainingConfig:
    """Online learning for a serving miner: keeps training the served transformer on its own data
    (and, with ``teachers``, the network's answers) and swaps the new weights in between passes."""

    model: str = option(doc="The [models.NAME] to train (a transformer in the node's process, workers = 0).",
                        ref="models")
    dataset: str = option(doc="The [datasets.NAME] whose train split it learns from (held-out: the figures).",
                          ref="datasets")
    teachers: str = option("", "The [teachers.NAME] to distil from; empty: own data only.", ref="teachers")
    checkpoint: str = option("", "Checkpoint written and resumed from (relative to node.toml's directory); "
                                 "empty: <data_dir>/training/NAME.pt.")
    batch_size: int = option(8, "Windows per step.", ge=1, le=1024)
    lr: float = option(5e-4, "Learning rate (AdamW, constant).", ge=1e-9, le=1.0)
    swap_every: int = option(10, "Steps between weight swaps into the serving model.", ge=1)
    checkpoint_every: int = option(100, "Steps between checkpoints.", ge=1)
    busy_fraction: float = option(0.25, "Share of wall time spent training: after each round it sleeps "
                                        "round time × (1 / busy_fraction − 1), so serving keeps the CPU.",
                                  ge=0.01, le=1.0)
    max_steps: int = option(0, "Stop after this many steps in total; 0: train while the node runs.", ge=0)
    distill_weight: float = option(0.5, "Share of the distillation loss (with teachers).", ge=0.0, le=1.0)
    teacher_k: int = option(32, "Log-probabilities asked per position.", ge=1, le=256)
    teacher_rps: float = option(5.0, "Most requests per second to teachers (0: no bound).", ge=0.0)
    seed: int = option(0, "Seed of the training windows.")
