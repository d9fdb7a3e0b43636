"""The stored form of inbound Megolm sessions: the exported key, and older pickles still read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from messa.crypto import _vodozemac as vz
from messa.crypto.context import CryptoContext
from messa.crypto.key_export.sessions import export_record
from messa.crypto.megolm import InboundGroupSessions
from messa.crypto.megolm.state import dump_session, exported_key, load_session
from messa.errors import CryptoError
from messa.store.base import Changes, InboundGroupSessionRecord
from messa.store.memory import MemoryStore
from messa.types.ids import DeviceId, RoomId

from .megolm_fakes import ALICE, FakeDevices

DATA = Path(__file__).parent / "data"
ROOM = RoomId("!state:localhost")


def golden() -> dict[str, Any]:
    """A vodozemac pickle as older versions stored it, with what it must still decrypt."""
    data: dict[str, Any] = json.loads((DATA / "megolm_state_v0_pickle.json").read_text())
    return data


def test_dump_is_the_exported_key_and_loads_back() -> None:
    outbound = vz.GroupSession()
    for _ in range(2):
        outbound.encrypt(b"earlier")
    session = vz.InboundGroupSession(outbound.session_key)
    state = dump_session(session)
    exported = session.export_at(session.first_known_index)
    assert exported is not None
    assert state == "k1:" + exported.to_base64()

    loaded = load_session(state, b"\0" * 32)  # the pickle key plays no part
    assert loaded.session_id == session.session_id
    assert loaded.first_known_index == 2
    message = loaded.decrypt(outbound.encrypt(b"after reload"))
    assert message.plaintext == b"after reload"
    assert message.message_index == 2
    assert exported_key(state, b"\0" * 32) == exported.to_base64()


def test_an_older_pickle_still_loads_and_decrypts() -> None:
    data = golden()
    key = bytes.fromhex(data["pickle_key_hex"])
    session = load_session(data["pickle"], key)
    assert session.session_id == data["session_id"]
    assert session.first_known_index == data["first_known_index"]
    message = session.decrypt(vz.MegolmMessage.from_base64(data["ciphertext"]))
    assert message.plaintext.decode() == data["plaintext"]
    assert message.message_index == data["message_index"]
    assert exported_key(data["pickle"], key) == data["exported"]


@pytest.mark.parametrize(
    "state",
    ["k1:", "k1:not base64!", "k1:" + "A" * 300, "garbage", "", "k2:AAAA"],
)
def test_unreadable_states_are_crypto_errors(state: str) -> None:
    with pytest.raises(CryptoError, match="unreadable"):
        load_session(state, b"\1" * 32)
    with pytest.raises(CryptoError):
        exported_key(state, b"\1" * 32)


def test_an_older_pickle_with_the_wrong_key_is_a_crypto_error() -> None:
    with pytest.raises(CryptoError, match="unreadable"):
        load_session(golden()["pickle"], b"\2" * 32)


def old_record(data: dict[str, Any]) -> InboundGroupSessionRecord:
    return InboundGroupSessionRecord(
        room_id=ROOM,
        session_id=data["session_id"],
        sender_key="curve",
        signing_key="ed",
        sender_user=None,
        pickle=data["pickle"],
        first_known_index=data["first_known_index"],
        authenticated=False,
        source="import",
    )


def test_a_store_written_before_the_new_form_keeps_working() -> None:
    data = golden()
    store = MemoryStore(pickle_key=bytes.fromhex(data["pickle_key_hex"]))
    store.save_changes(Changes(inbound_group_sessions=[old_record(data)]))
    ctx = CryptoContext(ALICE, DeviceId("STATEDEV"), store)
    inbound = InboundGroupSessions(ctx, FakeDevices())

    assert inbound.export_session(ROOM, data["session_id"]) == data["exported"]
    assert export_record(old_record(data), store.pickle_key).session_key == data["exported"]

    # The same copy again is recognised as the session we hold: nothing is rewritten.
    same = inbound.prepare_import(
        ROOM, data["exported"], session_id=data["session_id"], sender_key="curve"
    )
    assert inbound.store_sessions([same]) == [None]
    stored = store.get_inbound_group_session(ROOM, data["session_id"])
    assert stored is not None and stored.pickle == data["pickle"]


def test_new_sessions_are_stored_in_the_exported_form() -> None:
    store = MemoryStore()
    ctx = CryptoContext(ALICE, DeviceId("STATEDEV"), store)
    inbound = InboundGroupSessions(ctx, FakeDevices())
    outbound = vz.GroupSession()
    exported = vz.InboundGroupSession(outbound.session_key).export_at(0)
    assert exported is not None
    prepared = inbound.prepare_import(
        ROOM, exported.to_base64(), session_id=outbound.session_id, sender_key="curve"
    )
    assert inbound.store_sessions([prepared]) != [None]
    stored = store.get_inbound_group_session(ROOM, outbound.session_id)
    assert stored is not None
    assert stored.pickle == "k1:" + exported.to_base64()

    # A fresh engine on the same store reads it back and decrypts with it.
    again = InboundGroupSessions(CryptoContext(ALICE, DeviceId("STATEDEV"), store), FakeDevices())
    assert again.export_session(ROOM, outbound.session_id) == exported.to_base64()


def test_a_better_copy_of_an_older_record_is_written_in_the_new_form() -> None:
    store = MemoryStore()
    outbound = vz.GroupSession()
    first = vz.InboundGroupSession(outbound.session_key)
    later = first.export_at(2)
    assert later is not None
    old = vz.InboundGroupSession.import_session(later)
    record = InboundGroupSessionRecord(
        room_id=ROOM,
        session_id=outbound.session_id,
        sender_key="curve",
        signing_key="",
        sender_user=None,
        pickle=old.pickle(store.pickle_key),
        first_known_index=2,
        authenticated=False,
        source="import",
    )
    store.save_changes(Changes(inbound_group_sessions=[record]))
    inbound = InboundGroupSessions(CryptoContext(ALICE, DeviceId("STATEDEV"), store), FakeDevices())

    exported = first.export_at(0)
    assert exported is not None
    better = inbound.prepare_import(
        ROOM, exported.to_base64(), session_id=outbound.session_id, sender_key="curve"
    )
    assert inbound.store_sessions([better]) != [None]
    stored = store.get_inbound_group_session(ROOM, outbound.session_id)
    assert stored is not None
    assert stored.first_known_index == 0
    assert stored.pickle == "k1:" + exported.to_base64()
