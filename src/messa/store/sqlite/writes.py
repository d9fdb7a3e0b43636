"""Apply one :class:`~messa.store.base.Changes` to the database.

The caller holds the transaction; this module only issues the statements, in
the same order the in-memory store applies them (so later records of one
list replace earlier ones, and pending sends are added before removals).
"""

from __future__ import annotations

import sqlite3

from messa.store.base import Changes
from messa.store.cipher import StoreCipher
from messa.store.sqlite.codec import encode_json, encode_record
from messa.store.sqlite.rows import ACCOUNT_KEY, upsert


def apply_changes(conn: sqlite3.Connection, cipher: StoreCipher, changes: Changes) -> None:
    """Write every record of ``changes``.

    Raises:
        TypeError: If a record holds a value JSON cannot represent (the
            caller's transaction must then be rolled back).
    """
    h = cipher.lookup
    if changes.account is not None:
        upsert(conn, cipher, "account", h("account", ACCOUNT_KEY), encode_record(changes.account))
    for s in changes.olm_sessions:
        upsert(
            conn,
            cipher,
            "olm_sessions",
            h("olm_sessions", s.sender_key, s.session_id),
            encode_record(s),
            (h("olm_sessions/sender", s.sender_key),),
        )
    for ig in changes.inbound_group_sessions:
        upsert(
            conn,
            cipher,
            "inbound_group_sessions",
            h("inbound_group_sessions", ig.room_id, ig.session_id),
            encode_record(ig),
            (int(bool(ig.backed_up)),),
        )
    for og in changes.outbound_group_sessions:
        upsert(
            conn,
            cipher,
            "outbound_group_sessions",
            h("outbound_group_sessions", og.room_id),
            encode_record(og),
        )
    for d in changes.devices:
        upsert(
            conn,
            cipher,
            "devices",
            h("devices", d.user_id, d.device_id),
            encode_record(d),
            (h("devices/user", d.user_id),),
        )
    for user, dirty in changes.tracked_users.items():
        upsert(
            conn,
            cipher,
            "tracked_users",
            h("tracked_users", user),
            encode_json([user, bool(dirty)]),
        )
    for mi in changes.megolm_indices:
        # First writer wins: a replayed index must never overwrite the
        # event id first seen there.
        upsert(
            conn,
            cipher,
            "megolm_indices",
            h("megolm_indices", mi.session_id, mi.index),
            encode_record(mi),
            keep_existing=True,
        )
    for w in changes.withheld:
        upsert(conn, cipher, "withheld", h("withheld", w.room_id, w.session_id), encode_record(w))
    for r in changes.rooms:
        upsert(conn, cipher, "rooms", h("rooms", r.room_id), encode_record(r))
    for t in changes.timeline:
        # The session hash is kept only while the event waits for its key, so
        # decrypted events do not reveal which session they belong to.
        waiting = None if t.session_id is None else h("timeline/waiting", t.session_id)
        upsert(
            conn,
            cipher,
            "timeline",
            h("timeline", t.room_id, t.event_id),
            encode_record(t),
            (h("timeline/room", t.room_id), t.position, waiting),
        )
    for p in changes.pending_sends:
        upsert(
            conn,
            cipher,
            "pending_sends",
            h("pending_sends", p.txn_id),
            encode_record(p),
            (p.created_ms,),
        )
    for txn_id in changes.removed_pending_sends:
        conn.execute("DELETE FROM pending_sends WHERE k = ?", (h("pending_sends", txn_id),))
    for key, value in changes.values.items():
        k = h("kv", key)
        if value is None:
            conn.execute("DELETE FROM kv WHERE k = ?", (k,))
        else:
            if not isinstance(value, bytes | bytearray):
                raise TypeError(
                    f"value for a key-value entry must be bytes, not {type(value).__name__}"
                )
            upsert(conn, cipher, "kv", k, bytes(value))
