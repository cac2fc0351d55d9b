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
    TransformerConfig,
    UniformConfig,
)


def _transformer(node: Any, name: str, config: TransformerConfig) -> Any:
    from .transformer import TransformerModel  # torch loads only when a transformer is configured

    return TransformerModel(node, name, config)


@tnode.hookimpl
def tnode_register_components(register: Any) -> None:
    from .datasets import TokenDataset
    from .modality import TextModality
    from .models import GarbageModel, NgramModel, UniformModel

    register(kind="dataset", type="python_docs", factory=TokenDataset, schema=PythonDocsConfig)
    register(kind="dataset", type="text_files", factory=TokenDataset, schema=TextFilesConfig)
    register(kind="model", type="transformer", factory=_transformer, schema=TransformerConfig)
    register(kind="model", type="ngram", factory=NgramModel, schema=NgramConfig)
    register(kind="model", type="uniform", factory=UniformModel, schema=UniformConfig)
    register(kind="model", type="garbage", factory=GarbageModel, schema=GarbageConfig)
    register(kind="modality", type="text", factory=TextModality, schema=TextModalityConfig)


@tnode.hookimpl
def tnode_add_cli_commands(app: Any) -> None:
    from .cli import register_commands

    register_commands(app)
