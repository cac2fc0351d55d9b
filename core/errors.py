"""Every exception tnode raises on purpose.

User-facing errors carry where the problem is (file, key path) and a hint, so an operator
can fix node.toml or a command line without reading a traceback.
"""

from __future__ import annotations

import builtins
from typing import TypeVar

_E = TypeVar("_E", bound=BaseException)


class TnodeError(Exception):
    """Base class of every error raised by tnode and its plugins."""


# --------------------------------------------------------------------------- config
class ConfigError(TnodeError):
    """node.toml (or an override) is invalid.

    :param file: the configuration file, or ``None`` for built-in defaults.
    :param key_path: dotted path of the offending key, e.g. ``chain.block_time``.
    :param message: what is wrong and what was expected.
    :param hint: optional suggestion ("did you mean ...?").
    """

    def __init__(self, message: str, *, file: str | None = None, key_path: str = "", hint: str = "") -> None:
        self.file = file
        self.key_path = key_path
        self.message = message
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        where = self.file or "<config>"
        if self.key_path:
            where += f": {self.key_path}"
        text = f"{where}: {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text


class ConfigErrors(ConfigError):
    """Several configuration errors found in one pass, reported together."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        first = errors[0]
        super().__init__(first.message, file=first.file, key_path=first.key_path, hint=first.hint)

    def render(self) -> str:
        return "\n".join(e.render() for e in getattr(self, "errors", [])) or super().render()


class UnknownKeyError(ConfigError):
    """A key that no schema declares."""


class WrongTypeError(ConfigError):
    """A value of the wrong type or out of its allowed range."""


class UnknownComponentTypeError(ConfigError):
    """A component table names a ``type`` that no plugin registered."""


class MissingComponentError(ConfigError):
    """A required component (or one referenced by name) is absent."""


class MissingKeyError(ConfigError):
    """A required key is absent."""


class TopologyError(ConfigError):
    """Components are individually valid but do not form a working node."""


# --------------------------------------------------------------------------- plugins
class PluginError(TnodeError):
    """A plugin failed to load or declares invalid hook implementations."""


class ComponentStartError(TnodeError):
    """A component raised while starting; the node refuses to run.

    ``Node.running()`` raises this one exception (never an exception group): ``component`` and
    ``key_path`` are the component's node.toml key path (``"chain"``, ``"modalities.text"``),
    ``type`` its ``type`` value, ``file`` the configuration file (``None`` for a dict), ``cause``
    what it raised.
    """

    def __init__(self, component: str, cause: BaseException, *, type: str = "", file: str | None = None) -> None:
        self.component = component
        self.key_path = component
        self.type = type
        self.file = file
        self.cause = cause
        super().__init__(f"component {component!r} failed to start: {builtins.type(cause).__name__}: {cause}")


# --------------------------------------------------------------------------- keys
class KeyError_(TnodeError):
    """Base of key-file errors (named with a trailing underscore to avoid shadowing ``KeyError``)."""


class KeyFileNotFound(KeyError_):
    """The key file does not exist."""


class KeyFileUnreadable(KeyError_):
    """The key file's path exists but cannot be read: a directory, no permission, an I/O error."""


class KeyFileCorrupt(KeyError_):
    """The key file cannot be parsed or its contents are inconsistent (truncated, edited, damaged)."""


class WrongPassphrase(KeyError_):
    """The passphrase does not decrypt the key file."""


class PassphraseRequired(KeyError_):
    """The key file is encrypted and no passphrase was given."""


# --------------------------------------------------------------------------- wire
class WireError(TnodeError):
    """Base class of every refusal of inbound bytes by :mod:`tnode.wire`."""

    code = "wire_error"


class FrameTooLarge(WireError):
    """The declared frame length exceeds the configured maximum; nothing was buffered."""

    code = "frame_too_large"


class TruncatedFrame(WireError):
    """The bytes end before the frame does."""

    code = "truncated_frame"


class MalformedFrame(WireError):
    """The frame's structure or header is not what the format requires."""

    code = "malformed_frame"


class BadSignature(WireError):
    """The envelope is unsigned or its signature does not verify for the sender."""

    code = "bad_signature"


class WrongReceiver(WireError):
    """The envelope is addressed to another node."""

    code = "wrong_receiver"


class StaleMessage(WireError):
    """The envelope's timestamp lies outside the accepted window."""

    code = "stale"


class ReplayedMessage(WireError):
    """The envelope's nonce was already seen from this sender."""

    code = "replayed"


class BodyHashMismatch(WireError):
    """The body or payload does not match the signed hash."""

    code = "body_hash_mismatch"


# --------------------------------------------------------------------------- runtime
class BusClosed(TnodeError):
    """The event bus is shut down."""


class NoHandler(TnodeError):
    """No handler serves this request type / route key."""


class RequestTimeout(TnodeError):
    """A request did not get an answer within its deadline."""


class TaskError(TnodeError):
    """A remote task failed; ``code`` is a machine-readable reason sent on the wire.

    Codes used by the core: ``unknown_modality``, ``invalid_request``, ``timeout``,
    ``overloaded``, ``rate_limited``, ``unregistered``, ``too_large``, ``internal``,
    ``invalid_response``, ``unreachable``.
    """

    def __init__(self, code: str, message: str = "") -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}" if message else code)


class ChainError(TnodeError):
    """A chain operation was refused; ``code`` names the rule that refused it."""

    def __init__(self, code: str, message: str = "") -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}" if message else code)


def find_error(exc: BaseException, cls: type[_E]) -> _E | None:
    """The first exception of type ``cls`` in ``exc`` or inside its (nested) exception groups.

    Task groups wrap what a component raised; callers use this to report the meaningful cause.
    """
    if isinstance(exc, cls):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            found = find_error(sub, cls)
            if found is not None:
                return found
    return None
