"""tnode plugin: the text modality, byte-level datasets and language models, and `tnode train`."""

from __future__ import annotations

from typing import Any

import tnode

from .config import (
    GarbageConfig,
    NgramConfig,
    PythonDocsConfig,
    TextFilesConfig,
    TextModalityConfig,
    TextTrainingConfig,
    TransformerConfig,
    UniformConfig,
)


def _transformer(node: Any, name: str, config: TransformerConfig) -> Any:
    from .transformer import TransformerModel  # torch is imported only when a transformer is configured

    return TransformerModel(node, name, config)


def _training(node: Any, name: str, config: TextTrainingConfig) -> Any:
    from .online import OnlineTraining  # torch is imported only when online training is configured

    return OnlineTraining(node, name, config)


@tnode.hookimpl
def tnode_add_component_kinds(declare: Any) -> None:
    # Online learning is optional: the kind exists for nodes that configure a [training.NAME] table.
    declare(kind="training", section="training", after="modality",
            description="Keeps training a served model while the node serves (online learning).")


@tnode.hookimpl
def tnode_register_components(register: Any) -> None:
    from .datasets import TokenDataset
    from .modality import TextModality
    from .models import GarbageModel, NgramModel, UniformModel

    register(kind="dataset", type="python_docs", factory=TokenDataset, schema=PythonDocsConfig,
             description="Docstrings of the installed Python's standard library, split by module.")
    register(kind="dataset", type="text_files", factory=TokenDataset, schema=TextFilesConfig,
             description="Text files (a file or a directory + glob), split by file.")
    register(kind="model", type="transformer", factory=_transformer, schema=TransformerConfig,
             description="Small causal byte-level transformer (torch), trained with `tnode train`.")
    register(kind="model", type="ngram", factory=NgramModel, schema=NgramConfig,
             description="Byte n-gram baseline with Witten-Bell smoothing, fit on a dataset at start.")
    register(kind="model", type="uniform", factory=UniformModel, schema=UniformConfig,
             description="Every byte equally likely.")
    register(kind="model", type="garbage", factory=GarbageModel, schema=GarbageConfig,
             description="Spam miner: random or constant distributions that ignore the input.")
    register(kind="training", type="text", factory=_training, schema=TextTrainingConfig,
             description="Online learning: trains a copy of a served transformer on its own data (and the "
                         "network's answers) and swaps the weights in atomically between passes.")
    register(kind="modality", type="text", factory=TextModality, schema=TextModalityConfig,
             description="Next-token prediction and completion over byte tokens; validation tasks from "
                         "held-out data.")


@tnode.hookimpl
def tnode_add_cli_commands(app: Any) -> None:
    from .cli import register_commands

    register_commands(app)
