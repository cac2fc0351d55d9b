"""A validator over real libp2p and the real local chain, with miners running the echo modality:
one answers, one is too slow, one dies mid-run. Nodes run in this process on 127.0.0.1."""

from __future__ import annotations

import contextlib
from typing import Any

import anyio
import pytest
from tnode.keys import Keypair
from tnode.node import Node
from validator_fakes import plugins_with_fakes

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def _available() -> bool:
    try:
        registry = plugins_with_fakes("chain_local", "libp2p", "echo").registry
        return "libp2p" in registry.types("transport") and "echo" in registry.types("modality")
    except Exception:
        return False


def transport() -> dict[str, Any]:
    return {"type": "libp2p", "listen": ["/ip4/127.0.0.1/tcp/0"], "announce_interval": 0.0, "dht": False}


@pytest.mark.skipif(not _available(), reason="libp2p, chain_local or echo plugin not available")
async def test_validator_survives_slow_and_dying_miners(tmp_path) -> None:
    plugins = plugins_with_fakes("chain_local", "libp2p", "echo")
    vhot, vcold = Keypair.generate(), Keypair.generate()
    miners = [Keypair.generate() for _ in range(3)]
    accounts = [{"coldkey": vcold.public_hex, "hotkey": vhot.public_hex, "stake": 100.0}]
    accounts += [{"coldkey": Keypair.generate().public_hex, "hotkey": m.public_hex, "register": True} for m in miners]
    validator = Node.from_dict({
        "transport": transport(),
        "chain": {"type": "local", "block_time": 0.1, "genesis": {"accounts": accounts},
                  "hyperparameters": {"tempo": 8, "weights_rate_limit": 2, "max_allowed_validators": 1}},
        "modalities": {"echo": {"type": "echo_tasks"}},
        "scorers": {"ce": {"type": "cross_entropy"}},
        "validator": {"type": "default", "modality": "echo", "step_interval": 0.2, "timeout": 0.5,
                      "ema_alpha": 0.5, "seed": 1},
    }, data_dir=tmp_path / "v", hotkey=vhot, coldkey=vcold, plugins=plugins)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(validator.running())
        authority = validator.transport.listen_addrs()[0]
        scopes = []
        for i, (key, delay) in enumerate(zip(miners, [0, 2000, 0], strict=True)):
            miner = Node.from_dict({
                "transport": transport(),
                "chain": {"type": "local", "mode": "client", "authority": authority, "request_timeout": 5.0},
                "modalities": {"echo": {"type": "echo", "delay_ms": delay}},
            }, data_dir=tmp_path / f"m{i}", hotkey=key, plugins=plugins)
            scope = anyio.CancelScope()
            scopes.append(scope)
            started = anyio.Event()

            async def serve(node: Node = miner, scope: anyio.CancelScope = scope, ready: anyio.Event = started) -> None:
                with scope:
                    async with node.running():
                        await validator.chain.publish_addrs(node.hotkey, node.transport.listen_addrs(),
                                                            node.peer_id)
                        ready.set()
                        await anyio.sleep_forever()

            tg = await stack.enter_async_context(anyio.create_task_group())
            tg.start_soon(serve)
            await started.wait()
        v = validator.component("validator")
        with anyio.fail_after(60):
            while v.state.records.get(3) is None or v.state.records[3].count < 3:
                await anyio.sleep(0.1)
            scopes[2].cancel()  # miner 3 dies
            count = v.steps
            while v.steps < count + 4:
                await anyio.sleep(0.1)
        report = v.last_report
        scores = v.state.scores()
        for scope in scopes:
            scope.cancel()
    assert report.scores[1] > 0.9 and not report.errors.get(1)
    assert report.errors[2] == "timeout" and report.scores[2] == 0.0
    assert report.errors[3] in {"unreachable", "timeout"} and report.scores[3] == 0.0
    assert scores[1] > 0.9 and scores[2] == 0.0 and scores[3] < 0.2
