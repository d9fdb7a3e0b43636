"""Shared fakes for the key-backup tests (this module holds no tests).

* :class:`BackupDevice`: one device's Megolm side (from ``megolm_fakes``), a
  real :class:`~messa.crypto.account.AccountMachine` and a
  :class:`~messa.crypto.backup.BackupMachine` on the same store.
* :class:`FakeBackupServer`: the ``/room_keys`` API in memory, with the
  spec's rule for which copy of a key the server keeps, served through
  ``httpx.MockTransport`` so that every request the client makes is logged.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx

from messa.crypto import _vodozemac as vz
from messa.crypto.account import AccountMachine
from messa.crypto.backup import BACKUP_ALGORITHM, BackupMachine
from messa.crypto.interfaces import DecryptedOlmEvent
from messa.crypto.megolm.inbound import RoomKeyInfo
from messa.types.ids import Curve25519Key, DeviceId, Ed25519Key, RoomId, UserId
from messa.types.keys import MEGOLM_ALGORITHM, OLM_ALGORITHM, Device, DeviceKeys, LocalTrust

from .megolm_fakes import ROOM, Party, World, room_event


class BackupDevice:
    """One device: Megolm sessions, an Olm account and a backup machine."""

    def __init__(self, world: World, user: UserId, device_id: str, **kwargs: Any) -> None:
        self.world = world
        self.party: Party = world.party(user, device_id, **kwargs)
        self.account = AccountMachine(self.party.ctx)
        self.backup = BackupMachine(
            self.party.ctx, self.account, self.party.inbound, devices=world.directory
        )

    @property
    def store(self) -> Any:
        return self.party.store

    @property
    def inbound(self) -> Any:
        return self.party.inbound


def receive_group_session(
    receiver: Party, sender: Party, room: RoomId = ROOM, *, advance: int = 0
) -> tuple[vz.GroupSession, RoomKeyInfo]:
    """A new Megolm session of ``sender``, delivered to ``receiver`` as over Olm."""
    group = vz.GroupSession()
    for _ in range(advance):
        group.encrypt(b"skip")
    event = DecryptedOlmEvent(
        sender=sender.user,
        sender_curve25519=sender.device.curve25519,
        sender_ed25519=sender.device.ed25519,
        sender_device=sender.device,
        event_type="m.room_key",
        content={
            "algorithm": MEGOLM_ALGORITHM,
            "room_id": room,
            "session_id": group.session_id,
            "session_key": group.session_key.to_base64(),
        },
    )
    info = receiver.inbound.add_room_key(event)
    assert info is not None
    return group, info


def encrypted_event(
    group: vz.GroupSession, sender: Party, body: str, room: RoomId = ROOM
) -> dict[str, Any]:
    """A room event encrypted with ``group`` (as ``sender``'s device would send it)."""
    payload = {"type": "m.room.message", "content": {"body": body}, "room_id": room}
    ciphertext = group.encrypt(json.dumps(payload).encode())
    content = {
        "algorithm": MEGOLM_ALGORITHM,
        "sender_key": sender.device.curve25519,
        "device_id": sender.device.device_id,
        "session_id": group.session_id,
        "ciphertext": ciphertext.to_base64(),
    }
    return room_event(content, sender.user)


def signing_device(
    world: World, user: UserId, device_id: str, *, trust: LocalTrust = LocalTrust.UNSET
) -> tuple[vz.Account, Device]:
    """Another device of ``user`` with a real Ed25519 key, registered in the directory."""
    account = vz.Account()
    keys = DeviceKeys(
        user_id=user,
        device_id=DeviceId(device_id),
        algorithms=(OLM_ALGORITHM, MEGOLM_ALGORITHM),
        curve25519=Curve25519Key(account.curve25519_key.to_base64()),
        ed25519=Ed25519Key(account.ed25519_key.to_base64()),
        display_name=None,
        raw={},
    )
    device = Device(keys=keys, local_trust=trust)
    world.directory.add(device)
    return account, device


@dataclass
class _Version:
    algorithm: str
    auth_data: dict[str, Any]
    rooms: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    etag: int = 0

    def count(self) -> int:
        return sum(len(s) for s in self.rooms.values())


def _better(new: dict[str, Any], old: dict[str, Any]) -> bool:
    """The spec's rule: verified first, then lower first index, then fewer forwards."""
    if new["is_verified"] != old["is_verified"]:
        return bool(new["is_verified"])
    if new["first_message_index"] != old["first_message_index"]:
        return bool(new["first_message_index"] < old["first_message_index"])
    return bool(new["forwarded_count"] < old["forwarded_count"])


class FakeBackupServer:
    """The ``/room_keys`` endpoints in memory. ``log`` records ``(method, path?query)``."""

    def __init__(self) -> None:
        self.versions: dict[str, _Version] = {}
        self.current: str | None = None
        self.log: list[tuple[str, str]] = []
        self.refuse_writes = False  # answer every key upload with "wrong version"
        self._next = 1

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def add_version(self, auth_data: dict[str, Any], algorithm: str = BACKUP_ALGORITHM) -> str:
        """Create a version directly (as a malicious server would)."""
        version = str(self._next)
        self._next += 1
        self.versions[version] = _Version(algorithm, auth_data)
        self.current = version
        return version

    def puts(self) -> list[tuple[str, str]]:
        """Every request that wrote keys."""
        return [(m, p) for m, p in self.log if m == "PUT" and "/room_keys/keys" in p]

    def _info(self, version: str) -> dict[str, Any]:
        v = self.versions[version]
        return {
            "algorithm": v.algorithm,
            "auth_data": v.auth_data,
            "version": version,
            "count": v.count(),
            "etag": str(v.etag),
        }

    def handle(self, request: httpx.Request) -> httpx.Response:
        raw_path = request.url.raw_path.decode("ascii")
        self.log.append((request.method, raw_path))
        body = json.loads(request.content) if request.content else None
        # Split the still-encoded path: ids may contain "/" (as %2F).
        tail = raw_path.split("?", 1)[0].split("/_matrix/client/v3/room_keys/", 1)[1]
        if tail == "version":
            if request.method == "POST":
                return httpx.Response(200, json={"version": self.add_version(body["auth_data"])})
            if self.current is None:
                return _not_found()
            return httpx.Response(200, json=self._info(self.current))
        match = re.fullmatch(r"version/([^/]+)", tail)
        if match:
            version = unquote(match.group(1))
            if version not in self.versions:
                return _not_found()
            if request.method == "DELETE":
                del self.versions[version]
                self.current = max(self.versions, default=None)
                return httpx.Response(200, json={})
            return httpx.Response(200, json=self._info(version))
        version = request.url.params.get("version", "")
        if version not in self.versions:
            return _not_found()
        parts = [unquote(p) for p in tail.split("/")[1:]]
        return self._keys(request.method, version, parts, body)

    def _keys(self, method: str, version: str, parts: list[str], body: Any) -> httpx.Response:
        v = self.versions[version]
        if method == "PUT":
            if version != self.current or self.refuse_writes:
                return httpx.Response(
                    403,
                    json={
                        "errcode": "M_WRONG_ROOM_KEYS_VERSION",
                        "error": "Wrong backup version.",
                        "current_version": self.current,
                    },
                )
            for room_id, room in body["rooms"].items():
                stored = v.rooms.setdefault(room_id, {})
                for session_id, data in room["sessions"].items():
                    old = stored.get(session_id)
                    if old is None or _better(data, old):
                        stored[session_id] = data
            v.etag += 1
            return httpx.Response(200, json={"count": v.count(), "etag": str(v.etag)})
        if not parts:
            return httpx.Response(
                200, json={"rooms": {r: {"sessions": s} for r, s in v.rooms.items()}}
            )
        sessions = v.rooms.get(parts[0], {})
        if len(parts) == 1:
            return httpx.Response(200, json={"sessions": sessions})
        if parts[1] not in sessions:
            return _not_found()
        return httpx.Response(200, json=sessions[parts[1]])


def _not_found() -> httpx.Response:
    return httpx.Response(404, json={"errcode": "M_NOT_FOUND", "error": "Unknown backup version"})
