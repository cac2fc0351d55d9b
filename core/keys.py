"""Ed25519 key pairs, key files and libp2p peer ids.

One key pair is both a node's signing key and its libp2p identity. A coldkey owns stake and
funds; a hotkey runs the node. Key files are JSON, mode 0600, optionally encrypted with a
passphrase (argon2id key derivation + XSalsa20-Poly1305 SecretBox).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import nacl.bindings
import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.signing
import nacl.utils
import orjson

from .errors import KeyFileCorrupt, KeyFileNotFound, KeyFileUnreadable, PassphraseRequired, WrongPassphrase

PASSPHRASE_ENV = "TNODE_PASSPHRASE"
KEYFILE_VERSION = 1
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58encode(data: bytes) -> str:
    """Bitcoin-alphabet base58 (the encoding of libp2p peer ids)."""
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(_B58[r])
    pad = len(data) - len(data.lstrip(b"\0"))
    return "1" * pad + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    n = 0
    for ch in text:
        idx = _B58.find(ch)
        if idx < 0:
            raise ValueError(f"invalid base58 character {ch!r}")
        n = n * 58 + idx
    pad = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * pad + body


def peer_id_from_public_key(public_key: bytes) -> str:
    """The libp2p peer id of an Ed25519 public key (``12D3KooW…``).

    The id is the identity multihash (code 0x00, length 36) of the protobuf-encoded public key
    ``{Type: Ed25519 (1), Data: key}``, base58btc-encoded.
    """
    if len(public_key) != 32:
        raise ValueError("an Ed25519 public key has 32 bytes")
    proto = b"\x08\x01\x12\x20" + public_key
    return b58encode(b"\x00" + bytes([len(proto)]) + proto)


def public_key_from_peer_id(peer_id: str) -> bytes:
    """Inverse of :func:`peer_id_from_public_key` for Ed25519 peer ids."""
    raw = b58decode(peer_id)
    if len(raw) != 38 or raw[:6] != b"\x00\x24\x08\x01\x12\x20":
        raise ValueError(f"not an Ed25519 libp2p peer id: {peer_id!r}")
    return raw[6:]


@dataclass(frozen=True)
class Keypair:
    """An Ed25519 signing key. ``public_hex`` is the account id used on the chain and wire."""

    signing_key: nacl.signing.SigningKey

    @classmethod
    def generate(cls) -> Keypair:
        return cls(nacl.signing.SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Keypair:
        """Deterministic key from a 32-byte seed (devnets and tests)."""
        return cls(nacl.signing.SigningKey(seed))

    @property
    def public_bytes(self) -> bytes:
        return bytes(self.signing_key.verify_key)

    @property
    def public_hex(self) -> str:
        return self.public_bytes.hex()

    @property
    def seed(self) -> bytes:
        return bytes(self.signing_key)

    @property
    def peer_id(self) -> str:
        return peer_id_from_public_key(self.public_bytes)

    def sign(self, message: bytes) -> bytes:
        """Detached 64-byte signature."""
        return self.signing_key.sign(message).signature

    def __repr__(self) -> str:  # never print secrets
        return f"Keypair(public={self.public_hex[:16]}…)"


def verify(public_key: bytes | str, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``message`` by ``public_key``."""
    try:
        key = bytes.fromhex(public_key) if isinstance(public_key, str) else public_key
        if len(key) != nacl.bindings.crypto_sign_PUBLICKEYBYTES or len(signature) != nacl.bindings.crypto_sign_BYTES:
            return False
        # The binding VerifyKey.verify wraps, without its per-call key object and type checks.
        nacl.bindings.crypto_sign_open(bytes(signature) + message, bytes(key))
        return True
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError, nacl.exceptions.ValueError):
        return False


# --------------------------------------------------------------------------- key files
# argon2id "interactive" limits keep `tnode keys` snappy; "moderate" would take ~1 s per unlock.
_OPSLIMIT = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE
_MEMLIMIT = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE
_OPS_RANGE = (nacl.pwhash.argon2id.OPSLIMIT_MIN, nacl.pwhash.argon2id.OPSLIMIT_SENSITIVE)
_MEM_RANGE = (nacl.pwhash.argon2id.MEMLIMIT_MIN, nacl.pwhash.argon2id.MEMLIMIT_SENSITIVE)


def _derive(passphrase: str, salt: bytes, ops: int, mem: int) -> bytes:
    return nacl.pwhash.argon2id.kdf(
        nacl.secret.SecretBox.KEY_SIZE, passphrase.encode(), salt, opslimit=ops, memlimit=mem
    )


def save_keyfile(path: Path, key: Keypair, *, role: str, passphrase: str | None = None, overwrite: bool = False) -> None:
    """Write ``key`` to ``path`` with mode 0600, encrypted when ``passphrase`` is given."""
    path = Path(path)
    if path.is_dir():
        raise FileExistsError(f"{path}: a directory is in the way of the key file")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: key file exists (refusing to overwrite)")
    doc: dict[str, object] = {
        "version": KEYFILE_VERSION,
        "type": "ed25519",
        "role": role,
        "public": key.public_hex,
        "peer_id": key.peer_id,
    }
    if passphrase:
        salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
        box = nacl.secret.SecretBox(_derive(passphrase, salt, _OPSLIMIT, _MEMLIMIT))
        doc["encryption"] = {
            "kdf": "argon2id",
            "salt": salt.hex(),
            "opslimit": _OPSLIMIT,
            "memlimit": _MEMLIMIT,
            "cipher": "xsalsa20poly1305",
            "ciphertext": bytes(box.encrypt(key.seed)).hex(),
        }
    else:
        doc["secret"] = key.seed.hex()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


# A key file is a few hundred bytes; anything far larger is not one (and is not read into memory).
MAX_KEYFILE_BYTES = 64 * 1024


def _read(path: Path) -> bytes:
    """The bytes of a key file, or a :class:`KeyError_` naming the path and what is wrong."""
    if not path.exists():
        raise KeyFileNotFound(f"{path}: no such key file (create one with `tnode keys new`)")
    if path.is_dir():
        raise KeyFileUnreadable(f"{path}: is a directory, not a key file (move it away, or create the key "
                                "with `tnode keys new`)")
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_KEYFILE_BYTES + 1)
    except OSError as exc:
        raise KeyFileUnreadable(f"{path}: cannot read the key file ({exc.strerror or exc})") from exc
    if len(data) > MAX_KEYFILE_BYTES:
        raise KeyFileCorrupt(f"{path}: not a tnode key file (larger than {MAX_KEYFILE_BYTES} bytes)")
    return data


def read_keyfile_meta(path: Path) -> dict[str, object]:
    """Public part of a key file (no passphrase needed).

    Raises :class:`~tnode.errors.KeyFileNotFound`, :class:`~tnode.errors.KeyFileUnreadable` or
    :class:`~tnode.errors.KeyFileCorrupt`, each naming the path.
    """
    path = Path(path)
    data = _read(path)
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise KeyFileCorrupt(f"{path}: not a tnode key file (invalid JSON: {exc})") from exc
    if not isinstance(doc, dict) or doc.get("type") != "ed25519" or not isinstance(doc.get("public"), str):
        raise KeyFileCorrupt(f"{path}: not a tnode key file (expected an ed25519 key document)")
    return doc


def load_keyfile(path: Path, passphrase: str | None = None) -> Keypair:
    """Read a key file; encrypted files need ``passphrase`` (or ``$TNODE_PASSPHRASE``)."""
    path = Path(path)
    doc = read_keyfile_meta(path)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        raise KeyFileUnreadable(f"{path}: cannot read the key file ({exc.strerror or exc})") from exc
    if mode & 0o077:
        # Readable by others: still usable, but tell the operator.
        import structlog

        structlog.get_logger("tnode.keys").warning("key file is readable by others", path=str(path), mode=oct(mode))
    try:
        if "encryption" in doc:
            enc = doc["encryption"]
            if not isinstance(enc, dict):
                raise TypeError("'encryption' is not an object")
            if passphrase is None:
                passphrase = os.environ.get(PASSPHRASE_ENV)
            if not passphrase:
                raise PassphraseRequired(f"{path}: key is encrypted; give a passphrase or set ${PASSPHRASE_ENV}")
            ops, mem = enc["opslimit"], enc["memlimit"]
            # Limits come from the file: refuse values argon2id rejects or that would exhaust memory.
            if not (isinstance(ops, int) and _OPS_RANGE[0] <= ops <= _OPS_RANGE[1]
                    and isinstance(mem, int) and _MEM_RANGE[0] <= mem <= _MEM_RANGE[1]):
                raise ValueError("key derivation limits out of range")
            box = nacl.secret.SecretBox(_derive(passphrase, bytes.fromhex(enc["salt"]), ops, mem))
            ciphertext = bytes.fromhex(enc["ciphertext"])
            if len(ciphertext) < nacl.secret.SecretBox.NONCE_SIZE + nacl.secret.SecretBox.MACBYTES:
                raise ValueError(f"ciphertext has {len(ciphertext)} bytes (truncated)")
            try:
                seed = box.decrypt(ciphertext)
            except nacl.exceptions.CryptoError as exc:
                raise WrongPassphrase(f"{path}: wrong passphrase (or the ciphertext was altered)") from exc
        else:
            seed = bytes.fromhex(str(doc["secret"]))
    except (KeyError, TypeError, ValueError, nacl.exceptions.CryptoError) as exc:
        raise KeyFileCorrupt(f"{path}: damaged key file ({type(exc).__name__}: {exc})") from exc
    if len(seed) != 32:
        raise KeyFileCorrupt(f"{path}: damaged key file (secret has {len(seed)} bytes, expected 32)")
    key = Keypair.from_seed(seed)
    if key.public_hex != doc["public"]:
        raise KeyFileCorrupt(f"{path}: damaged key file (secret does not match the public key)")
    return key


class Keystore:
    """Key files in ``<data_dir>/keys/<name>.json``."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = Path(data_dir).expanduser() / "keys"

    def path(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"invalid key name {name!r}")
        return self.dir / f"{name}.json"

    def new(self, name: str, *, role: str, passphrase: str | None = None, overwrite: bool = False) -> Keypair:
        key = Keypair.generate()
        save_keyfile(self.path(name), key, role=role, passphrase=passphrase, overwrite=overwrite)
        return key

    def load(self, name: str, passphrase: str | None = None) -> Keypair:
        return load_keyfile(self.path(name), passphrase)

    def names(self) -> list[str]:
        if not self.dir.exists():
            return []
        return sorted(p.stem for p in self.dir.glob("*.json"))
