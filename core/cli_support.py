"""Plumbing shared by the core's and plugins' commands (``tnode.cli_support``).

- :data:`ConfigOpt`: the ``-c/--config`` option every command that reads a node takes.
- :func:`report`: turns an error into a one-line message on stderr and an exit code
  (:data:`EXIT_CONFIG` for configuration, key and plugin errors, 1 for node errors, 130 for
  Ctrl-C), looking inside exception groups; no traceback for errors tnode raises itself.
- :func:`run_trio`: runs a coroutine on trio with :func:`stderr_logs` and :func:`report`.
- :func:`stderr_logs`: within the block, structured logs go to stderr from a level up, so a
  command's stdout holds only its result.
- :func:`command_node`: a node assembled from node.toml for a command that only reads or submits:
  its transport listens on an ephemeral loopback port, never the node's own listen address, so the
  command works beside ``tnode run`` of the same file.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from .errors import ComponentStartError, ConfigError, KeyError_, PluginError, TnodeError

EXIT_CONFIG = 78  # EX_CONFIG, as Vector and sysexits use it
EPHEMERAL_LISTEN = "/ip4/127.0.0.1/tcp/0"
ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Path to node.toml.")]
err_console = Console(stderr=True)
_T = TypeVar("_T")


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` on stderr; raise the returned exit (``raise fail(...) from None``)."""
    # The message is plain text: ``[teachers.x]`` in it is a key path, not console markup.
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def exit_code(exc: BaseException) -> int | None:
    """The exit code for ``exc``, or ``None`` when it is no error tnode reports (a bug: let it raise)."""
    if isinstance(exc, ConfigError | KeyError_ | PluginError):
        return EXIT_CONFIG
    if isinstance(exc, ComponentStartError) and isinstance(exc.cause, ConfigError):
        return EXIT_CONFIG
    if isinstance(exc, TnodeError):
        return 1
    if isinstance(exc, KeyboardInterrupt):
        return 130
    return None


def report(exc: BaseException) -> typer.Exit | None:
    """Print ``exc`` (the first reportable error inside it) without a traceback; the exit to raise,
    or ``None`` when nothing in it is reportable."""
    for leaf in _leaves(exc):
        code = exit_code(leaf)
        if code is None:
            continue
        if code == 130:
            return typer.Exit(130)
        if isinstance(leaf, ConfigError):
            return fail(f"invalid configuration:\n{leaf}", code)
        return fail(str(leaf), code)
    return None


def reraise_reported(exc: BaseException) -> NoReturn:
    """``raise`` the exit :func:`report` picks for ``exc``, or ``exc`` itself when it picks none."""
    exit_ = report(exc)
    if exit_ is None:
        raise exc
    raise exit_ from None


class _StderrLogger:
    """A structlog logger that writes to whatever ``sys.stderr`` is when it is called."""

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    log = debug = info = warning = error = critical = exception = fatal = msg


@contextlib.contextmanager
def stderr_logs(level: int = logging.WARNING) -> Iterator[None]:
    """Within the block, structured logs go to stderr and only from ``level`` up (stdout is for results)."""
    import structlog

    saved = structlog.get_config()
    libp2p = logging.getLogger("libp2p")  # py-libp2p logs every dial at INFO
    saved_level = libp2p.level
    structlog.configure(logger_factory=lambda *_: _StderrLogger(),
                        wrapper_class=structlog.make_filtering_bound_logger(level))
    libp2p.setLevel(max(level, saved_level))
    try:
        yield
    finally:
        structlog.configure(**saved)
        libp2p.setLevel(saved_level)


def run_trio(fn: Callable[..., Awaitable[_T]], *args: Any, log_level: int = logging.WARNING) -> _T:
    """``trio.run(fn, *args)`` with :func:`stderr_logs`; tnode errors become a message and an exit code."""
    import trio

    try:
        with stderr_logs(log_level):
            return trio.run(fn, *args)
    except (typer.Exit, typer.Abort):
        raise
    except BaseException as exc:
        reraise_reported(exc)


def command_overrides(doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Section overrides for a command beside a running node: an ephemeral loopback listen address
    and no bootstrap of its own gossip (the command dials what it needs)."""
    transport = doc.get("transport")
    if not isinstance(transport, Mapping):
        return {}
    return {"transport": {"listen": [EPHEMERAL_LISTEN]}}


@contextlib.asynccontextmanager
async def command_node(config: Path, *, kinds: Iterable[str], overrides: Mapping[str, Mapping[str, Any]] | None = None,
                       fresh_hotkey: bool = False, passphrase: str | None = None) -> AsyncIterator[Any]:
    """Start ``kinds`` of the node in ``config`` for one command, on an ephemeral listen port.

    :param overrides: more section overrides (merged into the tables, e.g. a chain client mode).
    :param fresh_hotkey: use a throwaway in-memory hotkey as the command's transport identity
        (needed to dial the running node itself: one peer id cannot connect to itself).
    """
    from .assembly import apply_env_overrides
    from .config import read_toml
    from .keys import Keypair
    from .node import Node

    doc = apply_env_overrides(read_toml(config))
    merged = command_overrides(doc)
    for section, table in (overrides or {}).items():
        merged[section] = {**merged.get(section, {}), **table}
    node = Node.from_file(config, kinds=kinds, passphrase=passphrase, overrides=merged,
                          hotkey=Keypair.generate() if fresh_hotkey else None)
    async with node.running():
        yield node


def add_plugin_commands(app: typer.Typer, manager: Any) -> None:
    """Call every plugin's ``tnode_add_cli_commands`` one plugin at a time; a command (or group)
    name already taken is a :class:`PluginError` naming both owners."""
    owners: dict[str, str] = {name: "tnode" for name in _command_names(app)}
    for impl in manager.hook.tnode_add_cli_commands.get_hookimpls():
        before = len(app.registered_commands), len(app.registered_groups)
        impl.function(app=app)
        added = [_name(c) for c in app.registered_commands[before[0]:]]
        added += [g.name or "" for g in app.registered_groups[before[1]:]]
        for name in added:
            if name in owners:
                raise PluginError(f"command {name!r} of plugin {impl.plugin_name!r} collides with the one of "
                                  f"{'the core' if owners[name] == 'tnode' else repr(owners[name])}")
            owners[name] = impl.plugin_name


def _name(command: Any) -> str:
    if command.name:
        return str(command.name)
    return str(command.callback.__name__).replace("_", "-") if command.callback else ""


def _command_names(app: typer.Typer) -> list[str]:
    return [_name(c) for c in app.registered_commands] + [g.name or "" for g in app.registered_groups]
