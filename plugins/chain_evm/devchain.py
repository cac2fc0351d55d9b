"""A local EVM chain for a devnet: anvil on a loopback port with the subnet contract deployed and
the genesis accounts funded, registered and staked (``tnode evm devchain``).

The spec (JSON) says what to set up::

    {"block_time": 1.0, "reserve": 100000.0,
     "subnets": [{"netuid": 1, "modality": "text", "emission_share": 1.0, "hyperparameters": {...}}],
     "accounts": [{"coldkey_file": ".../coldkey.key", "hotkey_file": ".../hotkey.key", "balance": 10.0,
                   "stake": 1000.0, "register": true, "netuids": [1]}]}

Key files are read with :func:`tnode.keys.load_keyfile`: an EVM account is derived from each
tnode key (:mod:`.accounts`), so the funds go to accounts whose keys the nodes hold. Setup runs on
anvil's automine (instant); then the chain mines one block every ``block_time`` seconds (whole
seconds, at least one). When ready the command writes ``{"rpc_url", "contract", "chain_id"}`` to
the out file and keeps anvil running until SIGTERM/SIGINT.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from eth_account import Account
from tnode.errors import ChainError, ConfigError
from tnode.hyperparameters import Hyperparameters
from tnode.keys import Keypair, load_keyfile

from .anvil import DEV_KEY, Anvil
from .client import EvmSubnets
from .contract import WEI_PER_TOKEN
from .rpc import Rpc

UNITS_PER_TOKEN = 10**9
_ACCOUNT_KEYS = {"coldkey_file", "hotkey_file", "balance", "stake", "register", "netuids"}


def read_spec(path: Path) -> dict[str, Any]:
    """The spec file, checked: subnets with hyperparameters, accounts with readable key files."""
    try:
        spec = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read the devchain spec {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(spec, dict) or not isinstance(spec.get("subnets"), list) or not spec["subnets"]:
        raise ConfigError(f"{path}: expected an object with a non-empty \"subnets\" list", key_path="subnets")
    for i, acc in enumerate(spec.get("accounts", [])):
        unknown = set(acc) - _ACCOUNT_KEYS
        if unknown or "coldkey_file" not in acc:
            raise ConfigError(f"{path}: accounts[{i}] needs coldkey_file and takes only {sorted(_ACCOUNT_KEYS)} "
                              f"(got {sorted(unknown)})", key_path=f"accounts[{i}]")
        if acc.get("register") and "hotkey_file" not in acc:
            raise ConfigError(f"{path}: accounts[{i}] registers, so it needs hotkey_file", key_path=f"accounts[{i}]")
    return spec


def _key(path: str) -> Keypair:
    return load_keyfile(Path(path), os.environ.get("TNODE_PASSPHRASE"))


def subnet_hyperparameters(entry: dict[str, Any]) -> Hyperparameters:
    """A subnet's rules; its emission share scales ``block_emission`` (each subnet accrues its own)."""
    hp = Hyperparameters.from_mapping(entry.get("hyperparameters", {}), source="devchain spec")
    share = float(entry.get("emission_share", 1.0))
    if share != 1.0:
        hp = Hyperparameters.from_mapping({**hp.to_dict(), "block_emission": hp.block_emission * share},
                                          source="devchain spec")
    return hp


async def set_up(url: str, spec: dict[str, Any], *, log: Any = print) -> dict[str, Any]:
    """Deploy, create the subnets, fund the reserve and the accounts, register and stake; returns the chain info."""
    rpc = Rpc(url)
    try:
        operator = Account.from_key(DEV_KEY)
        address = await EvmSubnets.deploy(rpc, operator)
        client = await EvmSubnets.connect(rpc, address)
        for entry in spec["subnets"]:
            await client.create_subnet(operator, int(entry["netuid"]), str(entry.get("modality", "text")),
                                       subnet_hyperparameters(entry))
        await client.fund_reserve(operator, int(float(spec.get("reserve", 100_000.0)) * WEI_PER_TOKEN))
        for acc in spec.get("accounts", []):
            cold = _key(acc["coldkey_file"])
            stake = int(round(float(acc.get("stake", 0.0)) * UNITS_PER_TOKEN))
            netuids = [int(n) for n in acc.get("netuids", [spec["subnets"][0]["netuid"]])]
            burn = sum([await client.burn_cost(netuid=n) for n in netuids]) if acc.get("register") else 0
            funds = int(round(float(acc.get("balance", 0.0)) * UNITS_PER_TOKEN)) + stake + burn
            if funds:
                await client.fund(operator, cold, funds)
            if acc.get("register"):
                hot = _key(acc["hotkey_file"])
                for n in netuids:
                    uid = await client.burned_register(hot.public_hex, cold, netuid=n)
                    log(f"registered {hot.public_hex[:12]} as uid {uid} in subnet {n}")
                if stake:
                    await client.add_stake(cold, hot.public_hex, stake)
        return {"rpc_url": url, "contract": address, "chain_id": client.chain_id}
    finally:
        await rpc.aclose()


async def serve(spec_path: Path, out: Path, port: int | None) -> None:
    """Start anvil, set it up from the spec, write ``out``, then keep it running until cancelled."""
    import anyio

    spec = read_spec(spec_path)
    block_time = max(1, math.ceil(float(spec.get("block_time", 1.0))))
    anvil = Anvil(port=port or None, balance=10**9)
    anvil.start()
    try:
        info = await set_up(anvil.url, spec)
        rpc = Rpc(anvil.url)
        try:
            await rpc.call("evm_setIntervalMining", block_time)
        except ChainError as exc:
            raise ChainError("anvil_failed", f"anvil refused interval mining: {exc}") from exc
        finally:
            await rpc.aclose()
        info["block_time"] = block_time
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(info))
        tmp.replace(out)
        print(f"evm devchain ready: {json.dumps(info)}", flush=True)
        await anyio.sleep_forever()
    finally:
        anvil.stop()
