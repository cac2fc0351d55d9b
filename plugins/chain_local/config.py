"""Configuration of the embedded local chain: ``[chain] type = "local"``.

Amounts in node.toml are in tokens (1 token = 10^9 base units); the chain API and the ledger use
integer base units. ``[chain.hyperparameters]`` is :class:`tnode.hyperparameters.Hyperparameters`
itself, the type every chain backend reports. Everything under ``[chain.genesis]`` and
``[chain.hyperparameters]`` is part of the genesis block: changing it on an existing database is refused (start a new data dir).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from tnode.config import option
from tnode.hyperparameters import Hyperparameters


@dataclass(frozen=True)
class GenesisSection:
    """The chain's first state."""

    chain_id: str = option("tnode-devnet", "Name mixed into the genesis hash; different ids never share blocks.")
    accounts: list[dict[str, Any]] = option(
        [],
        "Initial allocations: tables {coldkey = hex, balance = tokens, hotkey = hex (optional), "
        "stake = tokens on that hotkey, register = true (give the hotkey a uid at genesis)}.",
    )


@dataclass(frozen=True)
class LocalChainConfig:
    """Embedded chain: a durable hash-chained ledger in one node (authority), used by others over libp2p."""

    mode: Literal["authority", "client"] = option("authority", "authority keeps the ledger; client asks it.")
    authority: str = option("", "client mode: multiaddr of the authority, ending in /p2p/<peer id>.")
    block_time: float = option(12.0, "Seconds between blocks (authority).", ge=0.001)
    db: str = option("chain.sqlite", "Ledger file, relative to [node] data_dir (authority).")
    request_timeout: float = option(10.0, "client mode: seconds to wait for the authority.", ge=0.01)
    poll_interval: float = option(0.0, "client mode: seconds between head polls (0 = the authority's block time).",
                                  ge=0)
    history_blocks: int = option(
        0, "Keep per-block metagraph history for this many blocks (0 = keep everything).", ge=0
    )
    genesis: GenesisSection = option(GenesisSection(), "Genesis allocations ([chain.genesis]).")
    hyperparameters: Hyperparameters = option(Hyperparameters(), "Subnet rules ([chain.hyperparameters]).")

    def check(self) -> Iterator[tuple[str, str]]:
        """A client must know whom to ask."""
        if self.mode == "client" and "/p2p/" not in self.authority:
            yield "authority", "client mode needs the authority's multiaddr ending in /p2p/<peer id>"
