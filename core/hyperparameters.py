"""The subnet's rules as every chain backend reports them and every plugin reads them.

:class:`Hyperparameters` is one frozen dataclass with a documented default per field (subtensor's
names and defaults where it has them). A chain backend returns it from
:meth:`tnode.interfaces.ChainBackend.hyperparameters` and in :attr:`tnode.interfaces.Metagraph.hyperparameters`;
readers use its attributes and never fall back on defaults or alternative names of their own.

Units: block counts are integers; token amounts (``block_emission``, ``max_supply``, ``burn``,
``min_burn``, ``max_burn``) are in tokens, like :attr:`tnode.interfaces.Neuron.stake`.
``difficulty`` and ``burn`` are the genesis values in a chain's configuration and the *current*
values in what a backend reports.

The class is also a configuration schema (its fields are declared with :func:`tnode.config.option`),
so a backend may use it as its ``[chain.hyperparameters]`` table. On the wire it travels as
:meth:`Hyperparameters.to_dict`; :meth:`Hyperparameters.from_mapping` reads it back and refuses
unknown keys, wrong types and out-of-range values, naming the key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .config import load_table, option
from .errors import WrongTypeError


@dataclass(frozen=True)
class Hyperparameters:
    """Subnet rules (names and defaults follow subtensor where it has them)."""

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

    @classmethod
    def from_mapping(cls, doc: Mapping[str, Any], *, source: str = "hyperparameters") -> Hyperparameters:
        """Read the wire form (:meth:`to_dict`); missing keys take their defaults.

        :param source: the key path to name in errors (e.g. ``"chain.hyperparameters"``).
        :raises tnode.errors.ConfigErrors: for an unknown key (with a "did you mean"), a value of
            the wrong type or out of range, each naming ``<source>.<key>``;
            :class:`tnode.errors.WrongTypeError` when ``doc`` is not a mapping.
        """
        if not isinstance(doc, Mapping):
            raise WrongTypeError(f"expected a table of hyperparameters, got {type(doc).__name__}", key_path=source)
        result: Hyperparameters = load_table(cls, doc, path=source)
        return result

    def to_dict(self) -> dict[str, Any]:
        """The wire form: a flat JSON-able mapping of every field."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> Hyperparameters:
        """A copy with ``changes`` applied (e.g. a backend filling in the current burn)."""
        return dataclasses.replace(self, **changes)
