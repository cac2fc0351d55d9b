"""Key pairs, key files (plain and encrypted) and libp2p peer ids."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import orjson
import pytest
from tnode.cli import app
from tnode.errors import (
    KeyFileCorrupt,
    KeyFileNotFound,
    KeyFileUnreadable,
    PassphraseRequired,
    WrongPassphrase,
)
from tnode.keys import (
    Keypair,
    Keystore,
    load_keyfile,
    peer_id_from_public_key,
    public_key_from_peer_id,
    read_keyfile_meta,
    save_keyfile,
    verify,
)
from typer.testing import CliRunner


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_plain_key_file_round_trips(tmp_path: Path) -> None:
    key = Keypair.generate()
    path = tmp_path / "hot.json"
    save_keyfile(path, key, role="hotkey")
    loaded = load_keyfile(path)
    assert loaded.public_hex == key.public_hex and loaded.seed == key.seed
    assert read_keyfile_meta(path)["role"] == "hotkey"


def test_encrypted_key_file_round_trips_and_hides_the_secret(tmp_path: Path) -> None:
    key = Keypair.generate()
    path = tmp_path / "cold.json"
    save_keyfile(path, key, role="coldkey", passphrase="correct horse")
    text = path.read_text()
    assert key.seed.hex() not in text and "secret" not in orjson.loads(text)
    assert load_keyfile(path, "correct horse").seed == key.seed


def test_passphrase_is_read_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = Keypair.generate()
    path = tmp_path / "cold.json"
    save_keyfile(path, key, role="coldkey", passphrase="from env")
    monkeypatch.setenv("TNODE_PASSPHRASE", "from env")
    assert load_keyfile(path).public_hex == key.public_hex


def test_wrong_passphrase_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cold.json"
    save_keyfile(path, Keypair.generate(), role="coldkey", passphrase="right")
    with pytest.raises(WrongPassphrase, match="wrong passphrase"):
        load_keyfile(path, "wrong")


def test_encrypted_key_without_passphrase_asks_for_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TNODE_PASSPHRASE", raising=False)
    path = tmp_path / "cold.json"
    save_keyfile(path, Keypair.generate(), role="coldkey", passphrase="right")
    with pytest.raises(PassphraseRequired, match="TNODE_PASSPHRASE"):
        load_keyfile(path)


def test_key_files_are_written_with_mode_0600(tmp_path: Path) -> None:
    for name, passphrase in (("plain.json", None), ("enc.json", "pw")):
        path = tmp_path / name
        save_keyfile(path, Keypair.generate(), role="hotkey", passphrase=passphrase)
        assert mode(path) == 0o600


def test_existing_key_file_is_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "hot.json"
    first = Keypair.generate()
    save_keyfile(path, first, role="hotkey")
    with pytest.raises(FileExistsError):
        save_keyfile(path, Keypair.generate(), role="hotkey")
    assert load_keyfile(path).public_hex == first.public_hex


def test_missing_key_file_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(KeyFileNotFound, match="tnode keys new"):
        load_keyfile(tmp_path / "nope.json")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "invalid JSON"),
        (b"{\"type\": \"ed25519\", \"public\": ", "invalid JSON"),
        (b"[1, 2]", "expected an ed25519 key document"),
        (b"{\"type\": \"rsa\", \"public\": \"00\"}", "expected an ed25519 key document"),
    ],
)
def test_unparseable_key_files_are_reported_as_corrupt(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(KeyFileCorrupt, match=message):
        load_keyfile(path)


def test_secret_that_does_not_match_the_public_key_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "hot.json"
    save_keyfile(path, Keypair.generate(), role="hotkey")
    doc = orjson.loads(path.read_bytes())
    doc["public"] = Keypair.generate().public_hex
    path.write_bytes(orjson.dumps(doc))
    with pytest.raises(KeyFileCorrupt, match="does not match the public key"):
        load_keyfile(path)


@pytest.mark.parametrize("secret", ["zz" * 32, "ab" * 31, 12])
def test_damaged_secret_is_corrupt(tmp_path: Path, secret: object) -> None:
    path = tmp_path / "hot.json"
    save_keyfile(path, Keypair.generate(), role="hotkey")
    doc = orjson.loads(path.read_bytes())
    doc["secret"] = secret
    path.write_bytes(orjson.dumps(doc))
    with pytest.raises(KeyFileCorrupt, match="damaged"):
        load_keyfile(path)


def test_altered_ciphertext_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cold.json"
    save_keyfile(path, Keypair.generate(), role="coldkey", passphrase="pw")
    doc = orjson.loads(path.read_bytes())
    ct = bytearray(bytes.fromhex(doc["encryption"]["ciphertext"]))
    ct[-1] ^= 1
    doc["encryption"]["ciphertext"] = ct.hex()
    path.write_bytes(orjson.dumps(doc))
    with pytest.raises(WrongPassphrase, match="altered"):
        load_keyfile(path, "pw")


def test_encryption_block_missing_fields_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "cold.json"
    save_keyfile(path, Keypair.generate(), role="coldkey", passphrase="pw")
    doc = orjson.loads(path.read_bytes())
    del doc["encryption"]["salt"]
    path.write_bytes(orjson.dumps(doc))
    with pytest.raises(KeyFileCorrupt):
        load_keyfile(path, "pw")


def test_signatures_verify_only_for_the_signed_message_and_key() -> None:
    key = Keypair.from_seed(b"k" * 32)
    sig = key.sign(b"hello")
    assert verify(key.public_bytes, b"hello", sig)
    assert verify(key.public_hex, b"hello", sig)
    assert not verify(key.public_bytes, b"hellO", sig)
    assert not verify(Keypair.generate().public_bytes, b"hello", sig)
    assert not verify("not hex", b"hello", sig)


def test_repr_never_shows_the_secret() -> None:
    key = Keypair.generate()
    assert key.seed.hex() not in repr(key) and key.seed.hex()[:16] not in repr(key)


def test_peer_id_matches_py_libp2p() -> None:
    from libp2p.crypto.ed25519 import Ed25519PrivateKey
    from libp2p.peer.id import ID

    key = Keypair.from_seed(bytes(range(32)))
    libp2p_key = Ed25519PrivateKey.from_bytes(key.seed)
    expected = ID.from_pubkey(libp2p_key.get_public_key()).to_base58()
    assert key.peer_id == expected
    assert key.peer_id.startswith("12D3KooW")
    assert public_key_from_peer_id(key.peer_id) == key.public_bytes


def test_peer_id_inverse_refuses_other_ids() -> None:
    with pytest.raises(ValueError):
        public_key_from_peer_id("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N")
    with pytest.raises(ValueError):
        peer_id_from_public_key(b"\x00" * 31)


def test_keystore_creates_lists_and_loads_named_keys(tmp_path: Path) -> None:
    store = Keystore(tmp_path)
    hot = store.new("hotkey", role="hotkey")
    store.new("coldkey", role="coldkey", passphrase="pw")
    assert store.names() == ["coldkey", "hotkey"]
    assert store.load("hotkey").public_hex == hot.public_hex
    assert store.path("hotkey") == tmp_path / "keys" / "hotkey.json"
    with pytest.raises(ValueError, match="invalid key name"):
        store.path("../escape")


# --------------------------------------------------------------------------- hostile key files
def test_a_directory_where_the_key_file_should_be_is_unreadable_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "hot.json"
    path.mkdir()
    for call in (read_keyfile_meta, load_keyfile):
        with pytest.raises(KeyFileUnreadable, match=f"{path}: is a directory"):
            call(path)
    with pytest.raises(FileExistsError, match="directory is in the way"):
        save_keyfile(path, Keypair.generate(), role="hotkey", overwrite=True)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_a_key_file_without_read_permission_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "hot.json"
    save_keyfile(path, Keypair.generate(), role="hotkey")
    path.chmod(0)
    with pytest.raises(KeyFileUnreadable, match="Permission denied"):
        load_keyfile(path)


def test_a_truncated_key_file_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "cold.json"
    save_keyfile(path, Keypair.generate(), role="coldkey", passphrase="pw")
    whole = path.read_bytes()
    for cut in (0, 1, len(whole) // 2, len(whole) - 2):
        path.write_bytes(whole[:cut])
        with pytest.raises(KeyFileCorrupt, match=str(path)):
            load_keyfile(path, "pw")


@pytest.mark.parametrize("change", [
    {"ciphertext": "ab" * 20},          # shorter than nonce + MAC
    {"ciphertext": "abc"},              # odd hex
    {"opslimit": 2**62},                # would never finish
    {"memlimit": 2**50},                # would exhaust memory
    {"memlimit": "64"},
    {"salt": "00"},
])
def test_hostile_encryption_parameters_are_corrupt_not_crashes(tmp_path: Path, change: dict[str, object]) -> None:
    path = tmp_path / "cold.json"
    save_keyfile(path, Keypair.generate(), role="coldkey", passphrase="pw")
    doc = orjson.loads(path.read_bytes())
    doc["encryption"].update(change)
    path.write_bytes(orjson.dumps(doc))
    with pytest.raises(KeyFileCorrupt, match="damaged key file"):
        load_keyfile(path, "pw")


def test_a_huge_file_is_not_read_as_a_key(tmp_path: Path) -> None:
    path = tmp_path / "hot.json"
    path.write_bytes(b" " * (1024 * 1024))
    with pytest.raises(KeyFileCorrupt, match="larger than"):
        read_keyfile_meta(path)


# The CLI prints these problems as one line naming the path, exits non-zero, no traceback.
@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("TNODE_PASSPHRASE", raising=False)
    return CliRunner()


def _break(keys: Path, how: str) -> Path:
    path = keys / "hotkey.json"
    if how == "directory":
        path.unlink()
        path.mkdir()
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[:40])
    elif how == "wrong passphrase":
        save_keyfile(path, Keypair.generate(), role="hotkey", passphrase="right", overwrite=True)
    return path


CASES = [("directory", "is a directory"), ("truncated", "not a tnode key file"),
         ("wrong passphrase", "wrong passphrase")]


def _assert_clean_failure(result, path: Path, message: str, code: int | None = None) -> None:  # type: ignore[no-untyped-def]
    text = " ".join(result.output.split())
    assert result.exit_code != 0, text
    if code is not None:
        assert result.exit_code == code, text
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # handled, not a crash
    assert "Traceback" not in result.output
    assert str(path) in text and message in text, text


@pytest.mark.parametrize(("how", "message"), CASES)
def test_keys_show_reports_a_broken_key_file_without_a_traceback(cli: CliRunner, tmp_path: Path, how: str,
                                                                 message: str) -> None:
    Keystore(tmp_path).new("hotkey", role="hotkey")
    path = _break(tmp_path / "keys", how)
    result = cli.invoke(app, ["keys", "show", "hotkey", "-d", str(tmp_path), "--unlock"], input="wrong\n")
    _assert_clean_failure(result, path, message)


@pytest.mark.parametrize(("how", "message"), CASES)
def test_run_reports_a_broken_hotkey_file_without_a_traceback(cli: CliRunner, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch, how: str,
                                                              message: str) -> None:
    assert cli.invoke(app, ["init", str(tmp_path)]).exit_code == 0
    path = _break(tmp_path / "data" / "node" / "keys", how)
    monkeypatch.setenv("TNODE_PASSPHRASE", "wrong")
    result = cli.invoke(app, ["run", "-c", str(tmp_path / "node.toml")])
    _assert_clean_failure(result, path, message, code=78)


def test_keys_list_shows_a_directory_in_the_keys_folder_as_a_broken_row(cli: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "keys" / "odd.json").mkdir(parents=True)
    result = cli.invoke(app, ["keys", "list", "-d", str(tmp_path)])
    assert result.exit_code == 0 and "is a directory" in result.output

