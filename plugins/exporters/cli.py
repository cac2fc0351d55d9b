"""``tnode events``: subscribe to a node's event feed and print JSON lines."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import orjson
import typer

DEFAULT_ENDPOINT = "tcp://127.0.0.1:28332"


def register_commands(app: Any) -> None:
    """Add ``tnode events`` to the root application."""
    app.command("events")(events)


def events(
    connect: Annotated[str, typer.Option("--connect", help="Feed endpoint ([exporters.NAME] bind).")] = DEFAULT_ENDPOINT,
    topic: Annotated[list[str] | None, typer.Option("--topic", "-t", help="Event class to receive (repeatable; "
                                                    "all when omitted).")] = None,
    count: Annotated[int, typer.Option(help="Stop after this many events (0: run until Ctrl-C).", min=0)] = 0,
    seconds: Annotated[float, typer.Option(help="Stop after this many seconds (0: no limit).", min=0)] = 0.0,
) -> None:
    """Print the node's event feed as JSON lines on stdout; gaps in the sequence numbers go to stderr."""
    import trio

    try:
        trio.run(_follow, connect, topic or [], count, seconds)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except ValueError as exc:
        typer.echo(f"error: {connect}: {exc}", err=True)
        raise typer.Exit(1) from None


async def _follow(endpoint: str, topics: list[str], count: int, seconds: float) -> None:
    import anyio
    import zmq

    from .subscriber import FeedSubscriber

    try:
        sub = FeedSubscriber(endpoint, topics)
    except zmq.ZMQError as exc:
        raise ValueError(f"cannot connect: {exc}") from None
    out = sys.stdout.buffer
    seen = 0
    with sub, anyio.move_on_after(seconds or float("inf")):
        async for batch in sub.batches():
            for name, body, seq in batch:
                gap = sub.gaps.see(name, seq)
                if gap is not None:
                    sys.stderr.write(orjson.dumps({"gap": {"topic": gap.topic, "expected": gap.expected,
                                                           "got": gap.got, "missed": gap.missed}}).decode() + "\n")
                    sys.stderr.flush()
                out.write(b'{"topic":"' + name.encode() + b'","seq":' + str(seq).encode() + b',"event":' + body
                          + b"}\n")
                seen += 1
                if count and seen >= count:
                    out.flush()
                    return
            out.flush()
