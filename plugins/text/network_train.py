"""``tnode train --teachers network``: training on the node's own data while distilling from the
subnet's miners, asked through a ``[teachers.NAME]`` component of the node's config.

The node (dataset, transport, chain, router, teachers) runs on trio; the training loop runs in a
worker thread and calls back into the event loop for each batch's teacher answers, so the node
keeps answering the network while torch computes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
from tnode.contracts.learning import Teacher
from tnode.errors import ConfigError

from .distill import Distiller
from .teacher_cache import AnswerCache
from .teachers import TeacherClient
from .train import Progress, TrainResult, TrainSettings, train


@dataclass(frozen=True)
class NetworkSettings:
    """How the network is asked."""

    teachers: str = ""  # the [teachers.NAME] component; empty: the only one
    k: int = 32
    rps: float = 20.0
    timeout: float = 10.0
    alpha: float = 0.5
    wait_seconds: float = 30.0  # how long to wait for the first teachers to appear
    cache: Path | None = None  # default: <checkpoint>.teachers.sqlite


@dataclass(frozen=True)
class NetworkResult:
    result: TrainResult
    teachers: list[Teacher]
    requests: int
    cache_hits: int
    failures: dict[str, int]


def pick_source(node: Any, name: str, *, file: str = "") -> Any:
    """The node's ``[teachers.NAME]`` component (the only one when ``name`` is empty)."""
    found = node.components_of("teachers")
    if not found:
        raise ConfigError("no [teachers.NAME] table: add one with type = \"router\" (and a [routers.NAME])",
                          file=file, key_path="teachers")
    if name and name not in found:
        raise ConfigError(f"no [teachers.{name}] (there are: {', '.join(found)})", file=file,
                          key_path=f"teachers.{name}")
    return found[name] if name else next(iter(found.values()))


async def wait_for_teachers(source: Any, seconds: float) -> list[Teacher]:
    """The source's teachers, waiting up to ``seconds`` for the first to appear."""
    with anyio.move_on_after(seconds):
        while not (found := source.teachers()):
            await anyio.sleep(0.2)
        return found
    raise ConfigError(f"no teacher known after {seconds:.0f} s: are miners with addresses on the subnet?",
                      key_path=f"teachers.{source.name}")


def saved_teachers(checkpoint: Path) -> list[Teacher] | None:
    """The teacher list a checkpoint's gating was trained over (``None`` without one)."""
    if not checkpoint.exists():
        return None
    from .transformer import load_checkpoint

    _, state = load_checkpoint(checkpoint)
    saved = state.get("gating")
    if not isinstance(saved, dict):
        return None
    return [Teacher(h, int(u)) for h, u in zip(saved["hotkeys"], saved["uids"], strict=True)]


async def distill_with(source: Any, train_tokens: Any, heldout: Any, checkpoint: Path, settings: TrainSettings,
                       net: NetworkSettings, *, resume: bool = True,
                       progress: Callable[[Progress], None] | None = None) -> NetworkResult:
    """Train with distillation from ``source`` (a running TeacherSource); call from the event loop."""
    teachers = saved_teachers(checkpoint) if resume else None
    if not teachers:
        teachers = await wait_for_teachers(source, net.wait_seconds)
    cache = AnswerCache(net.cache or checkpoint.with_name(checkpoint.name + ".teachers.sqlite"))
    try:
        client = TeacherClient(source, teachers, cache=cache, k=net.k, rps=net.rps, timeout=net.timeout)

        def fetch(windows: Any) -> Any:
            return anyio.from_thread.run(client.distributions, windows)

        distiller = Distiller(teachers, fetch, alpha=net.alpha)
        result = await anyio.to_thread.run_sync(
            lambda: train(train_tokens, heldout, checkpoint, settings, resume=resume, progress=progress,
                          distiller=distiller))
        return NetworkResult(result, teachers, client.requests, cache.hits, dict(client.failures))
    finally:
        cache.close()


def train_from_network(config: Path, dataset: str, checkpoint: Path, settings: TrainSettings, net: NetworkSettings,
                       *, resume: bool, progress: Callable[[Progress], None] | None = None) -> NetworkResult:
    """Start ``config``'s node (on an ephemeral port), train with its teachers, stop it."""
    import trio
    from tnode.cli_support import command_node

    async def main() -> NetworkResult:
        kinds = {"dataset", "transport", "chain", "router", "teachers"}
        async with command_node(config, kinds=kinds) as node:
            found = node.components_of("dataset")
            if not found:
                raise ConfigError("no [datasets.NAME] table", file=str(config), key_path="datasets")
            if dataset and dataset not in found:
                raise ConfigError(f"no [datasets.{dataset}] (there are: {', '.join(found)})", file=str(config),
                                  key_path=f"datasets.{dataset}")
            data = found[dataset] if dataset else next(iter(found.values()))
            source = pick_source(node, net.teachers, file=str(config))
            return await distill_with(source, data.tokens("train"), data.tokens("heldout"), checkpoint, settings,
                                      net, resume=resume, progress=progress)

    return trio.run(main)
