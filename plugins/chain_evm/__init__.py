"""tnode plugin ``chain_evm``: a chain backend on any EVM chain (``[chain] type = "evm"``).

A subnet contract (``contract/TnodeSubnets.sol``) holds what the embedded chain holds; the epoch is
computed off-chain with :func:`tnode.yuma.epoch`, posted by a keeper and verified by every node.
See docs/chain-evm.md.
"""

import tnode

from .config import EvmChainConfig


def _evm_chain(*args, **kwargs):  # type: ignore[no-untyped-def]
    # web3/eth_account take ~0.7 s to import: only a node whose chain is EVM pays for it.
    from .component import EvmChain

    return EvmChain(*args, **kwargs)


@tnode.hookimpl
def tnode_register_components(register):  # type: ignore[no-untyped-def]
    register(kind="chain", type="evm", factory=_evm_chain, schema=EvmChainConfig,
             description="Subnet contract on an EVM chain (JSON-RPC), epochs posted by a keeper and verified.")


@tnode.hookimpl
def tnode_add_cli_commands(app):  # type: ignore[no-untyped-def]
    from .cli import register_commands

    register_commands(app)
