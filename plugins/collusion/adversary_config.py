"""Configuration of the adversaries (``[models.NAME] type = "relay" | "noisy-relay" | "lazy"``,
``[validator] type = "copier" | "cabal"``): attackers to test the detectors with."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from tnode.config import option


@dataclass(frozen=True)
class RelayMinerConfig:
    """A miner that forwards every task to another miner and returns its answer."""

    source: str = option(doc="The miner relayed: its uid, its hotkey (hex) or a multiaddr ending in /p2p/<peer id>.")
    noise: float = option(0.0, "Standard deviation (nats) of the Gaussian noise added to each log-probability "
                               "before renormalizing; 0 relays the answer as it is.", ge=0.0, le=10.0)
    k: int = option(64, "Top-k asked of the source per position (the rest of the mass is spread evenly).",
                    ge=1, le=256)
    modality: str = option("text", "Wire name of the modality the source is asked through.")
    timeout: float = option(4.0, "Seconds the source has to answer.", ge=0.01)
    seed: int = option(-1, "Seed of the noise; -1 draws one from the OS.")

    def check(self) -> Iterator[tuple[str, str] | tuple[str, str, str]]:
        """A source must be named."""
        if not self.source.strip():
            yield "source", "a relay needs a source", "give a uid, a hotkey or a multiaddr"


@dataclass(frozen=True)
class NoisyRelayMinerConfig(RelayMinerConfig):
    """A relay that adds 0.05 nats of noise, so its answers are not exact copies."""

    noise: float = option(0.05, "Standard deviation (nats) of the noise added to each log-probability.",
                          ge=0.0, le=10.0)


@dataclass(frozen=True)
class LazyMinerConfig:
    """A miner that answers with a real model on some tasks and with junk on the rest."""

    model: str = option(doc="The [models.NAME] that answers the tasks done well.", ref="models")
    fraction: float = option(0.4, "Share of tasks answered by `model`; the rest get confident junk.", ge=0.0, le=1.0)
    seed: int = option(-1, "Seed of the choice and the junk; -1 draws one from the OS.")


@dataclass(frozen=True)
class CopierConfig:
    """A validator that measures nothing: it sets the stake-weighted mean of the other validators'
    latest weights on the chain (under commit-reveal: the weights revealed so far)."""

    step_interval: float = option(2.0, "Seconds between two reads of the chain.", ge=0.01)
    weights_interval: int = option(0, "Fewest blocks between two submissions, on top of weights_rate_limit.", ge=0)
    boost_target: str = option("", "Cabal: the miner (uid or hotkey hex) given `boost` extra weight; "
                                    "empty for a plain copier.")
    boost: float = option(0.0, "Cabal: share of the weight moved onto `boost_target`.", ge=0.0, le=1.0)
    version_key: int = option(0, "version_key sent with weights (raised to the subnet's weights_version).", ge=0)


@dataclass(frozen=True)
class CabalConfig(CopierConfig):
    """A cabal member: the copier's weights with `boost` of them moved onto one miner, the same one
    the other members push."""

    boost_target: str = option("", "The miner (uid or hotkey hex) the cabal pushes (required).")
    boost: float = option(0.5, "Share of the weight moved onto `boost_target`.", ge=0.0, le=1.0)

    def check(self) -> Iterator[tuple[str, str] | tuple[str, str, str]]:
        """A cabal pushes someone."""
        if not self.boost_target.strip():
            yield "boost_target", "a cabal member needs a boost_target", "give the pushed miner's uid or hotkey"
