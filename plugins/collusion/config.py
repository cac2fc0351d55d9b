"""Configuration of the collusion detectors: ``[collusion.NAME] type = "..."``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from tnode.config import option

ACTIONS = ("report", "zero", "scale")


@dataclass(frozen=True)
class DetectorConfig:
    """Keys every detector has: what to do with a finding and how much history to keep."""

    action: str = option("report", "What validators on this node do with the suspects' weights: report "
                                   "(nothing), zero, or scale (multiply by `factor`).", choices=ACTIONS)
    factor: float = option(0.1, "Multiplier of the suspects' scores when action = \"scale\".", ge=0.0, le=1.0)
    hold_seconds: float = option(600.0, "How long a zero/scale verdict holds after the last finding.", ge=1.0)
    history: int = option(256, "Suspects kept (the least recently seen are dropped first).", ge=1)
    summary_seconds: float = option(60.0, "Seconds between two info-level summaries of the suspects.", ge=1.0)

    def check(self) -> Iterator[tuple[str, str] | tuple[str, str, str]]:
        """A scale verdict must scale: factor 1 would change nothing."""
        if self.action == "scale" and self.factor >= 1.0:
            yield "factor", "action = \"scale\" with factor 1 changes nothing", "use a factor below 1, or action = \"report\""


@dataclass(frozen=True)
class RelayConfig(DetectorConfig):
    """Miners whose answers to the same tasks stay close on every task (relays, copies, twins)."""

    action: str = option("zero", "What validators do with a relay's weights (report, zero, scale).", choices=ACTIONS)
    window: int = option(32, "Shared tasks per miner pair kept (the newest).", ge=2)
    min_tasks: int = option(16, "Shared tasks a pair needs before it is judged (fewer let honest twins "
                                "look ordered by chance).", ge=2)
    max_distance: float = option(0.4, "Median answer distance (text: mean L1 between next-token distributions, "
                                      "0..2) at or below which two miners answer as one.", ge=0.0, le=2.0)
    order_fraction: float = option(0.9, "Share of shared tasks one of a close pair must answer later for it to be "
                                        "the relay; below it the pair are honest twins.", ge=0.5, le=1.0)
    min_lag: float = option(0.0005, "Seconds later an answer must come to count as later.", ge=0.0)


@dataclass(frozen=True)
class LazyConfig(DetectorConfig):
    """Miners that answer well only on some tasks (per-task scores in two modes)."""

    action: str = option("zero", "What validators do with a lazy miner's weights.", choices=ACTIONS)
    window: int = option(48, "Tasks per miner kept (the newest).", ge=4)
    min_tasks: int = option(16, "Tasks a miner needs before it is judged.", ge=4)
    low: float = option(0.5, "A task counts as junk below this fraction of the round's median score.", ge=0.0, le=1.0)
    high: float = option(0.8, "A task counts as good at or above this fraction of the round's median.", ge=0.0)
    min_junk: float = option(0.2, "Share of junk tasks that, with enough good ones, makes a miner lazy.", ge=0.0,
                             le=1.0)
    min_good: float = option(0.3, "Share of good tasks a lazy miner shows (a miner always bad is not lazy, "
                                  "just bad: the scores handle it).", ge=0.0, le=1.0)


@dataclass(frozen=True)
class OperatorConfig(DetectorConfig):
    """Miners run by one operator: a shared coldkey or a shared network address."""

    poll_interval: float = option(30.0, "Seconds between two reads of the metagraph.", ge=0.5)
    addresses: bool = option(True, "Also group miners announcing the same IP address and port.")


@dataclass(frozen=True)
class WeightCopyConfig(DetectorConfig):
    """Validators whose weights track the others' (current or previous) weights closer than measurement."""

    poll_interval: float = option(5.0, "Seconds between two reads of the metagraph (each new weights matrix "
                                       "is one observation).", ge=0.5)
    window: int = option(8, "Observations kept.", ge=2)
    min_epochs: int = option(4, "Observations needed before a validator is judged.", ge=2)
    max_ratio: float = option(0.35, "A validator whose mean distance to the others' weights is at most this "
                                    "fraction of the honest median is a copier.", ge=0.0, le=1.0)


@dataclass(frozen=True)
class CabalConfig(DetectorConfig):
    """Validators whose deviations from consensus point the same way (FoolsGold-style cosine clusters)."""

    poll_interval: float = option(5.0, "Seconds between two reads of the metagraph.", ge=0.5)
    window: int = option(8, "Observations whose deviations are accumulated.", ge=2)
    min_epochs: int = option(4, "Observations needed before validators are judged.", ge=2)
    min_cosine: float = option(0.7, "Cosine similarity of accumulated deviations at or above which two "
                                    "validators act as one.", ge=0.0, le=1.0)
    min_deviation: float = option(0.2, "Smallest accumulated L1 deviation per observation worth judging "
                                       "(honest noise is smaller).", ge=0.0)


@dataclass(frozen=True)
class SelfDealingConfig(DetectorConfig):
    """Validators weighting miners that share their coldkey above what consensus gives them."""

    poll_interval: float = option(5.0, "Seconds between two reads of the metagraph.", ge=0.5)
    min_share: float = option(0.1, "Share of its weight a validator must give its own coldkey's miners.", ge=0.0,
                              le=1.0)
    over_consensus: float = option(2.0, "…and how many times more than the others give them.", ge=1.0)
