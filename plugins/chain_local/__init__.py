"""tnode plugin ``chain_local``: the embedded chain (``[chain] type = "local"``).

A durable, hash-chained ledger kept by one authority node, used by other nodes over the
transport; proof-of-work and burn registration, stake, weights with commit-reveal, and Yuma
consensus every ``tempo`` blocks. See docs/chain.md.
"""

import tnode

from .config import LocalChainConfig


@tnode.hookimpl
def tnode_register_components(register):  # type: ignore[no-untyped-def]
    from .component import LocalChain

    register(kind="chain", type="local", factory=LocalChain, schema=LocalChainConfig,
             description="Embedded durable ledger with PoW registration, stake, weights and Yuma consensus.")


@tnode.hookimpl
def tnode_add_cli_commands(app):  # type: ignore[no-untyped-def]
    from .cli import register_commands

    register_commands(app)
