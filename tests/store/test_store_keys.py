"""Key sources, key wrapping and the store cipher."""

from __future__ import annotations

import json
import sqlite3
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import keyring
import keyring.backend
import keyring.backends.fail
import pytest
from store_records import CHEAP, KEY, cheap_passphrase, room

from messa.errors import (
    KeyringUnavailableError,
    StoreCorruptError,
    WrongPassphraseError,
)
from messa.store import Changes, KdfParams, Keyring, Passphrase, RawKey, SqliteStore, open_store
from messa.store.cipher import StoreCipher, encode_parts
from messa.store.keys import KeyWrap, unwrap_store_key, wrap_store_key


def key_record(db_path: Path) -> dict[str, object]:
    conn = sqlite3.connect(db_path)
    try:
        (value,) = conn.execute("SELECT value FROM meta WHERE name = 'keywrap'").fetchone()
    finally:
        conn.close()
    doc: dict[str, object] = json.loads(value)
    return doc


def test_default_argon2_parameters(db_path: Path) -> None:
    """The one test that pays for real Argon2id costs (64 MiB, 3 passes)."""
    with SqliteStore(db_path, Passphrase("a real passphrase")) as store:
        store.save_changes(Changes(values={"a": b"1"}))
    assert key_record(db_path)["argon2id"] == {"t": 3, "m": 65536, "p": 1}
    with pytest.raises(WrongPassphraseError):
        SqliteStore(db_path, Passphrase("another passphrase"))
    with SqliteStore(db_path, Passphrase("a real passphrase")) as store:
        assert store.get_value("a") == b"1"


def test_a_store_keeps_its_own_parameters(db_path: Path) -> None:
    SqliteStore(db_path, cheap_passphrase("pw")).close()
    assert key_record(db_path)["argon2id"] == {"t": 1, "m": 8, "p": 1}
    # Opening with a source that carries other (default) costs still works:
    # the key is derived with the costs recorded in the store.
    with SqliteStore(db_path, Passphrase("pw", KdfParams(time_cost=2))) as store:
        assert len(store.pickle_key) == 32
    assert key_record(db_path)["argon2id"] == {"t": 1, "m": 8, "p": 1}


def test_passphrase_is_normalized(db_path: Path) -> None:
    composed = unicodedata.normalize("NFC", "café crème")
    decomposed = unicodedata.normalize("NFD", "café crème")
    assert composed != decomposed
    SqliteStore(db_path, Passphrase(composed, CHEAP)).close()
    SqliteStore(db_path, Passphrase(decomposed, CHEAP)).close()


def test_change_key_source(db_path: Path) -> None:
    with SqliteStore(db_path, cheap_passphrase("old")) as store:
        store.save_changes(Changes(rooms=[room()]))
        pickle_key = store.pickle_key
        store.change_key_source(cheap_passphrase("new"))
        assert store.get_rooms() == [room()]
    with pytest.raises(WrongPassphraseError):
        SqliteStore(db_path, cheap_passphrase("old"))
    with SqliteStore(db_path, cheap_passphrase("new")) as store:
        assert store.get_rooms() == [room()]
        assert store.pickle_key == pickle_key
        store.change_key_source(KEY)
    with SqliteStore(db_path, KEY) as store:
        assert store.pickle_key == pickle_key


def test_open_store_uses_the_profile_layout(tmp_path: Path) -> None:
    with open_store(tmp_path / "profile", KEY) as store:
        assert store.path == tmp_path / "profile" / "store.sqlite3"
    assert (tmp_path / "profile" / "store.sqlite3").is_file()


def test_invalid_sources() -> None:
    with pytest.raises(ValueError):
        RawKey(b"short")
    with pytest.raises(ValueError):
        Passphrase("")
    with pytest.raises(ValueError):
        KdfParams(memory_cost_kib=4)
    with pytest.raises(ValueError):
        KdfParams(time_cost=0)


# --- keyring --------------------------------------------------------------------------------


class MemoryKeyring(keyring.backend.KeyringBackend):
    """An in-process keyring backend (the OS ones need a desktop session)."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        del self.entries[(service, username)]


@pytest.fixture
def os_keyring() -> Iterator[MemoryKeyring]:
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


def test_keyring_source(db_path: Path, os_keyring: MemoryKeyring) -> None:
    source = Keyring("messa-test", "profile-a")
    with SqliteStore(db_path, source) as store:
        store.save_changes(Changes(values={"a": b"1"}))
    entry = os_keyring.entries[("messa-test", "profile-a")]
    assert key_record(db_path)["kind"] == "keyring"
    with SqliteStore(db_path, source) as store:
        assert store.get_value("a") == b"1"
    # Another store's key in the entry: the wrong key.
    other = tmp_store_key(db_path.parent / "other.sqlite3", Keyring("messa-test", "profile-b"))
    os_keyring.entries[("messa-test", "profile-a")] = other
    with pytest.raises(WrongPassphraseError):
        SqliteStore(db_path, source)
    os_keyring.entries[("messa-test", "profile-a")] = "not base64 at all!"
    with pytest.raises(WrongPassphraseError):
        SqliteStore(db_path, source)
    del os_keyring.entries[("messa-test", "profile-a")]
    with pytest.raises(KeyringUnavailableError, match="no key"):
        SqliteStore(db_path, source)
    os_keyring.entries[("messa-test", "profile-a")] = entry
    SqliteStore(db_path, source).close()


def tmp_store_key(path: Path, source: Keyring) -> str:
    SqliteStore(path, source).close()
    value = keyring.get_password(source.service, source.username)
    assert isinstance(value, str)
    return value


def test_no_keyring_backend(db_path: Path) -> None:
    previous = keyring.get_keyring()
    keyring.set_keyring(keyring.backends.fail.Keyring())
    try:
        with pytest.raises(KeyringUnavailableError, match="not available"):
            SqliteStore(db_path, Keyring("messa-test", "p"))
    finally:
        keyring.set_keyring(previous)
    # Nothing half-made was left behind: the next attempt creates a store.
    SqliteStore(db_path, KEY).close()


def test_keyring_package_missing(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "keyring", None)
    with pytest.raises(KeyringUnavailableError, match="not installed"):
        SqliteStore(db_path, Keyring("messa-test", "p"))


# --- wrapping and the cipher --------------------------------------------------------------


def test_wrap_round_trip_and_kind_binding() -> None:
    store_key = bytes(range(100, 132))
    for source in (cheap_passphrase(), KEY):
        wrap = KeyWrap.from_bytes(wrap_store_key(source, store_key).to_bytes())
        assert unwrap_store_key(source, wrap) == store_key
    wrap = wrap_store_key(KEY, store_key)
    forged = KeyWrap("passphrase", wrap.salt, CHEAP, wrap.nonce, wrap.ciphertext)
    with pytest.raises(WrongPassphraseError):
        unwrap_store_key(Passphrase("x", CHEAP), forged)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"[]",
        b'{"format": 2}',
        b'{"format": 1, "kind": "magic", "salt": "", "nonce": "", "ciphertext": ""}',
        b'{"format": 1, "kind": "raw", "salt": "!!", "nonce": "", "ciphertext": ""}',
        b'{"format": 1, "kind": "passphrase", "salt": "", "nonce": "", "ciphertext": ""}',
        b'{"format": 1, "kind": "passphrase", "salt": "", "nonce": "", "ciphertext": "",'
        b' "argon2id": {"t": "1", "m": 8, "p": 1}}',
        b"a string",
    ],
)
def test_malformed_key_records(data: bytes) -> None:
    with pytest.raises(StoreCorruptError):
        KeyWrap.from_bytes(data)


def test_cipher_binds_values_to_their_row() -> None:
    cipher = StoreCipher(bytes(32))
    sealed = cipher.seal(b"payload", "rooms", b"k1", 5)
    assert cipher.open(sealed, "rooms", b"k1", 5) == b"payload"
    for aad in [("rooms", b"k2", 5), ("kv", b"k1", 5), ("rooms", b"k1", 6), ("rooms", b"k1", "5")]:
        with pytest.raises(StoreCorruptError):
            cipher.open(sealed, *aad)
    with pytest.raises(StoreCorruptError):
        cipher.open(b"\x02" + sealed[1:], "rooms", b"k1", 5)
    with pytest.raises(StoreCorruptError):
        cipher.open(None, "rooms", b"k1", 5)
    assert cipher.seal(b"payload", "rooms") != cipher.seal(b"payload", "rooms")  # fresh nonce


def test_lookup_hashes_are_keyed_and_separated() -> None:
    a, b = StoreCipher(bytes(32)), StoreCipher(bytes(31) + b"\x01")
    assert a.lookup("rooms", "!r:x") == a.lookup("rooms", "!r:x")
    assert a.lookup("rooms", "!r:x") != b.lookup("rooms", "!r:x")
    assert a.lookup("rooms", "!r:x") != a.lookup("timeline/room", "!r:x")
    assert a.lookup("t", "ab", "c") != a.lookup("t", "a", "bc")
    assert encode_parts(1) != encode_parts("1")
    assert encode_parts(None) != encode_parts("")
    assert len({a.pickle_key, a.lookup("x"), b.pickle_key}) == 3


def test_encoding_and_lookup_hashes_are_stable() -> None:
    """Exact bytes: every stored lookup column and associated data depend on them."""
    assert encode_parts("ab", 7, -1, True, None, b"\x00", "\ud800é") == (
        b"s\x00\x00\x00\x02ab"
        b"i\x00\x00\x00\x017"
        b"i\x00\x00\x00\x02-1"
        b"b\x00\x00\x00\x01\x01"
        b"n"
        b"y\x00\x00\x00\x01\x00"
        b"s\x00\x00\x00\x05\xed\xa0\x80\xc3\xa9"
    )
    cipher = StoreCipher(bytes(32))
    assert cipher.lookup("timeline", "!r:x", "$e").hex() == (
        "9060d8cdc7c09a939ceca5b302bba6a4c73716dadbcf57de9bf4fcff06731a66"
    )
    assert cipher.lookup("megolm_indices", "s1", 0).hex() == (
        "a8e5cd384ac93ccdf7e04a4505870433d328a7955c1feba70a619de2ad862d50"
    )
    # Repeated lookups reuse a per-domain state: nothing may carry over, and
    # parts that compare equal in Python (1 and True) must stay apart.
    assert cipher.lookup("timeline", "!r:x", "$e") == cipher.lookup("timeline", "!r:x", "$e")
    parts: list[tuple[str | int | bytes | bytearray | None, ...]] = [
        (1,),
        (True,),
        ("1",),
        (b"1",),
        (bytearray(b"1"),),
        (None,),
        (0,),
        (False,),
    ]
    first = [cipher.lookup("t", *p) for p in parts]
    again = [cipher.lookup("t", *p) for p in reversed(parts)][::-1]
    fresh = [StoreCipher(bytes(32)).lookup("t", *p) for p in parts]
    assert first == again == fresh
    assert len(set(first)) == len(parts) - 1  # bytes and bytearray are the same bytes
