"""A stand-alone chain authority driven through stdin/stdout, for crash tests and scripting.

``python -m tnode.plugins.chain_local.server NODE_JSON`` starts a node whose only component is the
``[chain]`` of the node document in ``NODE_JSON`` (a node.toml-shaped JSON object; ``node.data_dir``
is honoured), prints ``{"ready": <genesis hash>, "head": n}``, then reads one signed transaction
(wire form, JSON) per stdin line and submits them concurrently. For each it prints
``{"ack": <tx hash>, "result": ...}`` once the transaction is durable, or ``{"refused": <tx hash>,
"code": ..., "message": ...}``. EOF on stdin stops the node.
"""

from __future__ import annotations

import sys
from typing import Any

import anyio
import orjson
from tnode.errors import ChainError
from tnode.node import Node

from .tx import Transaction


def _emit(doc: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(doc) + b"\n")
    sys.stdout.buffer.flush()


async def _submit(chain: Any, line: bytes) -> None:
    try:
        tx = Transaction.from_wire(orjson.loads(line))
    except (orjson.JSONDecodeError, ChainError) as exc:
        _emit({"refused": None, "code": getattr(exc, "code", "malformed_tx"), "message": str(exc)})
        return
    try:
        result = await chain.submit(tx)
    except ChainError as exc:
        _emit({"refused": tx.hash.hex(), "code": exc.code, "message": exc.message})
        return
    _emit({"ack": tx.hash.hex(), "result": result})


async def serve(doc: dict[str, Any]) -> None:
    node = Node.from_dict(doc, kinds={"chain"})
    async with node.running():
        chain = node.chain
        _emit({"ready": chain.genesis_hash, "head": chain.head().number})
        stdin = anyio.wrap_file(sys.stdin.buffer)
        async with anyio.create_task_group() as tg:
            while True:
                line = await stdin.readline()
                if not line:
                    break
                if line.strip():
                    tg.start_soon(_submit, chain, line)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tnode.plugins.chain_local.server NODE_JSON", file=sys.stderr)
        return 2
    with open(args[0], "rb") as fh:
        doc = orjson.loads(fh.read())
    import structlog
    import trio

    # stdout carries the protocol: logs go to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    trio.run(serve, doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
