"""The ``tnode`` command line: run, validate, init, plugins, config, keys (+ plugin commands)."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from . import __version__
from .cli_support import EXIT_CONFIG, ConfigOpt, add_plugin_commands, fail, reraise_reported
from .errors import ConfigError, KeyError_, PluginError

__all__ = ["EXIT_CONFIG", "app", "build_app", "main"]
app = typer.Typer(add_completion=False, no_args_is_help=True, help="tnode: a node of a decentralized ML network.",
                  pretty_exceptions_enable=False)
keys_app = typer.Typer(no_args_is_help=True, help="Create and inspect Ed25519 key pairs.")
config_app = typer.Typer(no_args_is_help=True, help="Configuration tools.")
app.add_typer(keys_app, name="keys")
app.add_typer(config_app, name="config")
console = Console()
err_console = Console(stderr=True)


# --------------------------------------------------------------------------- run / validate
@app.command()
def run(
    config: ConfigOpt = Path("node.toml"),
    log_format: Annotated[str | None, typer.Option(help="auto, console or json (overrides [log] format).")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning or error.")] = None,
) -> None:
    """Validate node.toml, assemble the node and run it until SIGINT/SIGTERM."""
    import trio

    from .logs import configure_logging
    from .node import Node

    # Loggers made while the node is assembled must already go through the configured handler.
    early_format: Any = log_format if log_format in ("console", "json") else "auto"
    configure_logging(log_level or "info", early_format)
    try:
        node = Node.from_file(config)
    except ConfigError as exc:
        raise fail(f"invalid configuration:\n{exc}", EXIT_CONFIG) from None
    except (KeyError_, PluginError) as exc:
        raise fail(str(exc), EXIT_CONFIG) from None
    fmt: Any = log_format or node.config.log.format
    if fmt not in ("auto", "console", "json"):
        raise fail(f"--log-format must be auto, console or json, not {fmt!r}", 2)
    configure_logging(log_level or node.config.log.level, fmt, peer_id=node.peer_id)
    try:
        trio.run(_serve, node)
    except BaseException as exc:  # ComponentStartError and the like: one line, no traceback
        reraise_reported(exc)


async def _serve(node: Any) -> None:
    import anyio

    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with node.running():
            node.log.info("node running", components=[c.key_path for c in node.component_configs()],
                          addrs=node.transport.listen_addrs() if node.transport else [])
            async for signum in signals:
                name = signal.Signals(signum).name
                node.log.info("stopping", signal=name, drain_seconds=node.config.node.drain_seconds)
                # If cleanup hangs past the drain deadline, leave anyway.
                timer = threading.Timer(node.config.node.drain_seconds + 1.0, _force_exit, args=(name,))
                timer.daemon = True
                timer.start()
                break
    node.log.info("stopped")


def _force_exit(signame: str) -> None:
    sys.stderr.write(f"tnode: drain deadline passed after {signame}; exiting\n")
    sys.stderr.flush()
    os._exit(1)


@app.command()
def validate(config: ConfigOpt = Path("node.toml")) -> None:
    """Check node.toml: schemas, types, references, topology, and every component's own checks
    (each component is built, nothing is started). Exit 78 when invalid."""
    from .node import Node

    try:
        node = Node.for_checking(config)
    except ConfigError as exc:
        raise fail(f"invalid configuration:\n{exc}", EXIT_CONFIG) from None
    except (KeyError_, PluginError) as exc:
        raise fail(str(exc), EXIT_CONFIG) from None
    cfg = node.config
    console.print(f"[green]ok[/] {config}: {len(cfg.components)} components "
                  f"({', '.join(c.key_path for c in cfg.ordered())})")


# --------------------------------------------------------------------------- init
@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Directory to create node.toml and data/ in.")] = Path("."),
    force: Annotated[bool, typer.Option(help="Overwrite an existing node.toml.")] = False,
    passphrase_env: Annotated[bool, typer.Option("--encrypt", help="Encrypt the coldkey with $TNODE_PASSPHRASE.")] = False,
) -> None:
    """Write a commented node.toml and new keys (hotkey, coldkey) into DIRECTORY."""
    from importlib import resources

    from .keys import Keystore

    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "node.toml"
    if target.exists() and not force:
        raise fail(f"{target} exists (use --force to overwrite)")
    target.write_text(resources.files("tnode").joinpath("node.template.toml").read_text())
    store = Keystore(directory / "data" / "node")
    made = []
    for name, role in (("hotkey", "hotkey"), ("coldkey", "coldkey")):
        if store.path(name).exists():
            continue
        pw = os.environ.get("TNODE_PASSPHRASE") if (passphrase_env and role == "coldkey") else None
        if passphrase_env and role == "coldkey" and not pw:
            raise fail("--encrypt needs $TNODE_PASSPHRASE")
        made.append((name, store.new(name, role=role, passphrase=pw)))
    console.print(f"wrote {target}")
    for name, key in made:
        console.print(f"new {name}: {key.peer_id}  ({store.path(name)})")


# --------------------------------------------------------------------------- plugins / config
@app.command("plugins")
def plugins_cmd() -> None:
    """List loaded plugins: name, version, component kinds, module, built-in or external."""
    from .pluginmanager import load_plugins

    try:
        manager = load_plugins()
    except PluginError as exc:
        raise fail(str(exc)) from None
    table = Table(title="tnode plugins")
    for col in ("name", "version", "kinds", "module", "source"):
        table.add_column(col)
    for info in sorted(manager.infos.values(), key=lambda i: (not i.builtin, i.name)):
        table.add_row(info.name, info.version, ", ".join(info.kinds) or "-", info.module,
                      "built-in" if info.builtin else f"external ({info.distribution})")
    console.print(table)


@config_app.command("reference")
def config_reference(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")] = None,
) -> None:
    """Print the configuration reference generated from every registered schema."""
    from .pluginmanager import load_plugins
    from .reference import render_reference

    text = render_reference(load_plugins(autoload_external=False).registry)
    if output:
        output.write_text(text)
        console.print(f"wrote {output}")
    else:
        sys.stdout.write(text)


# --------------------------------------------------------------------------- keys
DataDirOpt = Annotated[Path, typer.Option("--data-dir", "-d", help="Node data directory (keys live in <dir>/keys).")]


def _passphrase(ask: bool, confirm: bool) -> str | None:
    env = os.environ.get("TNODE_PASSPHRASE")
    if env:
        return env
    if ask:
        return typer.prompt("passphrase", hide_input=True, confirmation_prompt=confirm)
    return None


@keys_app.command("new")
def keys_new(
    name: Annotated[str, typer.Argument(help="Key name, e.g. hotkey or coldkey.")],
    data_dir: DataDirOpt = Path("./data/node"),
    role: Annotated[str, typer.Option(help="hotkey or coldkey.")] = "",
    encrypt: Annotated[bool, typer.Option(help="Encrypt with a passphrase (prompt or $TNODE_PASSPHRASE).")] = False,
    force: Annotated[bool, typer.Option(help="Overwrite an existing key file.")] = False,
) -> None:
    """Create an Ed25519 key pair (file mode 0600)."""
    from .keys import Keystore

    role = role or ("coldkey" if "cold" in name else "hotkey")
    if role not in ("hotkey", "coldkey"):
        raise fail("--role must be hotkey or coldkey", 2)
    store = Keystore(data_dir)
    try:
        key = store.new(name, role=role, passphrase=_passphrase(encrypt, True) if encrypt else None, overwrite=force)
    except OSError as exc:  # exists, a directory in the way, or the keys folder is not writable
        raise fail(str(exc)) from None
    console.print(f"{role} {name}: public {key.public_hex}\npeer id {key.peer_id}\nfile {store.path(name)}")


@keys_app.command("show")
def keys_show(
    name: Annotated[str, typer.Argument()],
    data_dir: DataDirOpt = Path("./data/node"),
    unlock: Annotated[bool, typer.Option(help="Decrypt the key to check the passphrase.")] = False,
) -> None:
    """Show a key's public key and libp2p peer id (never the secret)."""
    from .keys import Keystore, read_keyfile_meta

    store = Keystore(data_dir)
    try:
        meta = read_keyfile_meta(store.path(name))
        if unlock or "encryption" not in meta:
            store.load(name, _passphrase("encryption" in meta, False))
    except KeyError_ as exc:
        raise fail(str(exc)) from None
    console.print(f"name {name}\nrole {meta.get('role')}\npublic {meta['public']}\npeer id {meta.get('peer_id')}\n"
                  f"encrypted {'yes' if 'encryption' in meta else 'no'}")


@keys_app.command("list")
def keys_list(data_dir: DataDirOpt = Path("./data/node")) -> None:
    """List key files in the data directory."""
    from .keys import Keystore, read_keyfile_meta

    store = Keystore(data_dir)
    table = Table(title=str(store.dir))
    for col in ("name", "role", "peer id", "encrypted"):
        table.add_column(col)
    for name in store.names():
        try:
            meta = read_keyfile_meta(store.path(name))
            table.add_row(name, str(meta.get("role")), str(meta.get("peer_id")), "yes" if "encryption" in meta else "no")
        except KeyError_ as exc:
            table.add_row(name, "?", f"[red]{exc}[/]", "?")
    console.print(table)


@app.command()
def version() -> None:
    """Print the tnode version."""
    console.print(__version__)


# The core's own commands: build_app starts from these, so building the app twice in one process
# (tests, embedding) adds the plugins' commands once, not a second time that would collide.
_CORE_COMMANDS = (list(app.registered_commands), list(app.registered_groups))


def build_app() -> typer.Typer:
    """The root app with plugin commands added (plugins load once here)."""
    from .pluginmanager import load_plugins

    app.registered_commands[:] = _CORE_COMMANDS[0]
    app.registered_groups[:] = _CORE_COMMANDS[1]

    try:
        manager = load_plugins()
    except PluginError as exc:
        err_console.print(f"[yellow]warning:[/] plugins not loaded: {exc}")
        return app
    try:
        add_plugin_commands(app, manager)
    except PluginError as exc:  # two commands of one name: neither is the one the operator means
        raise SystemExit(fail(str(exc), EXIT_CONFIG).exit_code) from None
    return app


def main() -> None:
    build_app()(prog_name="tnode")
