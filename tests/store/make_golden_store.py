"""Write the golden store files in tests/store/data/ (run by hand, then commit).

    python tests/store/make_golden_store.py

The files are store files as this code writes them, at each schema version,
holding :func:`golden_changes`. ``test_store_golden.py`` opens them with the
current code: any change to the file format (key wrapping, key derivation,
sealing, row layout) that old files do not survive fails that test. Only
regenerate them together with a migration that reads the old format.
The files are gzipped (mostly empty pages) to keep the repository small.
"""

from __future__ import annotations

import gzip
import json
import shutil
import sys
import tempfile
from pathlib import Path

from messa.store import Changes, KdfParams, Passphrase, RawKey, SqliteStore, StoreKeySource
from messa.store.base import (
    AccountRecord,
    DeviceRecord,
    InboundGroupSessionRecord,
    MegolmIndexRecord,
    OlmSessionRecord,
    OutboundGroupSessionRecord,
    PendingSendRecord,
    RoomRecord,
    TimelineRecord,
    WithheldRecord,
)
from messa.store.sqlite import schema
from messa.types.ids import DeviceId, EventId, RoomId, UserId

DATA = Path(__file__).parent / "data"
GOLDEN_KEY = RawKey(b"messa-golden-store-key-000000000")
GOLDEN_PASSPHRASE = "golden passphrase ünïcode"
GOLDEN_PARAMS = KdfParams(time_cost=1, memory_cost_kib=64, parallelism=1)

ROOM = RoomId("!golden:example.org")
ALICE = UserId("@alice:example.org")
BOB = UserId("@bob:example.org")

# name -> (schema version, key source)
FIXTURES: dict[str, tuple[int, StoreKeySource]] = {
    "golden_v1_rawkey": (1, GOLDEN_KEY),
    "golden_v2_rawkey": (2, GOLDEN_KEY),
    "golden_v2_passphrase": (2, Passphrase(GOLDEN_PASSPHRASE, GOLDEN_PARAMS)),
}


def golden_changes(version: int) -> Changes:
    """One record of each kind (pending sends exist from schema v2 on)."""
    changes = Changes(
        account=AccountRecord(ALICE, DeviceId("GOLDENDEV"), "account-pickle", True, 42),
        olm_sessions=[OlmSessionRecord("curveBob", "olm-1", "olm-pickle", 1000, 2000)],
        inbound_group_sessions=[
            InboundGroupSessionRecord(
                ROOM, "megolm-1", "curveBob", "edBob", BOB, "igs-pickle", 0, True, "room_key"
            ),
            InboundGroupSessionRecord(
                ROOM,
                "megolm-2",
                "curveBob",
                "edBob",
                None,
                "igs-pickle-2",
                5,
                False,
                "forward",
                backed_up=True,
                forwarding_chain=("curveCarol",),
            ),
        ],
        outbound_group_sessions=[
            OutboundGroupSessionRecord(
                ROOM,
                "megolm-out",
                "ogs-pickle",
                3000,
                2,
                {BOB: {"BOBDEV": {"curve25519": "curveBob", "index": 0}}},
                {"rotation_period_ms": 604800000, "rotation_period_msgs": 100},
            )
        ],
        devices=[
            DeviceRecord(BOB, DeviceId("BOBDEV"), {"ed25519:BOBDEV": "edBob"}, "verified", False, 5)
        ],
        tracked_users={ALICE: False, BOB: True},
        megolm_indices=[MegolmIndexRecord(ROOM, "megolm-1", 0, EventId("$first"))],
        withheld=[WithheldRecord(ROOM, "megolm-9", "curveBob", "m.unverified", "not verified")],
        rooms=[
            RoomRecord(
                ROOM,
                "join",
                name="Golden room",
                topic="formats",
                encryption={"algorithm": "m.megolm.v1.aes-sha2"},
                members={ALICE: "join", BOB: "join"},
                display_names={BOB: "Bob"},
                prev_batch="t1",
                last_ts=99,
            )
        ],
        timeline=[
            TimelineRecord(
                ROOM,
                EventId("$first"),
                1,
                10,
                BOB,
                {"type": "m.room.message", "content": {"msgtype": "m.text", "body": "héllo 🔐"}},
                raw={"type": "m.room.encrypted"},
                encryption_info={"session_id": "megolm-1"},
            ),
            TimelineRecord(
                ROOM,
                EventId("$utd"),
                2,
                20,
                BOB,
                {"type": "m.room.encrypted"},
                utd_reason="missing key",
                session_id="megolm-9",
            ),
        ],
        values={"sync_token": b"s72594_4483_1934", "bytes": bytes(range(256))},
    )
    if version >= 2:
        changes.pending_sends = [
            PendingSendRecord(
                "txn-1", ROOM, "m.room.message", {"msgtype": "m.text", "body": "queued"}, 50
            )
        ]
    return changes


def write_fixture(name: str, version: int, source: StoreKeySource, out_dir: Path) -> str:
    """Create one golden store; return its pickle key (hex)."""
    latest = schema.MIGRATIONS
    schema.MIGRATIONS = latest[:version]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "store.sqlite3"
            with SqliteStore(path, source) as store:
                store.save_changes(golden_changes(version))
                pickle_key = store.pickle_key.hex()
            with (
                path.open("rb") as src,
                gzip.GzipFile(out_dir / f"{name}.sqlite3.gz", "wb", mtime=0) as dst,
            ):
                shutil.copyfileobj(src, dst)
    finally:
        schema.MIGRATIONS = latest
    return pickle_key


def main() -> None:
    DATA.mkdir(exist_ok=True)
    pickle_keys = {
        name: write_fixture(name, version, source, DATA)
        for name, (version, source) in FIXTURES.items()
    }
    (DATA / "golden_stores.json").write_text(json.dumps(pickle_keys, indent=2) + "\n")
    print(f"wrote {len(pickle_keys)} golden stores to {DATA}", file=sys.stderr)


if __name__ == "__main__":
    main()
