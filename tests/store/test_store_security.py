"""What an attacker with the store file (or a second process) can and cannot do."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from store_records import (
    ALICE,
    KEY,
    OTHER_ROOM,
    ROOM,
    account,
    cheap_passphrase,
    device,
    event,
    inbound,
    megolm_index,
    olm,
    outbound,
    pending,
    room,
)

from messa.errors import (
    StoreCorruptError,
    StoreLockedError,
    StoreNotFoundError,
    StoreVersionError,
    WrongPassphraseError,
)
from messa.store import Changes, Passphrase, RawKey, SqliteStore
from messa.types.ids import EventId, RoomId, UserId

SECRET_ROOM = RoomId("!roomidsecret:example.org")
SECRET_USER = UserId("@useridsecret:example.org")

PLAINTEXTS = [
    b"message body secret",
    b"room name secret",
    b"room topic secret",
    b"roomidsecret",
    b"useridsecret",
    b"eventidsecret",
    b"devicesecret",
    b"megolmsessionsecret",
    b"curvekeysecret",
    b"pickle string secret",
    b"kv key secret",
    b"kv value secret",
    b"txnidsecret",
    b"pending body secret",
    b'"body"',
    b'"pickle"',
]


def secret_changes() -> Changes:
    return Changes(
        account=account(pickle="account pickle string secret"),
        olm_sessions=[olm("curvekeysecret", "olmsession", pickle="olm pickle string secret")],
        inbound_group_sessions=[
            inbound(SECRET_ROOM, "megolmsessionsecret", pickle="igs pickle string secret")
        ],
        outbound_group_sessions=[outbound(SECRET_ROOM, pickle="ogs pickle string secret")],
        devices=[device(SECRET_USER, "devicesecret")],
        tracked_users={SECRET_USER: True},
        rooms=[
            room(
                SECRET_ROOM,
                name="room name secret",
                topic="room topic secret",
                members={SECRET_USER: "join"},
            )
        ],
        timeline=[
            event(
                "$eventidsecret",
                1,
                room_id=SECRET_ROOM,
                body="message body secret",
                sender=SECRET_USER,
                session_id="megolmsessionsecret",
            )
        ],
        pending_sends=[
            pending("txnidsecret", 1, room_id=SECRET_ROOM, content={"body": "pending body secret"})
        ],
        values={"kv key secret": b"kv value secret"},
    )


def store_bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def assert_no_plaintext(directory: Path) -> None:
    files = store_bytes(directory)
    assert any(name.endswith(".sqlite3") for name in files)
    for name, data in files.items():
        for needle in PLAINTEXTS:
            assert needle not in data, f"{needle!r} found in {name}"


def test_file_holds_no_plaintext(db_path: Path) -> None:
    store = SqliteStore(db_path, cheap_passphrase())
    store.save_changes(secret_changes())
    # While open, the data is in the WAL; grep every file, not only the db.
    assert (db_path.parent / (db_path.name + "-wal")).stat().st_size > 0
    assert_no_plaintext(db_path.parent)
    store.close()
    assert_no_plaintext(db_path.parent)
    with SqliteStore(db_path, cheap_passphrase()) as again:
        # The check above is only meaningful if the data really is there.
        assert again.get_timeline(SECRET_ROOM)[0].event["content"]["body"] == "message body secret"
        assert again.get_value("kv key secret") == b"kv value secret"


def test_the_grep_would_find_plaintext(tmp_path: Path) -> None:
    """The plaintext check itself can fail: a plain SQLite file trips it."""
    conn = sqlite3.connect(tmp_path / "plain.sqlite3")
    conn.execute("CREATE TABLE t (v TEXT)")
    conn.execute("INSERT INTO t VALUES ('a message body secret here')")
    conn.commit()
    conn.close()
    with pytest.raises(AssertionError):
        assert_no_plaintext(tmp_path)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_wrong_passphrase_changes_nothing(db_path: Path) -> None:
    with SqliteStore(db_path, cheap_passphrase("right")) as store:
        store.save_changes(secret_changes())
    before, listing = digest(db_path), sorted(os.listdir(db_path.parent))
    for wrong in (cheap_passphrase("wrong"), KEY):
        with pytest.raises(WrongPassphraseError):
            SqliteStore(db_path, wrong)
        assert digest(db_path) == before
        assert sorted(os.listdir(db_path.parent)) == listing
    # The failed attempts released the lock and left the store usable.
    with SqliteStore(db_path, cheap_passphrase("right")) as store:
        assert store.get_room(SECRET_ROOM) is not None


def test_wrong_raw_key(db_path: Path) -> None:
    SqliteStore(db_path, KEY).close()
    before = digest(db_path)
    with pytest.raises(WrongPassphraseError):
        SqliteStore(db_path, RawKey(b"\x01" * 32))
    assert digest(db_path) == before


def test_newer_schema_is_refused_without_writing(db_path: Path) -> None:
    SqliteStore(db_path, KEY).close()
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    before = digest(db_path)
    with pytest.raises(StoreVersionError):
        SqliteStore(db_path, KEY)
    assert digest(db_path) == before


def raw_rows(db_path: Path, table: str) -> list[tuple[bytes, bytes]]:
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute(f"SELECT k, v FROM {table} ORDER BY rowid").fetchall()  # noqa: S608
    finally:
        conn.close()


def sql(db_path: Path, statement: str, params: tuple[object, ...] = ()) -> None:
    conn = sqlite3.connect(db_path)
    try:
        conn.execute(statement, params)
        conn.commit()
    finally:
        conn.close()


def two_rooms(db_path: Path) -> None:
    with SqliteStore(db_path, KEY) as store:
        store.save_changes(
            Changes(
                rooms=[room(ROOM, name="one"), room(OTHER_ROOM, name="two")],
                values={"k": b"v"},
                timeline=[event("$e1", 1), event("$e2", 2)],
                olm_sessions=[olm("curveA", "o1"), olm("curveC", "o2")],
            )
        )


def test_flipped_byte_is_detected(db_path: Path) -> None:
    two_rooms(db_path)
    (k, v), _ = raw_rows(db_path, "rooms")
    tampered = bytearray(v)
    tampered[len(v) // 2] ^= 0x01
    sql(db_path, "UPDATE rooms SET v = ? WHERE k = ?", (bytes(tampered), k))
    with SqliteStore(db_path, KEY) as store:
        with pytest.raises(StoreCorruptError):
            store.get_room(ROOM)
        with pytest.raises(StoreCorruptError):
            store.get_rooms()
        assert store.get_room(OTHER_ROOM) == room(OTHER_ROOM, name="two")


def test_truncated_value_is_detected(db_path: Path) -> None:
    two_rooms(db_path)
    k, v = raw_rows(db_path, "kv")[0]
    sql(db_path, "UPDATE kv SET v = ? WHERE k = ?", (v[:10], k))
    with SqliteStore(db_path, KEY) as store, pytest.raises(StoreCorruptError):
        store.get_value("k")


def test_swapped_rows_are_detected(db_path: Path) -> None:
    two_rooms(db_path)
    (k1, v1), (k2, v2) = raw_rows(db_path, "rooms")
    sql(db_path, "UPDATE rooms SET v = ? WHERE k = ?", (v2, k1))
    sql(db_path, "UPDATE rooms SET v = ? WHERE k = ?", (v1, k2))
    with SqliteStore(db_path, KEY) as store:
        with pytest.raises(StoreCorruptError):
            store.get_room(ROOM)
        with pytest.raises(StoreCorruptError):
            store.get_room(OTHER_ROOM)


def test_swapped_rows_are_detected_by_batch_reads(db_path: Path) -> None:
    two_rooms(db_path)
    with SqliteStore(db_path, KEY) as store:
        store.save_changes(
            Changes(
                megolm_indices=[megolm_index("s1", 0, "$e1"), megolm_index("s1", 1, "$e2")],
                inbound_group_sessions=[inbound(ROOM, "s1"), inbound(ROOM, "s2")],
            )
        )
    for table in ("timeline", "megolm_indices", "inbound_group_sessions"):
        (k1, v1), (k2, v2) = raw_rows(db_path, table)
        sql(db_path, f"UPDATE {table} SET v = ? WHERE k = ?", (v2, k1))  # noqa: S608
        sql(db_path, f"UPDATE {table} SET v = ? WHERE k = ?", (v1, k2))  # noqa: S608
    with SqliteStore(db_path, KEY) as store:
        with pytest.raises(StoreCorruptError):
            store.get_timeline_events(ROOM, [EventId("$e1"), EventId("$e2")])
        with pytest.raises(StoreCorruptError):
            store.get_timeline_events(ROOM, [EventId("$e2")])
        with pytest.raises(StoreCorruptError):
            store.get_megolm_indices([("s1", 0)])
        with pytest.raises(StoreCorruptError):
            store.get_inbound_group_sessions([(ROOM, "s2")])
        assert store.get_timeline_events(ROOM, [EventId("$e3")]) == {}


def test_value_moved_between_tables_is_detected(db_path: Path) -> None:
    two_rooms(db_path)
    kv_key = raw_rows(db_path, "kv")[0][0]
    room_value = raw_rows(db_path, "rooms")[0][1]
    sql(db_path, "UPDATE kv SET v = ? WHERE k = ?", (room_value, kv_key))
    with SqliteStore(db_path, KEY) as store, pytest.raises(StoreCorruptError):
        store.get_value("k")


def test_edited_lookup_columns_are_detected(db_path: Path) -> None:
    two_rooms(db_path)
    # Move an event to another position, and an Olm session under another sender.
    sql(
        db_path,
        "UPDATE timeline SET position = 100 WHERE rowid = (SELECT MIN(rowid) FROM timeline)",
    )
    conn = sqlite3.connect(db_path)
    senders = [r[0] for r in conn.execute("SELECT sender FROM olm_sessions ORDER BY rowid")]
    conn.close()
    sql(db_path, "UPDATE olm_sessions SET sender = ? WHERE sender = ?", (senders[1], senders[0]))
    with SqliteStore(db_path, KEY) as store:
        with pytest.raises(StoreCorruptError):
            store.get_timeline(ROOM)
        with pytest.raises(StoreCorruptError):
            store.get_olm_sessions("curveC")


def test_tampered_key_record(db_path: Path) -> None:
    SqliteStore(db_path, cheap_passphrase()).close()
    conn = sqlite3.connect(db_path)
    (wrap,) = conn.execute("SELECT value FROM meta WHERE name = 'keywrap'").fetchone()
    conn.close()
    # Absurd Argon2 costs are refused before any work is done.
    huge = wrap.replace(b'"m": 8', b'"m": 999999999999')
    assert huge != wrap
    sql(db_path, "UPDATE meta SET value = ? WHERE name = 'keywrap'", (huge,))
    with pytest.raises(StoreCorruptError):
        SqliteStore(db_path, cheap_passphrase())
    # Edited costs (e.g. an attacker making brute force cheaper) break the unwrap.
    edited = wrap.replace(b'"t": 1', b'"t": 2')
    assert edited != wrap
    sql(db_path, "UPDATE meta SET value = ? WHERE name = 'keywrap'", (edited,))
    with pytest.raises(WrongPassphraseError):
        SqliteStore(db_path, cheap_passphrase())
    sql(db_path, "UPDATE meta SET value = ? WHERE name = 'keywrap'", (b"not json",))
    with pytest.raises(StoreCorruptError):
        SqliteStore(db_path, cheap_passphrase())
    sql(db_path, "DELETE FROM meta")
    with pytest.raises(StoreCorruptError):
        SqliteStore(db_path, cheap_passphrase())


def test_foreign_files_are_refused(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(os.urandom(8192))
    with pytest.raises(StoreCorruptError):
        SqliteStore(garbage, KEY)
    other = tmp_path / "other.sqlite3"
    sql(other, "CREATE TABLE notes (t TEXT)")
    with pytest.raises(StoreCorruptError):
        SqliteStore(other, KEY)


def test_missing_store_without_create(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "store.sqlite3"
    with pytest.raises(StoreNotFoundError):
        SqliteStore(path, KEY, create=False)
    assert not path.parent.exists()


def test_empty_file_becomes_a_store_only_with_create(db_path: Path) -> None:
    db_path.parent.mkdir()
    db_path.touch(mode=0o644)
    with pytest.raises(StoreNotFoundError):
        SqliteStore(db_path, KEY, create=False)
    with SqliteStore(db_path, KEY) as store:
        store.save_changes(Changes(values={"a": b"1"}))
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600
    with SqliteStore(db_path, KEY, create=False) as store:
        assert store.get_value("a") == b"1"


def test_loose_permissions_are_tightened(db_path: Path) -> None:
    SqliteStore(db_path, KEY).close()
    db_path.chmod(0o644)
    SqliteStore(db_path, KEY).close()
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600


def test_file_modes(tmp_path: Path) -> None:
    path = tmp_path / "new" / "deeper" / "store.sqlite3"
    with SqliteStore(path, KEY) as store:
        store.save_changes(Changes(values={"a": b"b"}))
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        names = ["store.sqlite3", "store.sqlite3.lock", "store.sqlite3-wal", "store.sqlite3-shm"]
        for name in names:
            assert stat.S_IMODE((path.parent / name).stat().st_mode) == 0o600, name


# --- the process lock -------------------------------------------------------------------------

HOLDER = textwrap.dedent(
    """
    import sys, time
    from messa.store import Changes, RawKey, SqliteStore
    store = SqliteStore(sys.argv[1], RawKey(bytes(range(32))))
    for i in range(20):
        store.save_changes(Changes(values={f"k{i}": str(i).encode()}))
    print("ready", flush=True)
    time.sleep(120)
    """
)


def start_holder(path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        pytest.fail(f"lock holder did not start: {line!r}")
    return proc


def test_second_instance_in_process_is_refused(db_path: Path) -> None:
    first = SqliteStore(db_path, KEY)
    with pytest.raises(StoreLockedError):
        SqliteStore(db_path, KEY)
    first.save_changes(Changes(values={"a": b"1"}))  # the first one is unaffected
    first.close()
    with SqliteStore(db_path, KEY) as second:
        assert second.get_value("a") == b"1"


def test_lock_held_by_another_process_and_freed_by_sigkill(db_path: Path) -> None:
    holder = start_holder(db_path)
    try:
        with pytest.raises(StoreLockedError):
            SqliteStore(db_path, KEY)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    # Killed without closing: its commits are durable and its lock is gone.
    with SqliteStore(db_path, KEY) as store:
        assert [store.get_value(f"k{i}") for i in range(20)] == [str(i).encode() for i in range(20)]


def test_store_is_usable_from_another_thread(db_path: Path) -> None:
    import threading

    store = SqliteStore(db_path, KEY)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            store.save_changes(Changes(account=account(), tracked_users={ALICE: True}))
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert errors == []
    assert store.get_tracked_users() == {ALICE: True}
    assert store.get_timeline_event(ROOM, EventId("$none")) is None
    store.close()


def test_passphrase_and_key_reprs_hide_secrets() -> None:
    assert "hunter2" not in repr(Passphrase("hunter2"))
    assert bytes(range(32)).hex() not in repr(RawKey(bytes(range(32))))
    assert str(bytes(range(32))) not in repr(RawKey(bytes(range(32))))


def test_remembered_lookup_hashes_equal_fresh_ones_and_keep_types_apart() -> None:
    from messa.store.cipher import _RECENT_LOOKUPS, StoreCipher

    key = os.urandom(32)
    warm, cold = StoreCipher(key), StoreCipher(key)
    first = warm.lookup("inbound_group_sessions", "!room", "session")
    again = warm.lookup("inbound_group_sessions", "!room", "session")
    assert first == again == cold.lookup("inbound_group_sessions", "!room", "session")
    # Same values under another domain, or split differently, hash differently.
    assert warm.lookup("devices", "!room", "session") != first
    assert warm.lookup("inbound_group_sessions", "!roomsession") != first
    # 1, "1" and True stay three different keys, in either order.
    ints = [warm.lookup("kv", "1"), warm.lookup("kv", 1), warm.lookup("kv", True)]
    assert len(set(ints)) == 3
    assert ints == [cold.lookup("kv", "1"), cold.lookup("kv", 1), cold.lookup("kv", True)]
    # Past its bound the memory is dropped, and answers stay the same.
    for i in range(_RECENT_LOOKUPS + 10):
        warm.lookup("rooms", f"!r{i}")
    assert warm.lookup("inbound_group_sessions", "!room", "session") == first
