"""Modality contracts: the types the plugins of one modality share, owned by the core.

The core's generic interfaces (:mod:`tnode.interfaces`) know no modality. The data a modality's
plugins exchange (a text miner's parsed answer that scorers and spam filters read, the protocol a
text model implements) lives in one module per modality here, so a scorer or a spam filter imports
``tnode.contracts.text`` instead of the text plugin:

- :mod:`tnode.contracts.text`: token datasets, language models, top-k next-token answers.
- :mod:`tnode.contracts.image`: image datasets and models, corruptions, hidden truths, answers.

A contract module imports only the core's generic modules, never a plugin and never another
contract. A new modality's contract is added with the core (see docs/plugin-authors.md).
"""
