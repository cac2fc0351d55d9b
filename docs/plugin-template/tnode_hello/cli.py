"""The ``tnode hello`` command."""

from __future__ import annotations

from typing import Annotated, Any

import typer


def register_commands(app: Any) -> None:
    @app.command("hello")
    def hello(name: Annotated[str, typer.Argument(help="Who to greet.")] = "world") -> None:
        """Say hello (an example command added by the tnode-plugin-hello package)."""
        typer.echo(f"hello, {name}!")
