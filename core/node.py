"""A node: configuration + keys + event bus + the components node.toml names.

Use :meth:`Node.from_file` / :meth:`Node.from_dict` to assemble one and ``async with
node.running():`` to start it; components start in kind order (see
the registry's kind order: the core's kinds, then plugin-declared ones where they asked), each waiting for the previous one to be ready.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import Any

import anyio
import structlog

from .assembly import ComponentConfig, NodeConfig, apply_env_overrides, load_plugins_for, parse_config
from .bus import EventBus
from .config import read_toml
from .errors import ComponentStartError, ConfigError, KeyFileNotFound, MissingComponentError, TnodeError
from .events import NodeStarted, NodeStopping
from .keys import Keypair, Keystore, read_keyfile_meta
from .pluginmanager import PluginManager


class ComponentFailed(TnodeError):
    """A running component raised; the node stops."""

    def __init__(self, component: str, cause: BaseException) -> None:
        self.component = component
        self.cause = cause
        super().__init__(f"component {component!r} failed: {type(cause).__name__}: {cause}")


class Node:
    """A running (or ready-to-run) tnode node."""

    def __init__(self, config: NodeConfig, plugins: PluginManager, *, hotkey: Keypair,
                 coldkey_public: str = "", kinds: Iterable[str] | None = None) -> None:
        self.config = config
        self.plugins = plugins
        self.hotkey = hotkey
        self.coldkey_public = coldkey_public
        self.peer_id = hotkey.peer_id
        self.name = config.node.name
        self.netuid = config.node.netuid
        self.data_dir = config.data_dir
        self.bus = EventBus(drain_seconds=config.node.drain_seconds)
        self.ready = anyio.Event()
        # A lazy proxy: it follows logging configured after the node was built (as `tnode run` does).
        self.log = structlog.get_logger("tnode", peer=self.peer_id[-8:], node=self.name)
        wanted = set(kinds) if kinds is not None else None
        self._configs = [c for c in config.ordered() if wanted is None or c.kind in wanted]
        self._components: dict[tuple[str, str], Any] = {}
        self._started: dict[tuple[str, str], Any] = {}
        errors: list[ConfigError] = []
        for comp in self._configs:
            try:
                self._components[(comp.kind, comp.name)] = comp.spec.factory(self, comp.name, comp.config)
            except ConfigError as exc:
                errors.append(self._in_file(exc, comp.key_path))
        if errors:
            from .errors import ConfigErrors

            raise ConfigErrors(errors)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], *, data_dir: Path | str | None = None, hotkey: Keypair | None = None,
                  coldkey: Keypair | None = None, kinds: Iterable[str] | None = None, file: str | None = None,
                  plugins: PluginManager | None = None, create_keys: bool = True) -> Node:
        """Assemble from a node.toml-shaped dict (tests, embedding).

        ``data_dir`` overrides ``[node] data_dir``; missing key files are created when
        ``create_keys`` (unencrypted) unless ``hotkey`` is given.
        """
        doc = dict(doc)
        if data_dir is not None:
            doc["node"] = {**doc.get("node", {}), "data_dir": str(data_dir)}
        plugins = plugins or load_plugins_for(doc, file)
        config = parse_config(doc, plugins.registry, file=file,
                              base_dir=Path(file).resolve().parent if file else Path.cwd())
        keystore = Keystore(config.data_dir)
        if hotkey is None:
            path = keystore.path(config.node.hotkey)
            if not path.exists() and create_keys:
                keystore.new(config.node.hotkey, role="hotkey")
            hotkey = keystore.load(config.node.hotkey)
        coldkey_public = coldkey.public_hex if coldkey else ""
        if not coldkey_public:
            path = keystore.path(config.node.coldkey)
            if not path.exists() and create_keys and coldkey is None:
                keystore.new(config.node.coldkey, role="coldkey")
            if path.exists():
                coldkey_public = str(read_keyfile_meta(path)["public"])
        node = cls(config, plugins, hotkey=hotkey, coldkey_public=coldkey_public, kinds=kinds)
        node._coldkey = coldkey
        return node

    @classmethod
    def from_file(cls, path: str | Path, *, kinds: Iterable[str] | None = None, passphrase: str | None = None,
                  create_keys: bool = False, overrides: Mapping[str, Mapping[str, Any]] | None = None,
                  hotkey: Keypair | None = None) -> Node:
        """Assemble from node.toml; key files must exist (``tnode init`` / ``tnode keys new``).

        ``overrides`` replaces keys of sections after environment overrides (``{"transport":
        {"listen": [...]}}``: what :func:`tnode.cli_support.command_node` does); ``hotkey``, when
        given, is used instead of the hotkey file (the coldkey stays the file's).
        """
        path = Path(path)
        doc = apply_env_overrides(read_toml(path))
        for section, table in (overrides or {}).items():
            current = doc.get(section)
            doc[section] = {**(current if isinstance(current, dict) else {}), **table}
        plugins = load_plugins_for(doc, str(path))
        config = parse_config(doc, plugins.registry, file=str(path), base_dir=path.resolve().parent)
        keystore = Keystore(config.data_dir)
        hot_path = keystore.path(config.node.hotkey)
        create_keys = create_keys or config.node.create_keys
        if create_keys and not keystore.path(config.node.coldkey).exists():
            keystore.new(config.node.coldkey, role="coldkey")
        if hotkey is None:
            if not hot_path.exists():
                if not create_keys:
                    raise _hotkey_not_found(hot_path, config)
                keystore.new(config.node.hotkey, role="hotkey")
            hotkey = keystore.load(config.node.hotkey, passphrase)
        cold_path = keystore.path(config.node.coldkey)
        coldkey_public = str(read_keyfile_meta(cold_path)["public"]) if cold_path.exists() else ""
        return cls(config, plugins, hotkey=hotkey, coldkey_public=coldkey_public, kinds=kinds)

    @classmethod
    def for_checking(cls, path: str | Path, *, environ: Mapping[str, str] | None = None) -> Node:
        """Assemble from node.toml exactly as :meth:`from_file` does, building every component,
        but reading no secret and writing nothing — what ``tnode validate`` runs.

        Every check a component makes in its constructor runs here, so a file this accepts passes
        the same checks under ``tnode run``. The hotkey is a throwaway in-memory key (no
        passphrase is asked); the coldkey's public key is read from its file when there is one,
        and stands in as a throwaway when ``create_keys`` would create it. A missing hotkey file
        without ``create_keys`` is the same :class:`KeyFileNotFound` ``tnode run`` raises.
        """
        path = Path(path)
        doc = apply_env_overrides(read_toml(path), environ)
        plugins = load_plugins_for(doc, str(path))
        config = parse_config(doc, plugins.registry, file=str(path), base_dir=path.resolve().parent)
        keystore = Keystore(config.data_dir)
        hot_path = keystore.path(config.node.hotkey)
        if not hot_path.exists() and not config.node.create_keys:
            raise _hotkey_not_found(hot_path, config)
        cold_path = keystore.path(config.node.coldkey)
        if cold_path.exists():
            coldkey_public = str(read_keyfile_meta(cold_path)["public"])
        else:
            coldkey_public = Keypair.generate().public_hex if config.node.create_keys else ""
        return cls(config, plugins, hotkey=Keypair.generate(), coldkey_public=coldkey_public)

    _coldkey: Keypair | None = None

    def load_coldkey(self, passphrase: str | None = None) -> Keypair:
        """The coldkey (needs its passphrase when encrypted; ``$TNODE_PASSPHRASE`` is used otherwise)."""
        if self._coldkey is None:
            self._coldkey = Keystore(self.data_dir).load(self.config.node.coldkey, passphrase)
        return self._coldkey

    # ------------------------------------------------------------------ lookup
    def component(self, kind: str, name: str | None = None) -> Any:
        """The component of ``kind`` (named ``name`` for table sections); ``None`` if absent."""
        if name is None:
            for (k, _n), comp in self._components.items():
                if k == kind:
                    return comp
            return None
        return self._components.get((kind, name))

    def require(self, kind: str, name: str, *, key_path: str) -> Any:
        """The component of ``kind`` named ``name``; :class:`MissingComponentError` naming ``key_path``
        (the config key that refers to it) when this node has none."""
        comp = self._components.get((kind, name))
        if comp is None:
            section = self.plugins.registry.section_of(kind)
            raise MissingComponentError(f"[{section}.{name}] is not configured", key_path=key_path)
        return comp

    def components_of(self, kind: str) -> dict[str, Any]:
        """Components of ``kind`` by name, in configuration order."""
        return {n: c for (k, n), c in self._components.items() if k == kind}

    def component_configs(self) -> list[ComponentConfig]:
        return list(self._configs)

    @property
    def transport(self) -> Any:
        return self.component("transport")

    @property
    def chain(self) -> Any:
        return self.component("chain")

    # ------------------------------------------------------------------ lifecycle
    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Node]:
        """Start the bus and every component; stop them all when the block exits.

        A component that fails to start raises one :class:`ComponentStartError`; one that fails
        later raises :class:`ComponentFailed`. Neither comes wrapped in an exception group: when a
        single exception ends the node (those, or one raised in the ``async with`` block), that
        exception is raised as itself.
        """
        sole: BaseException | None = None
        try:
            async with self._running() as node:
                yield node
        except BaseExceptionGroup as group:
            sole = _sole(group)
            if sole is None:
                raise
        if sole is not None:
            raise sole  # outside the except block, so the group is not chained onto it as context

    @contextlib.asynccontextmanager
    async def _running(self) -> AsyncIterator[Node]:
        async with self.bus, anyio.create_task_group() as tg:
            for comp in self._configs:
                instance = self._components[(comp.kind, comp.name)]
                label = comp.key_path
                try:
                    await tg.start(self._run_component, instance, label)
                except ComponentFailed as exc:
                    raise ComponentStartError(label, exc.cause, type=comp.type, file=self.config.file) from exc.cause
                except Exception as exc:
                    raise ComponentStartError(label, exc, type=comp.type, file=self.config.file) from exc
                self._started[(comp.kind, comp.name)] = instance
                self.log.debug("component started", component=label, type=comp.type)
            self.ready.set()
            await self.bus.publish(NodeStarted(self.peer_id, tuple(c.key_path for c in self._configs)))
            self.plugins.hook.tnode_node_started(node=self)
            reason = "exit"
            try:
                yield self
            except BaseException as exc:
                reason = f"{type(exc).__name__}: {exc}"
                raise
            finally:
                self.plugins.hook.tnode_node_stopping(node=self, reason=reason)
                with anyio.CancelScope(shield=True):
                    self.bus.publish_nowait(NodeStopping(reason))
                    await anyio.sleep(0)
                tg.cancel_scope.cancel()

    async def _run_component(self, instance: Any, label: str, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            await instance.run(task_status=task_status)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            if isinstance(exc, ConfigError):  # a component found its configuration wrong only at start
                exc = self._in_file(exc, label)
            self.log.error("component failed", component=label, error=f"{type(exc).__name__}: {exc}")
            raise ComponentFailed(label, exc) from exc

    def _in_file(self, exc: ConfigError, key_path: str) -> ConfigError:
        """``exc`` naming this node's configuration file (and ``key_path`` when it names no key)."""
        if exc.file is not None:
            return exc
        return type(exc)(exc.message, file=self.config.file, key_path=exc.key_path or key_path, hint=exc.hint)


def _hotkey_not_found(path: Path, config: NodeConfig) -> KeyFileNotFound:
    return KeyFileNotFound(
        f"{path}: hotkey file not found (node.toml node.hotkey = {config.node.hotkey!r}); "
        f"create it with `tnode init` or `tnode keys new {config.node.hotkey} --data-dir {config.data_dir}`"
    )


def _sole(group: BaseExceptionGroup) -> BaseException | None:
    """The one exception in ``group`` (nested groups flattened, cancellations left out), if one."""
    cancelled = anyio.get_cancelled_exc_class()
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        exc = stack.pop()
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(exc.exceptions)
        elif not isinstance(exc, cancelled):
            leaves.append(exc)
    return leaves[0] if len(leaves) == 1 else None


@contextlib.asynccontextmanager
async def open_node(config_path: str | Path, *, kinds: Iterable[str] | None = None,
                    passphrase: str | None = None) -> AsyncIterator[Node]:
    """Assemble from ``config_path``, start only ``kinds`` (all when ``None``), stop on exit."""
    node = Node.from_file(config_path, kinds=kinds, passphrase=passphrase)
    async with node.running():
        yield node
