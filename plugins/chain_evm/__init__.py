"""tnode plugin ``chain_evm``: a chain backend on any EVM chain (``[chain] type = "evm"``).

A subnet contract (``contract/TnodeSubnets.sol``) holds what the embedded chain holds; the epoch is
computed off-chain with :func:`tnode.yuma.epoch`, posted by a keeper and verified by every node.
See docs/chain-evm.md.
"""
