"""Schema migrations and golden store files (a format change must fail here)."""

from __future__ import annotations

import gzip
import json
import sqlite3
from pathlib import Path

import pytest
from make_golden_store import DATA, FIXTURES, golden_changes
from store_records import KEY, Universe, account, pending, read_all, room

from messa.errors import StoreCorruptError, StoreError
from messa.store import Changes, MemoryStore, SqliteStore
from messa.store.sqlite import schema
from messa.store.sqlite.opening import sqlite_errors
from messa.types.ids import RoomId, UserId

GOLDEN_UNIVERSE = Universe(
    sender_keys={"curveBob", "curveX"},
    group_sessions={
        ("!golden:example.org", "megolm-1"),
        ("!golden:example.org", "megolm-2"),
        ("!golden:example.org", "megolm-3"),
    },
    rooms={"!golden:example.org", "!other:example.org"},
    users={"@alice:example.org", "@bob:example.org"},
    indices={("megolm-1", 0), ("megolm-1", 1)},
    events={("!golden:example.org", "$first"), ("!golden:example.org", "$utd")},
    session_ids={"megolm-1", "megolm-9"},
    value_keys={"sync_token", "bytes", "none"},
    positions={1, 2, 3},
)


def user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()


def unpack(name: str, tmp_path: Path) -> Path:
    path = tmp_path / f"{name}.sqlite3"
    path.write_bytes(gzip.decompress((DATA / f"{name}.sqlite3.gz").read_bytes()))
    return path


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_golden_store_opens_and_reads(name: str, tmp_path: Path) -> None:
    version, source = FIXTURES[name]
    path = unpack(name, tmp_path)
    assert user_version(path) == version
    expected_store = MemoryStore()
    expected_store.save_changes(golden_changes(version))
    expected = read_all(expected_store, GOLDEN_UNIVERSE)
    pickle_keys = json.loads((DATA / "golden_stores.json").read_text())

    with SqliteStore(path, source, create=False) as store:
        assert read_all(store, GOLDEN_UNIVERSE) == expected
        assert store.pickle_key.hex() == pickle_keys[name]
        # Still writable after the upgrade, including what the new schema added.
        store.save_changes(Changes(pending_sends=[pending("after-upgrade", 99)]))
        assert store.get_pending_sends()[-1].txn_id == "after-upgrade"
    assert user_version(path) == schema.latest_version()


def test_golden_v1_really_is_v1(tmp_path: Path) -> None:
    path = unpack("golden_v1_rawkey", tmp_path)
    assert "pending_sends" not in tables(path)
    assert "timeline" in tables(path)


def test_fresh_v1_store_migrates_with_data_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "store.sqlite3"
    with monkeypatch.context() as m:
        m.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:1])
        with SqliteStore(path, KEY) as store:
            store.save_changes(Changes(account=account(), rooms=[room()], values={"a": b"1"}))
    assert user_version(path) == 1
    assert "pending_sends" not in tables(path)

    with SqliteStore(path, KEY) as store:
        assert store.load_account() == account()
        assert store.get_rooms() == [room()]
        assert store.get_value("a") == b"1"
        store.save_changes(Changes(pending_sends=[pending("t1", 1)]))
        assert [p.txn_id for p in store.get_pending_sends()] == ["t1"]
    assert user_version(path) == 2
    assert "pending_sends" in tables(path)


def test_failed_migration_leaves_the_old_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "store.sqlite3"
    with SqliteStore(path, KEY) as store:
        store.save_changes(Changes(rooms=[room()]))

    def broken(conn: sqlite3.Connection, cipher: object) -> None:
        conn.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("migration bug")

    with monkeypatch.context() as m:
        m.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, broken])
        with pytest.raises(RuntimeError, match="migration bug"):
            SqliteStore(path, KEY)
    assert user_version(path) == 2
    assert "half_done" not in tables(path)
    with SqliteStore(path, KEY) as store:  # the lock was released, data intact
        assert store.get_rooms() == [room()]


def test_migrations_are_numbered_from_one() -> None:
    assert schema.latest_version() == len(schema.MIGRATIONS) >= 2


def test_sqlite_errors_become_store_errors() -> None:
    with pytest.raises(StoreError) as info, sqlite_errors():
        raise sqlite3.OperationalError("disk I/O error")
    assert not isinstance(info.value, StoreCorruptError)
    with pytest.raises(StoreCorruptError), sqlite_errors():
        raise sqlite3.DatabaseError("database disk image is malformed")


def test_reads_use_indexes(tmp_path: Path) -> None:
    """The lookups the client does often are index searches, never table scans."""
    store = SqliteStore(tmp_path / "store.sqlite3", KEY)
    statements: list[str] = []
    conn = store._conn  # the one place a test looks inside: to see the SQL run
    assert conn is not None
    conn.set_trace_callback(statements.append)
    store.get_waiting_events(RoomId("!r:x"), "s1")
    store.get_timeline(RoomId("!r:x"), before_position=5)
    store.get_olm_sessions("curve")
    store.get_devices(UserId("@u:x"))
    list(store.iter_inbound_group_sessions(only_not_backed_up=True))
    conn.set_trace_callback(None)
    expected = [
        "USING INDEX timeline_waiting",
        "USING INDEX timeline_order",
        "USING INDEX olm_sessions_sender",
        "USING INDEX devices_user",
        "USING INDEX inbound_group_sessions_backup",
    ]
    selects = [s for s in statements if s.startswith("SELECT")]
    assert len(selects) == len(expected)
    for sql, index in zip(selects, expected, strict=True):
        plan = " ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql))
        assert index in plan, (sql, plan)
        assert "SCAN" not in plan, (sql, plan)
    store.close()
