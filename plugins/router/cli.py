"""``tnode query text "prompt"`` and ``tnode query image TASK --in a.png --out b.png``: ask the network.

The command starts a client node — ``-c node.toml`` (its transport, chain and ``[routers.NAME]``;
its hotkey signs the queries, so miners admit them by that hotkey's stake), or, with
``--authority MULTIADDR``, a throwaway client of that chain authority with a fresh hotkey — asks
through the router and prints the answer with the miners that gave it.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

query_app = typer.Typer(help="Ask the network: the router picks miners and mixes their answers.",
                        no_args_is_help=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Client node.toml with [transport], "
                                                "[chain] and a [routers.NAME] table.")]
AuthorityOpt = Annotated[str, typer.Option("--authority", help="Without --config: multiaddr of the chain "
                                           "authority (with /p2p/<peer id>); a throwaway client is used.")]
RouterOpt = Annotated[str, typer.Option("--router", help="Which [routers.NAME] (default: the only one).")]
KOpt = Annotated[int, typer.Option("--k", help="Miners asked per query (default: the router's k).", min=0)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of text.")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="Seconds per query (default: the router's).", min=0)]


def register_commands(app: Any) -> None:
    """Add ``tnode query`` to the root application."""
    app.add_typer(query_app, name="query")


def client_doc(authority: str, *, modality: str, k: int, timeout: float) -> dict[str, Any]:
    """A client node.toml document: ephemeral loopback transport, chain client, one ``moe`` router."""
    router: dict[str, Any] = {"type": "moe", "modality": modality}
    if k:
        router["k"] = k
        router["k_min"] = min(2, k)
    if timeout:
        router["timeout"] = timeout
    return {"node": {"name": "query", "create_keys": True}, "log": {"level": "warning"},
            "transport": {"type": "libp2p", "listen": ["/ip4/127.0.0.1/tcp/0"], "announce_interval": 0.0,
                          "dht": False},
            "chain": {"type": "local", "mode": "client", "authority": authority, "request_timeout": 10.0},
            "routers": {"main": router}}


@asynccontextmanager
async def client_router(config: Path | None, authority: str, name: str, *, modality: str, k: int,
                        timeout: float) -> AsyncIterator[Any]:
    """A running router from ``config`` or a throwaway client of ``authority``."""
    from tnode.cli_support import command_node
    from tnode.errors import ConfigError
    from tnode.node import Node

    if config is not None:
        overrides: dict[str, Any] = {}
        async with command_node(config, kinds={"transport", "chain", "router"}, overrides=overrides) as node:
            routers = node.components_of("router")
            if not routers:
                raise ConfigError("no [routers.NAME] table: add one with type = \"moe\"", file=str(config),
                                  key_path="routers")
            if name and name not in routers:
                raise ConfigError(f"no [routers.{name}] (there are: {', '.join(routers)})", file=str(config),
                                  key_path=f"routers.{name}")
            if name:
                router = routers[name]
            else:  # the first router of the modality asked for, else the first one
                router = next((r for r in routers.values() if r.config.modality == modality),
                              next(iter(routers.values())))
            changes: dict[str, Any] = {}
            if k:
                changes.update(k=k, k_min=min(router.config.k_min, k))
            if timeout:
                changes["timeout"] = timeout
            if changes:
                router.config = type(router.config)(**{**router.config.__dict__, **changes})
            yield router
        return
    if not authority:
        raise ConfigError("give -c node.toml or --authority MULTIADDR of the chain authority", key_path="query")
    tmp = Path(tempfile.mkdtemp(prefix="tnode-query-"))
    try:
        node = Node.from_dict(client_doc(authority, modality=modality, k=k, timeout=timeout), data_dir=tmp)
        async with node.running():
            yield node.component("router", "main")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _table(rows: list[dict[str, Any]]) -> str:
    lines = ["  uid  hotkey            latency    weight  status"]
    for r in rows:
        lat = f"{r['latency_ms']:8.1f} ms" if r["latency_ms"] is not None else "        —  "
        lines.append(f"  {r['uid']:>3}  {r['hotkey'][:16]}  {lat}  {r['weight']:6.3f}  {r['status']}")
    return "\n".join(lines)


def _merge(steps: list[Any], board: Any) -> list[dict[str, Any]]:
    """Per miner over every step: answers, mean latency, last status."""
    seen: dict[str, dict[str, Any]] = {}
    for step in steps:
        for row in step.miners(board):
            cur = seen.setdefault(row["hotkey"], {**row, "answers": 0, "_lat": []})
            cur["status"], cur["weight"] = row["status"], row["weight"]
            if row["latency_ms"] is not None:
                cur["answers"] += 1
                cur["_lat"].append(row["latency_ms"])
    out = []
    for row in seen.values():
        lats = row.pop("_lat")
        row["latency_ms"] = round(sum(lats) / len(lats), 2) if lats else None
        out.append(row)
    return sorted(out, key=lambda r: r["uid"])


@query_app.command("text")
def text(
    prompt: Annotated[str, typer.Argument(help="The prompt; the answer continues it.")],
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Tokens (bytes) to generate.", min=1, max=4096)] = 32,
    temperature: Annotated[float, typer.Option("--temperature", help="0: greedy.", min=0.0, max=10.0)] = 0.0,
    k: KOpt = 0,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    authority: AuthorityOpt = "",
    router: RouterOpt = "",
    timeout: TimeoutOpt = 0.0,
) -> None:
    """Continue PROMPT with tokens drawn one at a time from the mixture of the miners asked."""
    from tnode.cli_support import fail, run_trio

    data = prompt.encode("utf-8")
    if not data:
        raise fail("the prompt is empty", 2)

    async def go() -> dict[str, Any]:
        import numpy as np

        async with client_router(config, authority, router, modality="text", k=k, timeout=timeout) as r:
            start = time.monotonic()
            ids, steps = await r.complete(np.frombuffer(data, dtype=np.uint8), max_tokens, temperature=temperature)
            elapsed = time.monotonic() - start
            return {"prompt": prompt, "text": bytes(ids).decode("utf-8", errors="replace"), "tokens": len(ids),
                    "seconds": round(elapsed, 3), "miners": _merge(steps, r.board)}

    result = run_trio(go)
    if as_json:
        sys.stdout.write(orjson.dumps(result).decode() + "\n")
        return
    typer.echo(prompt + result["text"])
    typer.echo(f"\n{result['tokens']} tokens in {result['seconds']:.2f} s from {len(result['miners'])} miner(s):",
               err=True)
    typer.echo(_table(result["miners"]), err=True)


@query_app.command("image")
def image(
    task: Annotated[str, typer.Argument(help="inpaint, denoise or upscale.")],
    in_path: Annotated[Path, typer.Option("--in", help="The damaged image (PNG).", exists=True, dir_okay=False)],
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the combined answer (PNG).")],
    mask: Annotated[Path | None, typer.Option("--mask", help="inpaint: PNG, non-zero where to fill in.",
                                              exists=True, dir_okay=False)] = None,
    sigma: Annotated[float, typer.Option("--sigma", help="denoise: noise level (0–255 scale).", min=0.0)] = 25.0,
    factor: Annotated[int, typer.Option("--factor", help="upscale: 2 or 4.")] = 2,
    combine: Annotated[str, typer.Option("--combine", help="weighted or median.")] = "weighted",
    k: KOpt = 0,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    authority: AuthorityOpt = "",
    router: RouterOpt = "",
    timeout: TimeoutOpt = 0.0,
) -> None:
    """Restore an image with several miners and combine their answers per pixel."""
    from tnode.cli_support import fail, run_trio

    from .image_io import mask_body, read_png, write_png

    if task not in ("inpaint", "denoise", "upscale"):
        raise fail(f"unknown image task {task!r} (expected inpaint, denoise or upscale)", 2)
    if combine not in ("weighted", "median"):
        raise fail(f"--combine {combine!r}: expected weighted or median", 2)
    picture = read_png(in_path)
    if task == "inpaint":
        if mask is None:
            raise fail("inpaint needs --mask m.png (non-zero where to fill in)", 2)
        try:
            body: dict[str, Any] = {"mask": mask_body(read_png(mask), picture.shape[:2])}
        except ValueError as exc:
            raise fail(f"{mask}: {exc}", 2) from None
    elif task == "denoise":
        body = {"sigma": sigma}
    else:
        if factor not in (2, 4):
            raise fail(f"--factor {factor}: expected 2 or 4", 2)
        body = {"factor": factor}

    async def go() -> dict[str, Any]:
        async with client_router(config, authority, router, modality="image", k=k, timeout=timeout) as r:
            start = time.monotonic()
            mixed = await r.image(task, picture, body, how=combine)
            write_png(out_path, mixed.value)
            return {"task": task, "out": str(out_path), "shape": list(mixed.value.shape),
                    "seconds": round(time.monotonic() - start, 3), "miners": mixed.miners(r.board)}

    result = run_trio(go)
    if as_json:
        sys.stdout.write(orjson.dumps(result).decode() + "\n")
        return
    typer.echo(f"wrote {result['out']} {tuple(result['shape'])} in {result['seconds']:.2f} s")
    typer.echo(_table(result["miners"]))
