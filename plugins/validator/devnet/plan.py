"""The devnet's layout: one directory per node with its keys and node.toml, plus the genesis.

Nothing here starts a process; :func:`make_plan` only writes files, so the layout can be checked
(``tnode validate -c <run dir>/<node>/node.toml``) and tested on its own. Planning into a run
directory used before keeps the keys and starts everything else afresh (a new chain).
"""

from __future__ import annotations

import shutil
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tnode.keys import Keypair, Keystore

from .adversaries import adversary_doc, extra_nodes, extra_validators, place
from .online import online_doc, online_nodes, place_online

MODEL_CYCLE = ("transformer", "ngram", "uniform", "garbage")
# The default miners per modality, best first. `--models` may name any registered model type.
MODEL_CYCLES = {"text": MODEL_CYCLE, "image": ("unet", "classical", "blur", "image_garbage")}
MINER_BALANCE = 10.0  # tokens: pays the burn registration
VALIDATOR_STAKE = 1000.0


@dataclass(frozen=True)
class DevnetOptions:
    """Everything ``tnode devnet`` can be asked for."""

    run_dir: Path
    miners: int = 4
    validators: int = 2
    block_time: float = 1.0
    tempo: int = 10
    base_port: int = 0  # 0: pick free ports
    checkpoint: str = "builtin"  # a path, "builtin" (shipped with tnode) or "train" (trained first)
    models: tuple[str, ...] = MODEL_CYCLE
    registration: str = "pow"  # "pow", "burn" or "genesis"
    validator_overrides: dict[str, Any] = field(default_factory=dict)
    text_overrides: dict[str, Any] = field(default_factory=dict)
    modality: str = "text"  # "text", "image", or several comma-separated ("text,image"): one subnet each
    emission_shares: tuple[float, ...] = ()  # each modality's share of the emission, in order; () = equal
    adversaries: tuple[str, ...] = ()  # attackers placed beside the honest nodes (devnet/adversaries.py)
    keep_going: bool = False  # a node that exits is noted instead of stopping the devnet
    chain: str = "local"  # "local" (the embedded chain, the authority holds it) or "evm" (anvil, docs/chain-evm.md)
    online_learning: bool = False  # one more miner: a weak transformer that learns while it serves (online.py)
    online_checkpoint: str = ""  # what that miner starts from; "": untrained weights

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities in order; the k-th one is subnet k + 1."""
        return tuple(m.strip() for m in self.modality.split(",") if m.strip())

    def models_for(self, modality: str) -> tuple[str, ...]:
        """The models a modality's miners cycle through: ``models`` for one modality; with several,
        those of ``models`` that are among the modality's defaults (all its defaults when none is)."""
        if len(self.modalities) == 1:
            return self.models
        return tuple(m for m in self.models if m in MODEL_CYCLES[modality]) or MODEL_CYCLES[modality]

    def shares(self) -> tuple[float, ...]:
        """Each subnet's emission share (they sum to 1)."""
        mods = self.modalities
        if not self.emission_shares:
            return tuple(1.0 / len(mods) for _ in mods)
        if len(self.emission_shares) != len(mods) or abs(sum(self.emission_shares) - 1.0) > 1e-9:
            raise ValueError(f"emission shares {self.emission_shares} must give one share per modality "
                             f"({', '.join(mods)}) and sum to 1")
        return self.emission_shares


@dataclass
class NodeSpec:
    """One planned node."""

    name: str
    role: str  # "authority", "validator" or "miner"
    dir: Path
    port: int
    hotkey: Keypair
    coldkey: Keypair
    model: str = ""  # miners: the model kind they serve
    doc: dict[str, Any] = field(default_factory=dict)
    modality: str = "text"  # validators and miners: what they check or serve
    netuid: int = 1  # the subnet of that modality
    adversary: str = ""  # the adversary this node plays (devnet/adversaries.py), "" when honest
    twin_of: str = ""  # an honest twin: the miner whose model it serves too
    online: bool = False  # the miner with online learning (devnet/online.py)

    @property
    def config_path(self) -> Path:
        return self.dir / "node.toml"

    @property
    def listen_addr(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.port}"

    @property
    def p2p_addr(self) -> str:
        return f"{self.listen_addr}/p2p/{self.hotkey.peer_id}"


@dataclass
class DevnetPlan:
    options: DevnetOptions
    authority: NodeSpec
    validators: list[NodeSpec]
    miners: list[NodeSpec]
    client: NodeSpec | None = None  # `tnode query -c client/node.toml`: not started, never registered
    evm: dict[str, Any] = field(default_factory=dict)  # chain = "evm": rpc_url and contract, once deployed

    @property
    def nodes(self) -> list[NodeSpec]:
        return [self.authority, *self.validators, *self.miners]

    @property
    def subnets(self) -> dict[int, str]:
        """netuid → modality of every subnet the devnet runs."""
        return {k + 1: m for k, m in enumerate(self.options.modalities)}

    def part(self, netuid: int) -> DevnetPlan:
        """The plan as seen from one subnet: its validators and miners, its modality and models."""
        import dataclasses

        modality = self.subnets[netuid]
        opts = dataclasses.replace(self.options, modality=modality, models=self.options.models_for(modality),
                                   emission_shares=())
        return DevnetPlan(opts, self.authority, [v for v in self.validators if v.netuid == netuid],
                          [m for m in self.miners if m.netuid == netuid], self.client)


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 right now (held open together so they differ)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def hyperparameters(opts: DevnetOptions) -> dict[str, Any]:
    """Subnet rules for a fast devnet: short epochs, cheap registration, every validator permitted."""
    n = opts.miners + opts.validators + extra_nodes(opts.adversaries) + online_nodes(opts)
    return {
        "tempo": opts.tempo,
        "weights_rate_limit": max(1, opts.tempo // 4),
        "activity_cutoff": 10_000,
        "immunity_period": 10_000,
        "max_allowed_uids": max(n, 4),
        "max_allowed_validators": opts.validators + extra_validators(opts.adversaries),
        "min_allowed_weights": 1,
        "max_weight_limit": 1.0,
        "burn": 0.1,
        "min_burn": 0.01,
        "max_burn": 1.0,
        "max_registrations_per_block": max(1, opts.miners + extra_nodes(opts.adversaries) + online_nodes(opts)),
        "max_registrations_per_interval": max(6, 2 * n),
        "target_registrations_per_interval": max(2, n),
        "difficulty": 10_000,  # a few milliseconds of proof of work
        "min_difficulty": 1_000,
        # Commit-reveal: a copier sees others' weights one reveal late (docs/collusion.md measures it).
        "commit_reveal_weights_enabled": True,
        "commit_reveal_period": max(1, opts.tempo // 2),
        "commit_reveal_window": max(2, opts.tempo),
    }


def make_plan(opts: DevnetOptions) -> DevnetPlan:
    """Create keys and node.toml files under ``opts.run_dir``; returns the plan."""
    if opts.miners < 1 or opts.validators < 1:
        raise ValueError("a devnet needs at least one miner and one validator")
    mods = opts.modalities
    unknown = [m for m in mods if m not in MODEL_CYCLES]
    if not mods or unknown:
        raise ValueError(f"modality {opts.modality!r}: give one or more of {', '.join(MODEL_CYCLES)}, comma-separated")
    opts.shares()  # refuse bad shares before writing anything
    run_dir = opts.run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    if opts.adversaries and mods != ("text",):
        raise ValueError("--adversaries needs a single text modality (the adversary miners are text models)")
    if opts.online_learning and mods != ("text",):
        raise ValueError("--online-learning needs a single text modality (the learning miner is a text model)")
    count = 1 + len(mods) * (opts.validators + opts.miners) + extra_nodes(opts.adversaries) + online_nodes(opts)
    ports = iter(list(range(opts.base_port, opts.base_port + count)) if opts.base_port else free_ports(count))

    def spec(name: str, role: str, model: str = "", modality: str = mods[0], netuid: int = 1) -> NodeSpec:
        node_dir = run_dir / name
        fresh_state(node_dir)
        store = Keystore(node_dir / "data")
        keys = {}
        for key_name in ("hotkey", "coldkey"):
            keys[key_name] = store.load(key_name) if store.path(key_name).exists() else store.new(key_name,
                                                                                                  role=key_name)
        return NodeSpec(name, role, node_dir, next(ports), keys["hotkey"], keys["coldkey"], model,
                        modality=modality, netuid=netuid)

    authority = spec("authority", "authority")
    validators: list[NodeSpec] = []
    miners: list[NodeSpec] = []
    for k, modality in enumerate(mods):
        # One modality keeps the names it always had; several get the modality as a prefix.
        prefix = f"{modality}-" if len(mods) > 1 else ""
        cycle = opts.models_for(modality)
        validators += [spec(f"{prefix}validator{i}", "validator", modality=modality, netuid=k + 1)
                       for i in range(opts.validators)]
        miners += [spec(f"{prefix}miner{i}", "miner", cycle[i % len(cycle)], modality=modality, netuid=k + 1)
                   for i in range(opts.miners)]
    more_miners, more_validators = place(opts.adversaries, miners, validators, spec, opts.models_for(mods[0]))
    miners += more_miners
    validators += more_validators
    miners += place_online(opts, spec)
    plan = DevnetPlan(opts, authority, validators, miners, client_spec(run_dir))
    for node in plan.nodes:
        node.doc = node_doc(plan, node)
        node.config_path.write_text(to_toml(node.doc))
    assert plan.client is not None
    plan.client.doc = client_doc(plan)
    plan.client.config_path.write_text(to_toml(plan.client.doc))
    return plan


def client_spec(run_dir: Path) -> NodeSpec:
    """The query client's directory and keys (kept across runs like every node's)."""
    node_dir = run_dir / "client"
    store = Keystore(node_dir / "data")
    keys = {name: store.load(name) if store.path(name).exists() else store.new(name, role=name)
            for name in ("hotkey", "coldkey")}
    return NodeSpec("client", "client", node_dir, 0, keys["hotkey"], keys["coldkey"])


def client_doc(plan: DevnetPlan) -> dict[str, Any]:
    """``client/node.toml``: a chain client with one ``moe`` router per subnet, for ``tnode query -c``.

    The client holds no uid and no stake: the miners list its hotkey in ``registered_only``'s
    ``allow``, and ``stake_priority`` serves it after every staked sender, i.e. when capacity is free.
    """
    return {
        "node": {"name": "client", "data_dir": "./data"},
        "log": {"level": "warning"},
        "transport": {"type": "libp2p", "listen": ["/ip4/127.0.0.1/tcp/0"], "announce_interval": 0.0,
                      "dht": False},
        "chain": {"type": "local", "mode": "client", "authority": plan.authority.p2p_addr,
                  "request_timeout": 10.0},
        "routers": {modality: {"type": "moe", "modality": modality} for modality in plan.subnets.values()},
    }


def miner_spam(plan: DevnetPlan) -> dict[str, Any]:
    """A miner serves registered senders (and the devnet's query client) only, rate limits each, and
    orders work by the sender's stake."""
    allow = [plan.client.hotkey.public_hex] if plan.client is not None else []
    return {"registered": {"type": "registered_only", "allow": allow}, "limits": {"type": "limits"},
            "rate": {"type": "token_bucket", "rate": 50.0, "burst": 100.0},
            "priority": {"type": "stake_priority"}}


def fresh_state(node_dir: Path) -> None:
    """Forget a previous run in ``node_dir`` (chain, scores, logs) but keep its keys."""
    data = node_dir / "data"
    if data.is_dir():
        for entry in data.iterdir():
            if entry.name == "keys":
                continue
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    for log in node_dir.glob("*.log"):
        log.replace(log.with_suffix(".log.prev"))


def genesis_accounts(plan: DevnetPlan) -> list[dict[str, Any]]:
    accounts: list[dict[str, Any]] = []
    several = len(plan.subnets) > 1  # one subnet keeps the genesis it always had
    for v in plan.validators:
        accounts.append({"coldkey": v.coldkey.public_hex, "hotkey": v.hotkey.public_hex, "balance": 1.0,
                         "stake": VALIDATOR_STAKE, "register": True, **({"netuids": [v.netuid]} if several else {})})
    for m in plan.miners:
        account: dict[str, Any] = {"coldkey": m.coldkey.public_hex, "balance": MINER_BALANCE}
        if plan.options.registration == "genesis":
            account.update(hotkey=m.hotkey.public_hex, register=True, **({"netuids": [m.netuid]} if several else {}))
        accounts.append(account)
    return accounts


def chain_section(plan: DevnetPlan) -> dict[str, Any]:
    """The authority's [chain]: one subnet ruled by [chain.hyperparameters], or one subnet per modality."""
    opts = plan.options
    if opts.chain == "evm":
        return evm_chain(plan, keeper=True)
    doc: dict[str, Any] = {"type": "local", "mode": "authority", "block_time": opts.block_time,
                           "genesis": {"chain_id": f"tnode-devnet-{plan.authority.hotkey.peer_id[-8:]}",
                                       "accounts": genesis_accounts(plan)}}
    if len(plan.subnets) == 1:
        doc["hyperparameters"] = hyperparameters(opts)
    else:
        doc["subnets"] = [{"netuid": netuid, "modality": modality, "emission_share": share,
                           "hyperparameters": hyperparameters(opts)}
                          for (netuid, modality), share in zip(plan.subnets.items(), opts.shares(), strict=True)]
    return doc


def chain_client(plan: DevnetPlan) -> dict[str, Any]:
    """The [chain] of every node but the authority (and of the devnet's observer)."""
    if plan.options.chain == "evm":
        return evm_chain(plan, keeper=False)
    return {"type": "local", "mode": "client", "authority": plan.authority.p2p_addr,
            "poll_interval": min(plan.options.block_time, 1.0)}


# --------------------------------------------------------------------------- EVM chain (anvil)
def evm_chain(plan: DevnetPlan, *, keeper: bool) -> dict[str, Any]:
    """[chain] type = "evm" on the devnet's anvil: the authority is the keeper (anvil's first
    development account deploys the contract and posts epochs), every other node verifies."""
    return {"type": "evm", "rpc_url": plan.evm.get("rpc_url", "http://127.0.0.1:8545"),
            "contract": plan.evm.get("contract", "deploy"), "keeper": keeper, "verify": not keeper,
            "poll_interval": min(plan.options.block_time, 1.0) / 2, "start_timeout": 60.0}


def evm_spec(plan: DevnetPlan) -> dict[str, Any]:
    """What ``tnode evm devchain --spec`` sets up: the subnets, and the genesis accounts by key file
    (an EVM account is derived from each tnode key, so the chain needs the key, not only its public half)."""
    opts = plan.options

    def keyfile(node: NodeSpec, name: str) -> str:
        return str(Keystore(node.dir / "data").path(name))

    accounts: list[dict[str, Any]] = []
    for v in plan.validators:
        accounts.append({"coldkey_file": keyfile(v, "coldkey"), "hotkey_file": keyfile(v, "hotkey"), "balance": 1.0,
                         "stake": VALIDATOR_STAKE, "register": True, "netuids": [v.netuid]})
    for m in plan.miners:
        account: dict[str, Any] = {"coldkey_file": keyfile(m, "coldkey"), "balance": MINER_BALANCE}
        if opts.registration == "genesis":
            account.update(hotkey_file=keyfile(m, "hotkey"), register=True, netuids=[m.netuid])
        accounts.append(account)
    subnets = [{"netuid": netuid, "modality": modality, "emission_share": share, "hyperparameters": hyperparameters(opts)}
               for (netuid, modality), share in zip(plan.subnets.items(), opts.shares(), strict=True)]
    return {"block_time": opts.block_time, "reserve": 100_000.0, "subnets": subnets, "accounts": accounts}


def use_evm_chain(plan: DevnetPlan, rpc_url: str, contract: str) -> None:
    """Point every node.toml of the plan at the deployed contract (rewrites the files)."""
    plan.evm = {"rpc_url": rpc_url, "contract": contract}
    for node in plan.nodes:
        node.doc = node_doc(plan, node)
        node.config_path.write_text(to_toml(node.doc))
    if plan.client is not None and plan.client.config_path.exists():
        doc = tomllib.loads(plan.client.config_path.read_text())
        doc["chain"] = {**chain_client(plan), "request_timeout": 10.0}
        plan.client.doc = doc
        plan.client.config_path.write_text(to_toml(doc))


def node_doc(plan: DevnetPlan, node: NodeSpec) -> dict[str, Any]:
    """The node.toml document of one devnet node."""
    opts = plan.options
    doc: dict[str, Any] = {
        "node": {"name": node.name, "data_dir": "./data", "netuid": node.netuid},
        "log": {"level": "info", "format": "json"},
        "transport": {"type": "libp2p", "listen": [node.listen_addr]},
    }
    if node.role == "authority":
        doc["chain"] = chain_section(plan)
        return adversary_doc(plan, node, doc)
    doc["transport"]["bootstrap"] = [plan.authority.p2p_addr]
    doc["chain"] = chain_client(plan)
    if node.modality == "image":
        doc.update(image_sections(plan, node))
    else:
        doc.update(text_sections(plan, node))
    if node.role == "validator" and node.modality == "image":
        # Restoration tasks against the hidden original; copies of the input and flat images score 0.
        doc["scorers"] = {"psnr": {"type": "psnr"}, "ssim": {"type": "ssim"}}
        doc["validator"] = {"type": "default", "modality": "image", "timeout": 5.0, "scorers": ["psnr", "ssim"],
                            "step_interval": opts.block_time, "tasks_per_step": 2, "ema_alpha": 0.2,
                            **opts.validator_overrides}
    elif node.role == "validator":
        # Copied and non-finite answers score zero whatever their cross-entropy. The uniform miner is
        # the devnet's honest (if useless) baseline, ranked by its cross-entropy, so the checks that
        # would flag it (uniform top-k, the same answer everywhere) are off here; a production
        # validator keeps them on.
        doc["scorers"] = {"ce": {"type": "cross_entropy"},
                          "guard": {"type": "garbage_guard", "inner": "ce", "check_uniform": False,
                                    "check_constant": False}}
        doc["validator"] = {"type": "default", "modality": "text", "timeout": 5.0, "scorers": ["guard"],
                            "step_interval": opts.block_time, "tasks_per_step": 2, "ema_alpha": 0.2,
                            **opts.validator_overrides}
    if node.role == "validator":
        doc["collusion"] = collusion_sections()
    if node.online:
        online_doc(doc, opts.online_checkpoint)
    return adversary_doc(plan, node, doc)


def collusion_sections() -> dict[str, Any]:
    """Every validator runs the miner-side detectors (acting on weights) and the chain observers (reporting)."""
    return {"relay": {"type": "relay"}, "lazy": {"type": "lazy"}, "operator": {"type": "operator"},
            "weight_copy": {"type": "weight_copy"}, "cabal": {"type": "cabal"},
            "self_dealing": {"type": "self_dealing"}}


def text_sections(plan: DevnetPlan, node: NodeSpec) -> dict[str, Any]:
    """The dataset, model and text-modality tables: validators make tasks, miners serve a model."""
    opts = plan.options
    dataset = {"docs": {"type": "python_docs"}}
    if node.role == "validator":
        return {"datasets": dataset, "modalities": {"text": {"type": "text", "dataset": "docs", **opts.text_overrides}}}
    model: dict[str, Any] = {"type": node.model}
    sections: dict[str, Any] = {}
    if node.model == "transformer":
        if opts.checkpoint == "train":
            raise ValueError("a transformer miner needs a trained checkpoint (train it before planning)")
        # One inference thread: a devnet shares a couple of cores between all its processes.
        model.update(checkpoint=str(opts.checkpoint), threads=1)
    elif node.model == "ngram":
        model["dataset"] = "docs"
        sections["datasets"] = dataset
    sections["models"] = {"main": model}
    sections["spam"] = miner_spam(plan)
    sections["modalities"] = {"text": {"type": "text", "model": "main", **opts.text_overrides}}
    return sections


IMAGE_DATASET = {"scenes": {"type": "shapes", "size": 32}}


def image_sections(plan: DevnetPlan, node: NodeSpec) -> dict[str, Any]:
    """The dataset, model and image-modality tables: validators make tasks, miners serve a model."""
    if node.role == "validator":
        return {"datasets": IMAGE_DATASET, "modalities": {"image": {"type": "image", "dataset": "scenes"}}}
    model: dict[str, Any] = {"type": node.model}
    if node.model == "unet":
        # The transformer's --checkpoint means nothing here; the U-Net serves the model shipped with tnode.
        model.update(checkpoint="builtin", threads=1)
    return {"models": {"main": model},
            "spam": miner_spam(plan),
            "modalities": {"image": {"type": "image", "model": "main"}}}


# --------------------------------------------------------------------------- TOML
def to_toml(doc: dict[str, Any]) -> str:
    """Write a node.toml document (tables, arrays of tables, scalars and scalar arrays)."""
    lines: list[str] = []
    _table(lines, [], doc)
    text = "\n".join(lines).lstrip() + "\n"
    tomllib.loads(text)  # never write a file the node cannot read
    return text


def _table(lines: list[str], path: list[str], table: dict[str, Any]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict) and not _is_table_array(v)}
    if path and (scalars or not table):
        lines.append("")
        lines.append(f"[{'.'.join(_key(p) for p in path)}]")
    for key, value in scalars.items():
        lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in table.items():
        if isinstance(value, dict):
            _table(lines, [*path, key], value)
        elif _is_table_array(value):
            for item in value:
                lines.append("")
                lines.append(f"[[{'.'.join(_key(p) for p in [*path, key])}]]")
                for k, v in item.items():
                    if not isinstance(v, dict):
                        lines.append(f"{_key(k)} = {_value(v)}")
                for k, v in item.items():
                    if isinstance(v, dict):  # [a.b.c] after [[a.b]] belongs to that last array element
                        _table(lines, [*path, key, k], v)


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else _value(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")
