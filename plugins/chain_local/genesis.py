"""Genesis: the chain's first state, built from ``[chain.genesis]`` and ``[chain.hyperparameters]``.

The genesis document (chain id, netuid, hyperparameters, allocations in base units) is hashed into
block 0's ``tx_root`` = H(b"tnode-genesis-v1\\n" ‖ orjson with sorted keys); block 0 has number 0,
prev_hash 32 zero bytes, timestamp 0 and tx_count 0, so the same configuration always gives the
same genesis hash and a database made from another configuration is recognised and refused.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import orjson
from tnode.errors import ConfigError
from tnode.hyperparameters import Hyperparameters

from .codec import TOKEN, ZERO_HASH, BlockHeader, h256, is_public_key_hex, tokens_to_units
from .config import LocalChainConfig

GENESIS_DOMAIN = b"tnode-genesis-v1\n"
GENESIS_VERSION = 1
_ACCOUNT_KEYS = {"coldkey", "hotkey", "balance", "stake", "register"}
_TOKEN_FIELDS = ("block_emission", "max_supply", "burn", "min_burn", "max_burn")


@dataclass(frozen=True, slots=True)
class Allocation:
    """One genesis account, amounts in base units."""

    coldkey: str
    hotkey: str | None
    balance: int
    stake: int
    register: bool


@dataclass(frozen=True, slots=True)
class Genesis:
    chain_id: str
    netuid: int
    hyperparameters: dict[str, Any]  # token amounts already converted to base units
    allocations: tuple[Allocation, ...]

    def document(self) -> dict[str, Any]:
        return {
            "version": GENESIS_VERSION,
            "chain_id": self.chain_id,
            "netuid": self.netuid,
            "hyperparameters": self.hyperparameters,
            "accounts": [dataclasses.asdict(a) for a in self.allocations],
        }

    def header(self) -> BlockHeader:
        doc_hash = h256(GENESIS_DOMAIN, orjson.dumps(self.document(), option=orjson.OPT_SORT_KEYS))
        return BlockHeader.make(0, ZERO_HASH, 0, doc_hash, 0)


def hyperparameters_in_units(hp: Hyperparameters) -> dict[str, Any]:
    """The hyperparameters as the ledger stores them: token amounts as integer base units."""
    out = dataclasses.asdict(hp)
    for name in _TOKEN_FIELDS:
        out[name] = tokens_to_units(out[name])
    return out


def hyperparameters_from_units(doc: dict[str, Any]) -> Hyperparameters:
    """The inverse of :func:`hyperparameters_in_units`: the stored form back as the typed rules."""
    converted = dict(doc)
    for name in _TOKEN_FIELDS:
        if name in converted:
            converted[name] = converted[name] / TOKEN
    return Hyperparameters.from_mapping(converted, source="genesis.hyperparameters")


def _fail(message: str, path: str) -> ConfigError:
    return ConfigError(message, key_path=path)


def genesis_from_config(cfg: LocalChainConfig, netuid: int) -> Genesis:
    """Validate the genesis tables; raises :class:`ConfigError` naming the offending key."""
    hp = cfg.hyperparameters
    if hp.min_difficulty > hp.max_difficulty:
        raise _fail("min_difficulty exceeds max_difficulty", "chain.hyperparameters.min_difficulty")
    if not hp.min_difficulty <= hp.difficulty <= hp.max_difficulty:
        raise _fail("difficulty must lie in [min_difficulty, max_difficulty]", "chain.hyperparameters.difficulty")
    if hp.min_burn > hp.max_burn:
        raise _fail("min_burn exceeds max_burn", "chain.hyperparameters.min_burn")
    if not hp.min_burn <= hp.burn <= hp.max_burn:
        raise _fail("burn must lie in [min_burn, max_burn]", "chain.hyperparameters.burn")
    allocations: list[Allocation] = []
    registered: set[str] = set()
    for i, raw in enumerate(cfg.genesis.accounts):
        path = f"chain.genesis.accounts[{i}]"
        unknown = set(raw) - _ACCOUNT_KEYS
        if unknown:
            raise _fail(f"unknown key(s) {', '.join(sorted(unknown))} (allowed: {', '.join(sorted(_ACCOUNT_KEYS))})",
                        path)
        coldkey, hotkey = raw.get("coldkey"), raw.get("hotkey")
        if not is_public_key_hex(coldkey):
            raise _fail("coldkey must be a 64-character lowercase hex public key", f"{path}.coldkey")
        if hotkey is not None and not is_public_key_hex(hotkey):
            raise _fail("hotkey must be a 64-character lowercase hex public key", f"{path}.hotkey")
        amounts = {}
        for name in ("balance", "stake"):
            value = raw.get(name, 0)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise _fail(f"{name} must be a non-negative number of tokens", f"{path}.{name}")
            amounts[name] = tokens_to_units(value)
        register = raw.get("register", hotkey is not None)
        if not isinstance(register, bool):
            raise _fail("register must be true or false", f"{path}.register")
        if hotkey is None and (amounts["stake"] or register):
            raise _fail("stake and register need a hotkey", f"{path}.hotkey")
        if register:
            if hotkey in registered:
                raise _fail("this hotkey is registered twice", f"{path}.hotkey")
            registered.add(str(hotkey))
        allocations.append(Allocation(str(coldkey), hotkey, amounts["balance"], amounts["stake"], register))
    if len(registered) > hp.max_allowed_uids:
        raise _fail(f"{len(registered)} genesis registrations exceed max_allowed_uids", "chain.genesis.accounts")
    total = sum(a.balance + a.stake for a in allocations)
    if total > tokens_to_units(hp.max_supply):
        raise _fail("genesis allocations exceed max_supply", "chain.genesis.accounts")
    return Genesis(cfg.genesis.chain_id, netuid, hyperparameters_in_units(hp), tuple(allocations))
