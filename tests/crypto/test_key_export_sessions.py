"""Key export entries: from the store to a file, from a file into a new device, and interop.

Imported sessions decrypt history but are never authenticated. The matrix-nio
tests check that each client reads the other's files.
"""

from __future__ import annotations

import io
import json
import os
import tracemalloc
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from messa.crypto import _vodozemac as vz
from messa.crypto.key_export import (
    ExportedSession,
    ImportResult,
    export_keys,
    export_record,
    export_store,
    import_keys,
    import_sessions,
    iter_import,
    iter_store_sessions,
    write_export,
)
from messa.crypto.key_export._format import _write_export
from messa.crypto.megolm import EncryptionSettings
from messa.errors import CryptoError, KeyExportError, UnknownAlgorithmError
from messa.store.base import Changes, InboundGroupSessionRecord
from messa.store.memory import MemoryStore
from messa.types.events import Decrypted, UnableToDecrypt, UtdReason
from messa.types.ids import Curve25519Key, DeviceId, Ed25519Key, RoomId, UserId
from messa.types.keys import OLM_ALGORITHM, Device, DeviceKeys

from .megolm_fakes import ALICE, BOB, OTHER_ROOM, ROOM, Party, World, room_event

DATA = Path(__file__).parent / "data" / "key_export"
FAST = 100_000


def golden() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / "golden.json").read_text())
    return data


def history() -> tuple[World, Party, Party, list[dict[str, Any]]]:
    """Alice sends three messages in two rooms; Bob has the keys and reads them."""
    world = World()
    alice = world.party(ALICE, "ALICE1")
    bob = world.party(BOB, "BOB1")
    events = []
    for room in (ROOM, OTHER_ROOM):
        keys = alice.outbound.share_room_key(room, [BOB], EncryptionSettings())
        bob.receive(keys, alice)
        content = alice.outbound.encrypt(room, "m.room.message", {"body": f"in {room}"})
        events.append({"room_id": room, **room_event(content, alice.user)})
    return world, alice, bob, events


def decrypt(party: Party, event: dict[str, Any]) -> Decrypted | UnableToDecrypt:
    room = RoomId(event["room_id"])
    body = {k: v for k, v in event.items() if k != "room_id"}
    return party.inbound.decrypt(room, body)


# --- entries -----------------------------------------------------------------------------


def test_entries_round_trip_and_hide_the_key() -> None:
    entry = golden()["sessions"][0]
    parsed = ExportedSession.from_json(entry)
    assert parsed.to_json() == entry
    assert entry["session_key"] not in repr(parsed)
    with_history = dict(entry, shared_history=True)
    assert ExportedSession.from_json(with_history).to_json() == with_history


def test_lenient_on_optional_fields() -> None:
    entry = dict(golden()["sessions"][0])
    del entry["sender_claimed_keys"], entry["forwarding_curve25519_key_chain"]
    parsed = ExportedSession.from_json(entry)
    assert parsed.sender_claimed_ed25519 is None and parsed.forwarding_chain == ()


@pytest.mark.parametrize(
    "change",
    [
        {"room_id": None},
        {"room_id": 5},
        {"session_id": ""},
        {"session_key": ["k"]},
        {"sender_key": "x" * 70_000},
        {"sender_claimed_keys": "ed25519"},
        {"sender_claimed_keys": {"ed25519": 5}},
        {"forwarding_curve25519_key_chain": "key"},
        {"forwarding_curve25519_key_chain": [1]},
        {"shared_history": "yes"},
    ],
)
def test_malformed_entries(change: dict[str, Any]) -> None:
    entry = dict(golden()["sessions"][0], **change)
    with pytest.raises(KeyExportError):
        ExportedSession.from_json(entry)


def test_other_algorithms_and_non_objects() -> None:
    with pytest.raises(UnknownAlgorithmError):
        ExportedSession.from_json(dict(golden()["sessions"][0], algorithm="m.megolm.v2"))
    with pytest.raises(KeyExportError):
        ExportedSession.from_json(["not", "an", "object"])


# --- golden file into a device ---------------------------------------------------------------


def sender_device(sender: dict[str, str]) -> Device:
    keys = DeviceKeys(
        user_id=UserId(sender["user_id"]),
        device_id=DeviceId(sender["device_id"]),
        algorithms=(OLM_ALGORITHM,),
        curve25519=Curve25519Key(sender["curve25519"]),
        ed25519=Ed25519Key(sender["ed25519"]),
        display_name=None,
        raw={},
    )
    return Device(keys=keys)


def test_golden_file_decrypts_history_on_a_new_device() -> None:
    g = golden()
    world = World()
    world.directory.add(sender_device(g["sender"]))
    bob = world.party(BOB, "BOB1")
    for event in g["events"]:
        assert decrypt(bob, {"room_id": event["room_id"], **event["event"]}).reason is (
            UtdReason.MISSING_SESSION
        )
    with (DATA / "golden.txt").open() as source:
        result = import_sessions(bob.inbound, bob.ctx, iter_import(source, g["passphrase"]))
    assert result == ImportResult(total=3, imported=3, invalid=0)
    for event in g["events"]:
        decrypted = decrypt(bob, {"room_id": event["room_id"], **event["event"]})
        assert isinstance(decrypted, Decrypted)
        assert decrypted.content == {"body": event["body"]}
        assert decrypted.info.authenticated is False  # a file proves nothing
        record = bob.store.get_inbound_group_session(event["room_id"], decrypted.info.session_id)
        assert record is not None and record.source == "import" and not record.authenticated


# --- store to file to another device ---------------------------------------------------------


def test_export_from_the_store_and_import_on_a_new_device() -> None:
    world, alice, bob, events = history()
    out = io.StringIO()
    result = export_store(bob.store, out, "move my keys", rounds=FAST)
    assert (result.exported, result.skipped) == (2, 0)
    entries = import_keys(out.getvalue(), "move my keys")
    assert {e["room_id"] for e in entries} == {ROOM, OTHER_ROOM}
    assert all(e["sender_key"] == alice.device.curve25519 for e in entries)
    assert all(e["sender_claimed_keys"] == {"ed25519": alice.device.ed25519} for e in entries)

    bob2 = world.party(BOB, "BOB2")
    progress: list[int] = []
    imported = import_sessions(
        bob2.inbound, bob2.ctx, entries, batch_size=1, progress=lambda r: progress.append(r.total)
    )
    assert imported == ImportResult(total=2, imported=2, invalid=0)
    assert progress == [1, 2]
    for event in events:
        decrypted = decrypt(bob2, event)
        assert isinstance(decrypted, Decrypted)
        assert decrypted.content == {"body": f"in {event['room_id']}"}
        assert decrypted.info.authenticated is False
        assert decrypted.info.sender_device_id == "ALICE1"
    # Importing again adds nothing; the originals on Bob's first device stay authenticated.
    assert import_sessions(bob2.inbound, bob2.ctx, entries).imported == 0
    assert import_sessions(bob.inbound, bob.ctx, entries).imported == 0
    for event in events:
        decrypted = decrypt(bob, event)
        assert isinstance(decrypted, Decrypted) and decrypted.info.authenticated is True


def test_export_of_one_room() -> None:
    _, _, bob, _ = history()
    out = io.StringIO()
    assert export_store(bob.store, out, "p", rounds=FAST, room_id=OTHER_ROOM).exported == 1
    (entry,) = import_keys(out.getvalue(), "p")
    assert entry["room_id"] == OTHER_ROOM


def test_unreadable_stored_sessions_are_skipped() -> None:
    _, _, bob, _ = history()
    record = next(bob.store.iter_inbound_group_sessions())
    broken = replace(record, room_id=RoomId("!broken:example.org"), pickle="garbage")
    bob.store.save_changes(Changes(inbound_group_sessions=[broken]))
    with pytest.raises(CryptoError):
        export_record(broken, bob.store.pickle_key)
    out = io.StringIO()
    result = export_store(bob.store, out, "p", rounds=FAST)
    assert (result.exported, result.skipped) == (2, 1)
    assert len(import_keys(out.getvalue(), "p")) == 2


def test_export_streams_one_session_at_a_time() -> None:
    """The store iterator is consumed lazily, as the file is written."""
    _, _, bob, _ = history()
    seen: list[int] = []
    writes: list[int] = []
    entries = iter_store_sessions(bob.store)

    def tracking() -> Any:
        for entry in entries:
            seen.append(len(writes))
            yield entry

    out = io.StringIO()

    class Out:
        def write(self, text: str) -> int:
            writes.append(len(text))
            return out.write(text)

    write_export(Out(), tracking(), "p", rounds=FAST)  # type: ignore[arg-type]
    assert seen == sorted(seen) and len(seen) == 2
    assert seen[0] >= 1  # the header was written before the first session was read


def test_invalid_entries_are_counted_and_skipped() -> None:
    world, _, bob, events = history()
    good = list(iter_store_sessions(bob.store))
    other = vz.InboundGroupSession(vz.GroupSession().session_key)
    bad = [
        dict(good[0], session_key="not a key"),
        dict(good[0], session_id=other.session_id),  # the key is another session's
        dict(good[0], algorithm="m.olm.v1.curve25519-aes-sha2"),
        dict(good[0], room_id="not a room"),
        "not an object",
    ]
    bob2 = world.party(BOB, "BOB2")
    result = import_sessions(bob2.inbound, bob2.ctx, bad + good)
    assert result == ImportResult(total=7, imported=2, invalid=5)
    assert all(isinstance(decrypt(bob2, e), Decrypted) for e in events)


def test_a_broken_file_stops_the_import_but_keeps_whole_batches() -> None:
    world, _, bob, _ = history()
    text = export_keys(list(iter_store_sessions(bob.store)), "p", rounds=FAST)
    lines = text.splitlines()
    bob2 = world.party(BOB, "BOB2")
    with pytest.raises(KeyExportError):
        import_sessions(bob2.inbound, bob2.ctx, iter_import(io.StringIO(lines[0]), "p"))
    assert bob2.store.count_inbound_group_sessions() == 0


# --- matrix-nio interop ------------------------------------------------------------------------


def test_nio_reads_our_file(tmp_path: Path) -> None:
    nio_olm = pytest.importorskip("nio.crypto.olm_machine")
    _, _, bob, _ = history()
    path = tmp_path / "messa-keys.txt"
    with path.open("w") as out:
        # Our writer with few rounds: nio derives keys in pure Python, 100k
        # rounds would take it seconds. The format does not depend on them.
        _write_export(
            out.write, iter_store_sessions(bob.store), "interop", 1000, os.urandom(16), bytes(16)
        )
    sessions = nio_olm.Olm.import_keys_static(str(path), "interop")
    ours = {r.session_id: r for r in bob.store.iter_inbound_group_sessions()}
    assert {s.id for s in sessions} == set(ours)
    for session in sessions:
        record = ours[session.id]
        assert (session.room_id, session.sender_key) == (record.room_id, record.sender_key)
        assert session.ed25519 == record.signing_key
    with pytest.raises(nio_olm.EncryptionError):
        nio_olm.Olm.import_keys_static(str(path), "wrong")


def test_we_read_nios_file(tmp_path: Path) -> None:
    nio_olm = pytest.importorskip("nio.crypto.olm_machine")
    nio_crypto = pytest.importorskip("nio.crypto")
    world, _, bob, events = history()
    entries = list(iter_store_sessions(bob.store))
    nio_sessions = [
        nio_crypto.InboundGroupSession.import_session(
            e["session_key"],
            e["sender_claimed_keys"]["ed25519"],
            e["sender_key"],
            e["room_id"],
            e["forwarding_curve25519_key_chain"],
        )
        for e in entries
    ]
    path = tmp_path / "nio-keys.txt"
    nio_olm.Olm.export_keys_static(nio_sessions, str(path), "interop", 10_000)
    bob2 = world.party(BOB, "BOB2")
    with path.open() as source:
        result = import_sessions(bob2.inbound, bob2.ctx, iter_import(source, "interop"))
    assert result == ImportResult(total=2, imported=2, invalid=0)
    for event in events:
        decrypted = decrypt(bob2, event)
        assert isinstance(decrypted, Decrypted) and decrypted.info.authenticated is False


def store_with_sessions(count: int) -> MemoryStore:
    store = MemoryStore()
    records = []
    for _ in range(count):
        session = vz.InboundGroupSession(vz.GroupSession().session_key)
        records.append(
            InboundGroupSessionRecord(
                room_id=ROOM,
                session_id=session.session_id,
                sender_key="c" * 43,
                signing_key="e" * 43,
                sender_user=None,
                pickle=session.pickle(store.pickle_key),
                first_known_index=0,
                authenticated=True,
                source="room_key",
            )
        )
    store.save_changes(Changes(inbound_group_sessions=records))
    return store


def test_export_memory_stays_flat_as_the_count_grows() -> None:
    class Sink:
        written = 0

        def write(self, text: str) -> int:
            self.written += len(text)
            return len(text)

    peaks, sizes = [], []
    for count in (100, 2000):
        store = store_with_sessions(count)
        sink = Sink()
        tracemalloc.start()
        try:
            export_store(store, sink, "p", rounds=FAST)  # type: ignore[arg-type]
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        sizes.append(sink.written)
    assert sizes[1] > 15 * sizes[0]
    # Twenty times the sessions: the peak grows by far less than one more
    # copy of the output (about 1.4 MB here) would need.
    assert peaks[1] - peaks[0] < 200_000
