"""Configuration of the EVM chain backend: ``[chain] type = "evm"``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from tnode.config import option
from tnode.hyperparameters import Hyperparameters


@dataclass(frozen=True)
class EvmChainConfig:
    """A subnet contract on an EVM chain, reached over JSON-RPC."""

    rpc_url: str = option("http://127.0.0.1:8545", "JSON-RPC endpoint of an EVM node (http:// or https://).")
    contract: str = option("deploy", "Address of the subnet contract (0x…), or \"deploy\" to deploy it on start.")
    account_key_file: str = option(
        "", "File with the hex private key of the operator account (deploys, funds the emission reserve, "
            "posts epochs as keeper); relative to [node] data_dir. Empty: anvil's first development account."
    )
    confirmations: int = option(1, "Blocks a transaction must be buried under before it counts as done.", ge=1)
    poll_interval: float = option(1.0, "Seconds between head polls.", ge=0.01)
    request_timeout: float = option(10.0, "Seconds to wait for one JSON-RPC answer.", ge=0.1)
    tx_timeout: float = option(60.0, "Seconds to wait for a transaction to be mined.", ge=0.1)
    max_backoff: float = option(10.0, "Longest wait between reconnection attempts, in seconds.", ge=0.01)
    start_timeout: float = option(30.0, "Seconds to keep trying to reach the endpoint at start.", ge=0.1)
    keeper: bool = option(False, "Post each epoch's emission (the operator account must be the contract's keeper).")
    verify: bool = option(True, "Recompute every posted epoch and raise an alarm when it differs.")
    dispute: bool = option(False, "On a mismatch, also record a dispute on-chain (signed by this node's hotkey).")
    modality: str = option("text", "Modality name of the subnet created when deploying.")
    reserve: float = option(1000.0, "Tokens sent to the emission reserve when deploying.", ge=0)
    hyperparameters: Hyperparameters = option(Hyperparameters(), "Rules of the subnet created when deploying.")

    def check(self) -> Iterator[tuple[str, str]]:
        if not self.rpc_url.startswith(("http://", "https://")):
            yield "rpc_url", "must start with http:// or https://"
        c = self.contract
        if c != "deploy" and not (c.startswith("0x") and len(c) == 42 and all(ch in "0123456789abcdefABCDEF" for ch in c[2:])):
            yield "contract", "must be a 0x-prefixed 20-byte hex address or \"deploy\""
