"""Apply one :class:`~messa.store.base.Changes` to the database.

The caller holds the transaction; this module only issues the statements, in
the same order the in-memory store applies them (so later records of one
list replace earlier ones, and pending sends are added before removals).
Each table's rows are sealed first and then written with one prepared
statement.
"""

from __future__ import annotations

import sqlite3

from messa.store.base import Changes
from messa.store.cipher import Part, StoreCipher
from messa.store.sqlite.codec import encode_json, encode_record
from messa.store.sqlite.rows import ACCOUNT_KEY, sealed_row, upsert


def apply_changes(conn: sqlite3.Connection, cipher: StoreCipher, changes: Changes) -> None:
    """Write every record of ``changes``.

    Raises:
        TypeError: If a record holds a value JSON cannot represent (the
            caller's transaction must then be rolled back).
    """
    h = cipher.lookup

    def row(table: str, k: bytes, payload: bytes, *columns: Part) -> tuple[Part, ...]:
        return sealed_row(cipher, table, k, payload, columns)

    if changes.account is not None:
        account = changes.account
        upsert(conn, "account", [row("account", h("account", ACCOUNT_KEY), encode_record(account))])
    upsert(
        conn,
        "olm_sessions",
        [
            row(
                "olm_sessions",
                h("olm_sessions", s.sender_key, s.session_id),
                encode_record(s),
                h("olm_sessions/sender", s.sender_key),
            )
            for s in changes.olm_sessions
        ],
    )
    upsert(
        conn,
        "inbound_group_sessions",
        [
            row(
                "inbound_group_sessions",
                h("inbound_group_sessions", ig.room_id, ig.session_id),
                encode_record(ig),
                int(bool(ig.backed_up)),
            )
            for ig in changes.inbound_group_sessions
        ],
    )
    upsert(
        conn,
        "outbound_group_sessions",
        [
            row(
                "outbound_group_sessions",
                h("outbound_group_sessions", og.room_id),
                encode_record(og),
            )
            for og in changes.outbound_group_sessions
        ],
    )
    upsert(
        conn,
        "devices",
        [
            row(
                "devices",
                h("devices", d.user_id, d.device_id),
                encode_record(d),
                h("devices/user", d.user_id),
            )
            for d in changes.devices
        ],
    )
    upsert(
        conn,
        "tracked_users",
        [
            row("tracked_users", h("tracked_users", user), encode_json([user, bool(dirty)]))
            for user, dirty in changes.tracked_users.items()
        ],
    )
    # First writer wins: a replayed index must never overwrite the event id
    # first seen there.
    upsert(
        conn,
        "megolm_indices",
        [
            row("megolm_indices", h("megolm_indices", mi.session_id, mi.index), encode_record(mi))
            for mi in changes.megolm_indices
        ],
        keep_existing=True,
    )
    upsert(
        conn,
        "withheld",
        [
            row("withheld", h("withheld", w.room_id, w.session_id), encode_record(w))
            for w in changes.withheld
        ],
    )
    upsert(
        conn,
        "rooms",
        [row("rooms", h("rooms", r.room_id), encode_record(r)) for r in changes.rooms],
    )
    room_hashes: dict[str, bytes] = {}
    timeline: list[tuple[Part, ...]] = []
    for t in changes.timeline:
        room = room_hashes.get(t.room_id)
        if room is None:
            room = room_hashes[t.room_id] = h("timeline/room", t.room_id)
        # The session hash is kept only while the event waits for its key, so
        # decrypted events do not reveal which session they belong to.
        waiting = None if t.session_id is None else h("timeline/waiting", t.session_id)
        timeline.append(
            row(
                "timeline",
                h("timeline", t.room_id, t.event_id),
                encode_record(t),
                room,
                t.position,
                waiting,
            )
        )
    upsert(conn, "timeline", timeline)
    upsert(
        conn,
        "pending_sends",
        [
            row("pending_sends", h("pending_sends", p.txn_id), encode_record(p), p.created_ms)
            for p in changes.pending_sends
        ],
    )
    if changes.removed_pending_sends:
        conn.executemany(
            "DELETE FROM pending_sends WHERE k = ?",
            [(h("pending_sends", txn_id),) for txn_id in changes.removed_pending_sends],
        )
    kv: list[tuple[Part, ...]] = []
    for key, value in changes.values.items():
        k = h("kv", key)
        if value is None:
            conn.execute("DELETE FROM kv WHERE k = ?", (k,))
        else:
            if not isinstance(value, bytes | bytearray):
                raise TypeError(
                    f"value for a key-value entry must be bytes, not {type(value).__name__}"
                )
            kv.append(row("kv", k, bytes(value)))
    upsert(conn, "kv", kv)
