"""A small network in one process, for the router's tests and ``bench/router.py``.

One chain authority (``[chain] type = "local"``) and text miners of known, different quality: byte
n-gram models fit on disjoint shards of real text (the installed Python's standard-library
sources) of growing size, so each miner knows a different part of the language and the best one
knows most. Every node is a real node with a real libp2p transport on 127.0.0.1; the held-out text
comes from files no miner saw. The client (the router's node) holds a uid and stake.
"""

from __future__ import annotations

import contextlib
import sysconfig
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from tnode.keys import Keypair
from tnode.node import Node


def transport() -> dict[str, Any]:
    """A loopback libp2p transport on an ephemeral port."""
    return {"type": "libp2p", "listen": ["/ip4/127.0.0.1/tcp/0"], "announce_interval": 0.0, "dht": False}


def stdlib_files() -> list[Path]:
    """The standard library's top-level ``.py`` files, in a fixed order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.glob("*.py") if p.stat().st_size > 2000)


def write_shards(root: Path, sizes: Sequence[int], heldout_bytes: int) -> tuple[list[Path], bytes]:
    """Disjoint shards of about ``sizes`` bytes of stdlib source (one directory each) and held-out text."""
    files = stdlib_files()
    texts = [f.read_bytes() for f in files]
    # Held-out text comes from every 7th file: spread over the library, never in a shard.
    heldout = b"".join(t for i, t in enumerate(texts) if i % 7 == 3)[:heldout_bytes]
    rest = [t for i, t in enumerate(texts) if i % 7 != 3]
    dirs, cursor = [], 0
    for n, size in enumerate(sizes):
        d = root / f"shard{n}"
        d.mkdir(parents=True, exist_ok=True)
        got = 0
        while got < size and cursor < len(rest):
            (d / f"f{cursor:04d}.txt").write_bytes(rest[cursor])
            got += len(rest[cursor])
            cursor += 1
        dirs.append(d)
    return dirs, heldout


@dataclass
class LocalNet:
    """The running network: the client node (with its router), the miners' nodes and their cancel scopes."""

    client: Node
    miners: list[Node]
    scopes: list[anyio.CancelScope]
    heldout: bytes
    labels: dict[str, str] = field(default_factory=dict)  # miner hotkey → label

    def router(self, name: str = "main") -> Any:
        return self.client.component("router", name)

    def kill(self, index: int) -> None:
        """Stop miner ``index`` (its node shuts down; its uid and addresses stay on the chain)."""
        self.scopes[index].cancel()


@contextlib.asynccontextmanager
async def local_net(tmp: Path, sizes: Sequence[int], *, order: int = 4, router: dict[str, Any] | None = None,
                    heldout_bytes: int = 60_000, plugins: Any = None, log_level: str = "warning",
                    more_routers: dict[str, dict[str, Any]] | None = None) -> AsyncIterator[LocalNet]:
    """Start the authority + client (one node) and one n-gram miner per shard size; yields a :class:`LocalNet`.
    The client's router is ``main``; ``more_routers`` (name → options) adds others over the same miners."""
    dirs, heldout = write_shards(tmp / "corpus", sizes, heldout_bytes)
    chot, ccold = Keypair.generate(), Keypair.generate()
    keys = [Keypair.generate() for _ in sizes]
    accounts = [{"coldkey": ccold.public_hex, "hotkey": chot.public_hex, "stake": 100.0, "register": True}]
    accounts += [{"coldkey": Keypair.generate().public_hex, "hotkey": k.public_hex, "register": True} for k in keys]
    log = {"level": log_level}
    client = Node.from_dict({
        "log": log,
        "transport": transport(),
        "chain": {"type": "local", "block_time": 0.2, "genesis": {"accounts": accounts},
                  "hyperparameters": {"max_registrations_per_block": len(sizes) + 1}},
        "routers": {"main": {"type": "moe", "modality": "text", "refresh_interval": 1.0, **(router or {})},
                    **{name: {"type": "moe", "modality": "text", "refresh_interval": 1.0, **opts}
                       for name, opts in (more_routers or {}).items()}},
    }, data_dir=tmp / "client", hotkey=chot, coldkey=ccold, plugins=plugins)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(client.running())
        authority = client.transport.listen_addrs()[0]
        miners: list[Node] = []
        scopes: list[anyio.CancelScope] = []
        labels: dict[str, str] = {}
        tg = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(tg.cancel_scope.cancel)
        for i, (key, shard) in enumerate(zip(keys, dirs, strict=True)):
            miner = Node.from_dict({
                "log": log,
                "transport": transport(),
                "chain": {"type": "local", "mode": "client", "authority": authority, "request_timeout": 5.0},
                "datasets": {"shard": {"type": "text_files", "path": str(shard), "heldout_fraction": 0.01}},
                "models": {"main": {"type": "ngram", "dataset": "shard", "order": order}},
                "modalities": {"text": {"type": "text", "model": "main", "dataset": "shard"}},
            }, data_dir=tmp / f"miner{i}", hotkey=key, plugins=plugins)
            scope = anyio.CancelScope()
            ready = anyio.Event()

            async def serve(node: Node = miner, scope: anyio.CancelScope = scope, ready: anyio.Event = ready) -> None:
                with scope:
                    async with node.running():
                        await client.chain.publish_addrs(node.hotkey, node.transport.listen_addrs(), node.peer_id)
                        ready.set()
                        await anyio.sleep_forever()

            tg.start_soon(serve)
            with anyio.fail_after(60):
                await ready.wait()
            miners.append(miner)
            scopes.append(scope)
            labels[key.public_hex] = f"miner{i} ({sizes[i] // 1000} kB)"
        for r in client.components_of("router").values():
            await r.refresh()
        yield LocalNet(client, miners, scopes, heldout, labels)


def heldout_windows(text: bytes, count: int, length: int, seed: int) -> np.ndarray:
    """``count`` random windows of ``length`` bytes of held-out text, as token ids (count, length)."""
    ids = np.frombuffer(text, dtype=np.uint8).astype(np.int64)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(ids) - length, size=count)
    return np.stack([ids[s : s + length] for s in starts])
