"""Genesis: the chain's first state, built from ``[chain.genesis]`` and ``[chain.hyperparameters]``.

The genesis document (chain id, netuid, hyperparameters, allocations in base units, and the
subnets when ``[[chain.subnets]]`` are configured) is hashed into
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
_ACCOUNT_KEYS = {"coldkey", "hotkey", "balance", "stake", "register", "netuids"}
_TOKEN_FIELDS = ("block_emission", "max_supply", "burn", "min_burn", "max_burn")


@dataclass(frozen=True, slots=True)
class Allocation:
    """One genesis account, amounts in base units."""

    coldkey: str
    hotkey: str | None
    balance: int
    stake: int
    register: bool
    netuids: tuple[int, ...] = ()  # subnets the hotkey is registered in at genesis (empty: the first)


@dataclass(frozen=True, slots=True)
class SubnetGenesis:
    """One subnet at genesis: its id, modality, share of the emission and rules (base units)."""

    netuid: int
    modality: str
    emission_share: float
    hyperparameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Genesis:
    chain_id: str
    netuid: int  # the first subnet: what transactions without a netuid act on
    hyperparameters: dict[str, Any]  # token amounts already converted to base units
    allocations: tuple[Allocation, ...]
    subnets: tuple[SubnetGenesis, ...] = ()  # empty: one subnet, ``netuid``, ruled by ``hyperparameters``

    def subnet_list(self) -> tuple[SubnetGenesis, ...]:
        """Every subnet, the first (``netuid``) first."""
        if not self.subnets:
            return (SubnetGenesis(self.netuid, "", 1.0, self.hyperparameters),)
        first = [s for s in self.subnets if s.netuid == self.netuid]
        return (*first, *(s for s in self.subnets if s.netuid != self.netuid))

    def document(self) -> dict[str, Any]:
        accounts = []
        for a in self.allocations:
            doc = dataclasses.asdict(a)
            if not a.netuids:  # a single-subnet genesis keeps the hash it had before subnets existed
                doc.pop("netuids")
            else:
                doc["netuids"] = list(a.netuids)
            accounts.append(doc)
        out: dict[str, Any] = {
            "version": GENESIS_VERSION,
            "chain_id": self.chain_id,
            "netuid": self.netuid,
            "hyperparameters": self.hyperparameters,
            "accounts": accounts,
        }
        if self.subnets:
            out["subnets"] = [dataclasses.asdict(s) for s in self.subnets]
        return out

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


def _check_rules(hp: Hyperparameters, path: str) -> None:
    if hp.min_difficulty > hp.max_difficulty:
        raise _fail("min_difficulty exceeds max_difficulty", f"{path}.min_difficulty")
    if not hp.min_difficulty <= hp.difficulty <= hp.max_difficulty:
        raise _fail("difficulty must lie in [min_difficulty, max_difficulty]", f"{path}.difficulty")
    if hp.min_burn > hp.max_burn:
        raise _fail("min_burn exceeds max_burn", f"{path}.min_burn")
    if not hp.min_burn <= hp.burn <= hp.max_burn:
        raise _fail("burn must lie in [min_burn, max_burn]", f"{path}.burn")


def _subnets(cfg: LocalChainConfig, netuid: int) -> tuple[tuple[SubnetGenesis, ...], dict[int, Hyperparameters]]:
    """The configured subnets (empty for a single-subnet chain) and every subnet's typed rules."""
    if not cfg.subnets:
        _check_rules(cfg.hyperparameters, "chain.hyperparameters")
        return (), {netuid: cfg.hyperparameters}
    rules: dict[int, Hyperparameters] = {}
    out = []
    for i, sub in enumerate(cfg.subnets):
        _check_rules(sub.hyperparameters, f"chain.subnets[{i}].hyperparameters")
        rules[sub.netuid] = sub.hyperparameters
        out.append(SubnetGenesis(sub.netuid, sub.modality, sub.emission_share,
                                 hyperparameters_in_units(sub.hyperparameters)))
    if netuid not in rules:
        raise _fail(f"[node] netuid {netuid} is not one of the subnets ({', '.join(str(n) for n in rules)}); "
                    f"the authority's netuid names the chain's first subnet", "chain.subnets")
    return tuple(out), rules


def genesis_from_config(cfg: LocalChainConfig, netuid: int) -> Genesis:
    """Validate the genesis tables; raises :class:`ConfigError` naming the offending key."""
    subnets, rules = _subnets(cfg, netuid)
    hp = cfg.hyperparameters
    allocations: list[Allocation] = []
    registered: dict[int, set[str]] = {n: set() for n in rules}
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
        netuids = raw.get("netuids", [])
        if (not isinstance(netuids, list) or not all(isinstance(n, int) and not isinstance(n, bool) for n in netuids)
                or len(set(netuids)) != len(netuids)):
            raise _fail("netuids must be a list of distinct subnet ids", f"{path}.netuids")
        for n in netuids:
            if n not in rules:
                raise _fail(f"netuid {n} is not a subnet of this chain ({', '.join(str(k) for k in rules)})",
                            f"{path}.netuids")
        if register:
            for n in netuids or [netuid]:
                if hotkey in registered[n]:
                    raise _fail(f"this hotkey is registered twice in subnet {n}", f"{path}.hotkey")
                registered[n].add(str(hotkey))
        allocations.append(Allocation(str(coldkey), hotkey, amounts["balance"], amounts["stake"], register,
                                      tuple(netuids)))
    for n, hotkeys in registered.items():
        if len(hotkeys) > rules[n].max_allowed_uids:
            raise _fail(f"{len(hotkeys)} genesis registrations exceed max_allowed_uids of subnet {n}",
                        "chain.genesis.accounts")
    total = sum(a.balance + a.stake for a in allocations)
    if total > tokens_to_units(hp.max_supply):
        raise _fail("genesis allocations exceed max_supply", "chain.genesis.accounts")
    return Genesis(cfg.genesis.chain_id, netuid, hyperparameters_in_units(hp), tuple(allocations), subnets)
