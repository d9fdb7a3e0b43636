"""Restoring N room keys from a server-side key backup, against raw ``PkDecryption``.

Setup: an embedded Synapse (testing mode) in a temporary directory, one
user in 100 rooms (``--rooms``), one backup version, and N real Megolm sessions encrypted
per ``m.megolm_backup.v1.curve25519-aes-sha2`` and uploaded in batches of
2000 (spread over the 100 rooms). The entries are generated batch by batch, never all
held at once.

Contenders, each in its own process so that memory figures are its own:

* **raw**: the crypto alone. The entries are downloaded and parsed first
  (not timed); then only ``PkDecryption.decrypt`` of every ``session_data``
  is timed (the baseline: what the restore cannot go below).
* **messa**: the whole restore a new device does, timed end to end: a
  ``MessaClient`` logs in as a new device, syncs once (so it knows its
  rooms), is given the backup key, and runs ``restore_backup``: streaming
  the keys from Synapse room by room (two answers in flight), incremental
  parsing, validation, decryption, import as unauthenticated Megolm
  sessions, atomic batches into the encrypted SQLite store, and the look-up
  of events waiting for each batch of sessions.

The Messa restore runs twice: once for time and RSS (``ru_maxrss`` growth
over the process's size before the restore), once under ``tracemalloc``
(slower; not timed). Memory is read at 10%, 50% and 100% of the entries
(10k, 50k and 100k by default) to show whether it grows with the count.

Usage::

    python bench/backup_restore.py                 # 100k sessions
    python bench/backup_restore.py --sessions 20000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from messa.crypto import _vodozemac as vz
from messa.crypto.backup import (
    BACKUP_ALGORITHM,
    BackupDecryptionKey,
    BackupEncryptor,
    RestoreProgress,
    RoomKeysParser,
)
from messa.crypto.backup.session_data import encode_session_data, key_backup_data
from messa.homeserver import EmbeddedHomeserver
from messa.matrix import MatrixApi
from messa.store import RawKey, SqliteStore
from messa.store.base import InboundGroupSessionRecord
from messa.types.ids import RoomId

UPLOAD_BATCH = 2000
CHECKPOINTS = (0.1, 0.5, 1.0)


def max_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


# --- setup: a synthetic backup on a real Synapse ---------------------------------------


def fake_key(label: str, i: int) -> str:
    return vz.b64encode((label.encode() + i.to_bytes(4, "big")).ljust(32, b"\0")[:32])


def upload_batch(
    start: int, count: int, encryptor: BackupEncryptor, room_ids: list[str]
) -> dict[str, Any]:
    """``count`` real sessions, encrypted for the backup, as a PUT body's ``rooms``."""
    rooms: dict[str, Any] = {}
    for i in range(start, start + count):
        group = vz.GroupSession()
        inbound = vz.InboundGroupSession(group.session_key)
        exported = inbound.export_at(0)
        assert exported is not None
        room = RoomId(room_ids[i % len(room_ids)])
        record = InboundGroupSessionRecord(
            room_id=room,
            session_id=group.session_id,
            sender_key=fake_key("curve", i % 500),
            signing_key=fake_key("ed", i % 500),
            sender_user=None,
            pickle="",
            first_known_index=0,
            authenticated=True,
            source="room_key",
        )
        envelope = encryptor.encrypt(encode_session_data(record, exported.to_base64()))
        sessions = rooms.setdefault(room, {"sessions": {}})["sessions"]
        sessions[group.session_id] = key_backup_data(record, envelope, is_verified=False)
    return rooms


async def build_backup(
    base_url: str, token: str, count: int, rooms_count: int = 100
) -> tuple[str, str]:
    """Create a version and upload ``count`` entries; return (version, key base64)."""
    key = BackupDecryptionKey.generate()
    encryptor = BackupEncryptor(key.public_key)
    async with MatrixApi(base_url, access_token=token, timeout_s=300) as api:
        # Real rooms the user is in, so that the new device knows them after its first sync.
        room_ids = [await api.create_room(name=f"bench {i}") for i in range(rooms_count)]
        version = await api.room_keys_create_version(
            BACKUP_ALGORITHM, {"public_key": key.public_key}
        )
        for start in range(0, count, UPLOAD_BATCH):
            n = min(UPLOAD_BATCH, count - start)
            rooms = upload_batch(start, n, encryptor, room_ids)
            update = await api.room_keys_put(version, rooms)
        assert update.count == count, update
    return version, key.to_base64()


# --- contenders -----------------------------------------------------------------------------


async def raw_worker(args: argparse.Namespace) -> dict[str, Any]:
    """Download and parse (untimed), then time PkDecryption of every entry."""
    key = BackupDecryptionKey.from_base64(args.key)
    decryption = vz.PkDecryption.from_key(vz.Curve25519SecretKey.from_base64(args.key))
    assert decryption.public_key.to_base64() == key.public_key
    parser = RoomKeysParser()
    envelopes: list[tuple[str, str, str]] = []

    first_byte: list[float] = []

    async def consume(chunk: bytes) -> None:
        if not first_byte:
            first_byte.append(time.perf_counter())
        for _, _, data in parser.feed(chunk):
            sd = data["session_data"]  # type: ignore[index]
            envelopes.append((sd["ciphertext"], sd["mac"], sd["ephemeral"]))

    async with MatrixApi(args.base_url, access_token=args.token, timeout_s=300) as api:
        asked = time.perf_counter()
        await api.room_keys_stream(args.version, consume)
    assert not parser.close()
    t0, c0 = time.perf_counter(), time.process_time()
    for ciphertext, mac, ephemeral in envelopes:
        decryption.decrypt(vz.PkMessage.from_base64(ciphertext, mac, ephemeral))
    return {
        "count": len(envelopes),
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
        "server_first_byte_seconds": first_byte[0] - asked,
    }


async def messa_worker(args: argparse.Namespace) -> dict[str, Any]:
    """A new device logs in and restores the backup into its encrypted store."""
    from messa.client import MessaClient

    traced = args.mode == "tracemalloc"
    marks = [max(1, int(args.sessions * f)) for f in CHECKPOINTS]
    memory: dict[str, int] = {}
    pending = list(marks)

    def progress(p: RestoreProgress) -> None:
        while pending and p.done >= pending[0]:
            mark = pending.pop(0)
            if traced:
                memory[str(mark)] = tracemalloc.get_traced_memory()[1]
            else:
                memory[str(mark)] = max_rss_kib()

    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "store.sqlite3", RawKey(secrets.token_bytes(32)))
        async with MessaClient(store) as client:
            localpart = args.user.split(":")[0][1:]
            await client.login(args.base_url, localpart, args.password)
            await client.sync_once()  # as a new device does first: it learns its rooms
            await client.use_backup_key(args.key)
            if traced:
                tracemalloc.start()
            before = max_rss_kib()
            t0, c0 = time.perf_counter(), time.process_time()
            imported, _ = await client.restore_backup(progress=progress, version=args.version)
            elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
            if traced:
                tracemalloc.stop()
            status = await client.backup_status()
        stored = status.local_sessions
    return {
        "count": imported,
        "errors": args.sessions - imported,
        "stored": stored,
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "rss_before_kib": before,
        "memory": memory,
    }


def run_worker(role: str, mode: str, config: dict[str, Any]) -> dict[str, Any]:
    # The token and key go through stdin, not the command line (visible in /proc).
    proc = subprocess.run(
        [sys.executable, __file__, "--role", role, "--mode", mode],
        input=json.dumps(config),
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# --- driver --------------------------------------------------------------------------------


def mib(value: float, unit: int) -> str:
    return f"{value * unit / 2**20:8.1f}"


def report(
    n: int, setup_s: float, raw: dict[str, Any], timed: dict[str, Any], mem: dict[str, Any]
) -> None:
    def rates(fig: dict[str, Any]) -> tuple[float, float]:
        return fig["count"] / fig["seconds"], fig["count"] / fig["cpu_seconds"]

    (raw_wall, raw_cpu), (m_wall, m_cpu) = rates(raw), rates(timed)
    print(f"Backup restore of {n} room keys (Synapse on loopback, encrypted SQLite store)")
    print(f"  setup (generate + upload to Synapse): {setup_s:.1f} s")
    print(f"  {'sessions/s':<34}{'wall clock':>14}{'process CPU':>14}")
    print(f"  {'raw PkDecryption.decrypt':<34}{raw_wall:>14.0f}{raw_cpu:>14.0f}")
    print(f"  {'Messa restore, end to end':<34}{m_wall:>14.0f}{m_cpu:>14.0f}")
    ratio = "ratio Messa / raw (goal >= 0.40)"
    print(f"  {ratio:<34}{m_wall / raw_wall:>14.2f}{m_cpu / raw_cpu:>14.2f}")
    print(
        f"  seconds: raw {raw['seconds']:.1f} wall / {raw['cpu_seconds']:.1f} CPU; "
        f"Messa {timed['seconds']:.1f} wall / {timed['cpu_seconds']:.1f} CPU "
        f"({timed['errors']} errors, {timed['stored']} sessions stored)"
    )
    ttfb = raw["server_first_byte_seconds"]
    print(
        f"  Synapse's time to the first byte of the whole backup as one answer: {ttfb:.2f} s "
        "(Messa asks room by room when it knows the rooms, to hide it)"
    )
    marks = list(timed["memory"])
    print(f"  memory of the Messa restore (MiB) after {', '.join(marks)} keys:")
    rss = " ".join(mib(timed["memory"][m], 1024) for m in marks)
    before = timed["rss_before_kib"] / 1024
    print(f"    process peak RSS (ru_maxrss; {before:.1f} before)  {rss}")
    heap = " ".join(mib(mem["memory"][m], 1) for m in marks)
    print(f"    tracemalloc peak (Python heap)          {heap}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--rooms", type=int, default=100, help="rooms the keys are spread over")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument("--role", choices=("raw", "messa"), help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="time", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        config = argparse.Namespace(mode=args.mode, **json.load(sys.stdin))
        worker = raw_worker if args.role == "raw" else messa_worker
        print(json.dumps(asyncio.run(worker(config))))
        return

    with tempfile.TemporaryDirectory(prefix="messa-bench-") as tmp:
        server = EmbeddedHomeserver(Path(tmp) / "hs", testing=True)
        server.start()
        try:
            user = server.register_user(f"bench{secrets.token_hex(4)}", secrets.token_urlsafe(16))
            t0 = time.perf_counter()
            version, key = asyncio.run(
                build_backup(server.base_url, user.access_token, args.sessions, args.rooms)
            )
            setup_s = time.perf_counter() - t0
            config = {
                "sessions": args.sessions,
                "base_url": server.base_url,
                "token": user.access_token,
                "password": user.password,
                "version": version,
                "key": key,
                "user": user.user_id,
            }
            raw = run_worker("raw", "time", config)
            timed = run_worker("messa", "time", config)
            mem = run_worker("messa", "tracemalloc", config)
        finally:
            server.stop()
    for result in (raw, timed, mem):
        assert result["count"] == args.sessions, result
    report(args.sessions, setup_s, raw, timed, mem)
    if args.json:
        print(json.dumps({"raw": raw, "messa": timed, "messa_tracemalloc": mem}))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
