"""The subnet contract as Python sees it: its compiled artifact, call encoding, the hyperparameter
layout and the refusal codes.

``contract/TnodeSubnets.sol`` is compiled by ``contract/compile.cjs`` (solc from npm, fixed
settings) into ``contract/TnodeSubnets.json``, which ships with the package; a test recompiles
and compares. Hyperparameters travel as a fixed array of 30 integers in the order of
:data:`HP_LAYOUT`: integers as they are, booleans 0/1, fractions as fixed point ×10⁹, token amounts
in wei (1 token = 10¹⁸ wei; tnode's base unit, 10⁻⁹ token, is 10⁹ wei).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Sequence
from importlib import resources
from typing import Any

from eth_abi import decode, encode
from eth_utils import keccak
from tnode.errors import ChainError
from tnode.hyperparameters import Hyperparameters

WEI_PER_UNIT = 10**9
"""Wei per tnode base unit (10⁻⁹ token)."""
WEI_PER_TOKEN = 10**18
FIXED = 10**9

# (field, kind): kind is "int", "bool", "fixed" (×1e9) or "tokens" (wei). Order = the contract's indices.
HP_LAYOUT: tuple[tuple[str, str], ...] = (
    ("tempo", "int"), ("block_emission", "tokens"), ("max_supply", "tokens"), ("kappa", "fixed"),
    ("bonds_penalty", "fixed"), ("bonds_moving_average", "fixed"), ("activity_cutoff", "int"),
    ("max_allowed_uids", "int"), ("max_allowed_validators", "int"), ("immunity_period", "int"),
    ("min_allowed_weights", "int"), ("max_weight_limit", "fixed"), ("weights_rate_limit", "int"),
    ("weights_version", "int"), ("commit_reveal_weights_enabled", "bool"), ("commit_reveal_period", "int"),
    ("commit_reveal_window", "int"), ("difficulty", "int"), ("min_difficulty", "int"), ("max_difficulty", "int"),
    ("adjustment_interval", "int"), ("adjustment_alpha", "fixed"), ("target_registrations_per_interval", "int"),
    ("max_registrations_per_block", "int"), ("max_registrations_per_interval", "int"), ("pow_block_window", "int"),
    ("burn", "tokens"), ("min_burn", "tokens"), ("max_burn", "tokens"), ("serving_rate_limit", "int"),
)

REFUSALS: dict[str, str] = {
    "not_owner": "only the contract owner may do this",
    "not_keeper": "only the keeper account posts epochs",
    "subnet_exists": "this netuid is taken",
    "unknown_subnet": "no subnet with this netuid",
    "key_bound": "this key is bound to another EVM account",
    "account_bound": "this EVM account is bound to another key",
    "unbound_account": "the sending account is bound to no tnode key",
    "not_registered": "this hotkey has no uid on this subnet",
    "unknown_block": "the seal's block is not sealed yet",
    "stale_block": "the seal's block is older than pow_block_window",
    "invalid_seal": "the seal does not meet the current difficulty",
    "seal_used": "this seal was already used",
    "already_registered": "this hotkey already has a uid on this subnet",
    "hotkey_owned": "this hotkey belongs to another coldkey",
    "too_many_registrations": "registration limit of this block or adjustment interval reached",
    "subnet_full": "every uid is within its immunity period",
    "insufficient_balance": "the balance does not cover the amount",
    "insufficient_stake": "the stake on this hotkey is below the amount",
    "unknown_hotkey": "stake can only be added to a registered hotkey",
    "invalid_amount": "the amount must be positive",
    "rate_limited": "too soon since the last setting",
    "weights_length_mismatch": "uids and weights differ in length",
    "incorrect_weights_version": "version_key is below the subnet's weights_version",
    "uid_out_of_range": "a uid is not on the subnet",
    "duplicate_uids": "each uid may appear once",
    "too_few_weights": "fewer non-zero weights than min_allowed_weights",
    "max_weight_exceeded": "the largest weight exceeds max_weight_limit",
    "commit_reveal_enabled": "this subnet takes weights by commit_weights + reveal_weights",
    "commit_reveal_disabled": "this subnet takes weights with set_weights",
    "too_many_commits": "at most 10 unrevealed commits per hotkey",
    "no_commit": "this hotkey has no weight commit to reveal",
    "commit_mismatch": "no commit of this hotkey matches these uids, weights, salt and version_key",
    "reveal_too_early": "the commit cannot be revealed yet",
    "commit_expired": "the matching commit expired",
    "invalid_epoch": "not a postable epoch block",
    "epoch_posting": "an epoch is being posted in chunks: no uid is replaced until it is closed",
    "emission_exceeded": "the posted emission exceeds what accrued",
    "reserve_exhausted": "the emission reserve is empty (fundReserve)",
    "invalid_args": "invalid arguments",
    "transfer_failed": "a native-currency transfer failed",
    "no_blake2": "this chain has no BLAKE2 F precompile (EIP-152)",
}


@functools.cache
def artifact() -> dict[str, Any]:
    """The compiled contract: ``abi``, ``bytecode``, ``deployedBytecode``, compiler and settings."""
    text = resources.files("tnode.plugins.chain_evm").joinpath("contract/TnodeSubnets.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data


def _canonical(t: dict[str, Any]) -> str:
    if t["type"].startswith("tuple"):
        inner = ",".join(_canonical(c) for c in t["components"])
        return f"({inner}){t['type'][5:]}"
    return str(t["type"])


@dataclasses.dataclass(frozen=True)
class Function:
    """One contract function: its selector and argument / result types."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    selector: bytes

    def encode(self, *args: Any) -> bytes:
        """Call data: selector ‖ ABI-encoded arguments."""
        return self.selector + encode(list(self.inputs), list(args))

    def decode(self, data: bytes) -> tuple[Any, ...]:
        return tuple(decode(list(self.outputs), data))


@functools.cache
def functions() -> dict[str, Function]:
    """Every function of the contract by name."""
    out = {}
    for item in artifact()["abi"]:
        if item["type"] != "function":
            continue
        ins = tuple(_canonical(i) for i in item["inputs"])
        outs = tuple(_canonical(o) for o in item["outputs"])
        sig = f"{item['name']}({','.join(ins)})"
        out[item["name"]] = Function(item["name"], ins, outs, keccak(text=sig)[:4])
    return out


@functools.cache
def events() -> dict[str, tuple[bytes, tuple[tuple[str, str, bool], ...]]]:
    """Event name → (topic 0, ((name, type, indexed), ...))."""
    out = {}
    for item in artifact()["abi"]:
        if item["type"] == "event":
            fields = tuple((i["name"], _canonical(i), bool(i["indexed"])) for i in item["inputs"])
            sig = f"{item['name']}({','.join(t for _, t, _ in fields)})"
            out[item["name"]] = (keccak(text=sig), fields)
    return out


def decode_log(name: str, log: dict[str, Any]) -> dict[str, Any]:
    """The non-indexed fields of an event log, plus the indexed ones that are static types."""
    _topic, fields = events()[name]
    data = bytes.fromhex(log["data"][2:])
    plain = [(n, t) for n, t, idx in fields if not idx]
    values = dict(zip([n for n, _ in plain], decode([t for _, t in plain], data), strict=True))
    topics = log["topics"][1:]
    for (n, t, idx) in fields:
        if idx:
            raw = bytes.fromhex(topics.pop(0)[2:])
            values[n] = decode([t], raw)[0]
    return values


_ERROR_SELECTOR = keccak(text="ChainError(string)")[:4]


def refusal(data: str | bytes | None) -> ChainError | None:
    """The typed error of revert data ``ChainError(code)``, or ``None`` when it is something else."""
    if isinstance(data, str):
        try:
            data = bytes.fromhex(data.removeprefix("0x"))
        except ValueError:
            return None
    if not data or data[:4] != _ERROR_SELECTOR:
        return None
    (code,) = decode(["string"], data[4:])
    return ChainError(str(code), REFUSALS.get(str(code), str(code)))


# --------------------------------------------------------------------------- hyperparameters
def hp_to_contract(hp: Hyperparameters) -> list[int]:
    """The contract's 30-integer form of ``hp``."""
    values = hp.to_dict()
    out = []
    for name, kind in HP_LAYOUT:
        v = values[name]
        if kind == "bool":
            out.append(1 if v else 0)
        elif kind == "fixed":
            out.append(int(round(float(v) * FIXED)))
        elif kind == "tokens":
            out.append(int(round(float(v) * FIXED)) * WEI_PER_UNIT)
        else:
            out.append(int(v))
    return out


def hp_from_contract(values: Sequence[int], *, difficulty: int | None = None, burn_wei: int | None = None) -> Hyperparameters:
    """:class:`Hyperparameters` from the contract's array, with the current difficulty and burn filled in."""
    doc: dict[str, Any] = {}
    for (name, kind), v in zip(HP_LAYOUT, values, strict=True):
        if kind == "bool":
            doc[name] = bool(v)
        elif kind == "fixed":
            doc[name] = v / FIXED
        elif kind == "tokens":
            doc[name] = v / WEI_PER_TOKEN
        else:
            doc[name] = int(v)
    if difficulty is not None:
        doc["difficulty"] = int(difficulty)
    if burn_wei is not None:
        doc["burn"] = burn_wei / WEI_PER_TOKEN
    return Hyperparameters.from_mapping(doc, source="chain_evm hyperparameters")


def check_layout() -> None:
    """Every :class:`Hyperparameters` field must have a place in the contract's array."""
    names = {f.name for f in dataclasses.fields(Hyperparameters)}
    laid = {n for n, _ in HP_LAYOUT}
    if names != laid:
        raise ChainError("unsupported_hyperparameters",
                         f"the EVM contract has no place for {sorted(names - laid)} (and lacks {sorted(laid - names)})")
