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
class SubnetSection:
    """One subnet: ``[[chain.subnets]]`` with its own rules, uids, weights and epoch."""

    netuid: int = option(doc="The subnet's id (what [node] netuid and --netuid name).", ge=0, le=65535)
    modality: str = option("", "Wire name of the modality the subnet serves and validates (e.g. \"image\").")
    emission_share: float = option(1.0, "Share of each block's emission this subnet receives; shares sum to 1.",
                                   ge=0.0, le=1.0)
    hyperparameters: Hyperparameters = option(Hyperparameters(),
                                              "The subnet's rules ([chain.subnets.hyperparameters]).")


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
    hyperparameters: Hyperparameters = option(
        Hyperparameters(), "Rules of the [node] netuid subnet when no [[chain.subnets]] are given; with "
        "subnets, its block_emission and max_supply are the chain's.")
    subnets: list[SubnetSection] = option(
        [], "Subnets ([[chain.subnets]]); empty: one subnet, [node] netuid, ruled by [chain.hyperparameters].")

    def check(self) -> Iterator[tuple[str, str]]:
        """A client must know whom to ask; subnets have distinct ids and modalities and shares summing to 1."""
        if self.mode == "client" and "/p2p/" not in self.authority:
            yield "authority", "client mode needs the authority's multiaddr ending in /p2p/<peer id>"
        if not self.subnets:
            return
        seen: dict[int, int] = {}
        modalities: dict[str, int] = {}
        for i, sub in enumerate(self.subnets):
            if sub.netuid in seen:
                yield f"subnets[{i}].netuid", f"netuid {sub.netuid} is already subnets[{seen[sub.netuid]}]"
            seen.setdefault(sub.netuid, i)
            if sub.modality and sub.modality in modalities:
                yield (f"subnets[{i}].modality",
                       f"modality {sub.modality!r} is already served by subnets[{modalities[sub.modality]}]")
            modalities.setdefault(sub.modality, i)
        total = sum(sub.emission_share for sub in self.subnets)
        if abs(total - 1.0) > 1e-9:
            shares = " + ".join(f"{sub.emission_share:g}" for sub in self.subnets)
            yield "subnets", f"emission_share of the subnets must sum to 1, got {shares} = {total:g}"
