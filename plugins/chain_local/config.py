"""Configuration of the embedded local chain: ``[chain] type = "local"``.

Amounts in node.toml are in tokens (1 token = 10^9 base units); the chain API and the ledger use
integer base units. Everything under ``[chain.genesis]`` and ``[chain.hyperparameters]`` is part
of the genesis block: changing it on an existing database is refused (start a new data dir).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from tnode.config import option


@dataclass(frozen=True)
class Hyperparameters:
    """Subnet rules, fixed at genesis (names and defaults follow subtensor where it has them)."""

    tempo: int = option(360, "Blocks between Yuma consensus epochs.", ge=1)
    block_emission: float = option(1.0, "Tokens emitted per block, paid out at each epoch.", ge=0)
    max_supply: float = option(21_000_000.0, "Issuance cap in tokens; emission stops when reached.", ge=0)
    kappa: float = option(0.5, "Stake quantile that defines consensus.", ge=0, le=1)
    bonds_penalty: float = option(1.0, "How much weight above consensus is cut from bonds (β).", ge=0, le=1)
    bonds_moving_average: float = option(0.9, "EMA memory of bonds (α = 1 − this).", ge=0, le=1)
    activity_cutoff: int = option(5000, "Blocks since the last weights after which a validator is inactive.", ge=1)
    max_allowed_uids: int = option(4096, "Subnet size; a full subnet prunes to register.", ge=1, le=65535)
    max_allowed_validators: int = option(128, "Validator permits go to the top this-many hotkeys by stake.", ge=1)
    immunity_period: int = option(4096, "Blocks after registration during which a uid cannot be pruned.", ge=0)
    min_allowed_weights: int = option(1, "Fewest non-zero weights a validator must set.", ge=0)
    max_weight_limit: float = option(1.0, "Largest share one uid may get in a weight vector.", ge=0, le=1)
    weights_rate_limit: int = option(100, "Blocks between two weight settings (or commits) of a hotkey.", ge=0)
    weights_version: int = option(0, "Minimum version_key a weight setting must carry.", ge=0)
    commit_reveal_weights_enabled: bool = option(False, "Weights must be committed as a hash, then revealed.")
    commit_reveal_period: int = option(360, "Blocks after a commit before its reveal is accepted.", ge=0)
    commit_reveal_window: int = option(360, "Blocks a commit stays revealable; after that it expires.", ge=1)
    difficulty: int = option(1_000_000, "Initial proof-of-work registration difficulty.", ge=1)
    min_difficulty: int = option(1, "Lowest difficulty the adjustment may reach.", ge=1)
    max_difficulty: int = option(2**62, "Highest difficulty the adjustment may reach.", ge=1)
    adjustment_interval: int = option(112, "Blocks between difficulty and burn adjustments.", ge=1)
    adjustment_alpha: float = option(
        0.0, "Smoothing of adjustments: next = α·current + (1−α)·computed.", ge=0, le=1
    )
    target_registrations_per_interval: int = option(2, "Registrations per interval the adjustment aims at.", ge=1)
    max_registrations_per_block: int = option(1, "Registrations accepted in one block.", ge=1)
    max_registrations_per_interval: int = option(6, "Registrations accepted in one adjustment interval.", ge=1)
    pow_block_window: int = option(5, "A seal must be over the hash of one of the last this-many blocks.", ge=1)
    burn: float = option(1.0, "Initial burn-registration cost in tokens.", ge=0)
    min_burn: float = option(0.1, "Lowest burn cost the adjustment may reach, in tokens.", ge=0)
    max_burn: float = option(100.0, "Highest burn cost the adjustment may reach, in tokens.", ge=0)
    serving_rate_limit: int = option(0, "Blocks between two address publications of a hotkey.", ge=0)


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
