"""``tnode collusion report``: the suspects this node's detectors recorded."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from tnode.cli_support import ConfigOpt, fail

from .history import read_reports


def register_commands(app: Any) -> None:
    """Add ``tnode collusion report`` to the root application."""
    sub = typer.Typer(help="Collusion detectors: what they found.", no_args_is_help=True)
    sub.command("report")(report)
    app.add_typer(sub, name="collusion")


def history_dir(config: Path) -> Path:
    """``<data_dir>/collusion`` of the node configured in ``config`` (data_dir relative to the file)."""
    from tnode.cli_support import EXIT_CONFIG
    from tnode.config import read_toml
    from tnode.errors import ConfigError

    try:
        doc = read_toml(config)
    except ConfigError as exc:  # names the file (and line); shown without a traceback
        raise fail(str(exc), EXIT_CONFIG) from None
    node = doc.get("node", {})
    data_dir = node.get("data_dir", "./data/node") if isinstance(node, dict) else None
    if not isinstance(data_dir, str):
        raise fail(f"{config}: node.data_dir: expected a string, got {data_dir!r}", EXIT_CONFIG)
    path = Path(data_dir).expanduser()
    return (path if path.is_absolute() else config.parent / path) / "collusion"


def report(
    config: ConfigOpt = Path("node.toml"),
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List suspects with kind, score, evidence and since when, strongest first."""
    directory = history_dir(config)
    try:
        docs = read_reports(directory)
    except ValueError as exc:
        raise fail(str(exc)) from None
    rows = [{"detector": d.get("detector", ""), **s} for d in docs for s in d["suspects"]]
    rows.sort(key=lambda r: (-float(r.get("score", 0.0)), r.get("kind", "")))
    if json_out:
        typer.echo(orjson.dumps({"dir": str(directory), "suspects": rows}, option=orjson.OPT_INDENT_2).decode())
        return
    if not rows:
        typer.echo(f"no suspects recorded under {directory}")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"collusion suspects ({directory})")
    for column in ("detector", "kind", "uids", "score", "action", "since", "seen", "evidence"):
        table.add_column(column)
    for r in rows:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(r.get("first_seen", 0))))
        uids = ",".join(str(u) for u in r.get("uids", [])) or ",".join(m[:8] for m in r.get("members", []))
        table.add_row(str(r["detector"]), str(r.get("kind")), uids, f"{float(r.get('score', 0)):.3f}",
                      str(r.get("action")), since, str(r.get("count")), str(r.get("evidence")))
    Console().print(table)
