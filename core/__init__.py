"""tnode: a node for a decentralized machine-learning network.

The public API plugins may import: :mod:`tnode.events`, :mod:`tnode.errors`,
:mod:`tnode.interfaces`, :mod:`tnode.config` (schemas), :mod:`tnode.keys`, :mod:`tnode.wire`,
:mod:`tnode.bus`, :mod:`tnode.node`, :mod:`tnode.weights` (u16 weight vectors and their commit
hash), :mod:`tnode.hyperparameters` (the subnet's typed rules), :mod:`tnode.workers` (a model
run in worker processes behind ZeroMQ), :mod:`tnode.batching` (a deadline batcher: concurrent
requests share one model pass), :mod:`tnode.http` (an ASGI application served on the
node's trio loop), :mod:`tnode.contracts` (the
types one modality's plugins share, e.g. :mod:`tnode.contracts.text`) and the ``hookimpl`` marker
below. Plugins' tests also use :mod:`tnode.testing` (an in-memory chain and a loopback network).
"""

from __future__ import annotations

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("tnode")
"""Marker for plugin hook implementations: ``@tnode.hookimpl``."""

__all__ = ["__version__", "hookimpl"]
