"""Small fakes of the Olm side for Megolm tests: a device directory, an Olm
encryptor that wraps payloads in clear JSON, and a party bundling both halves
of the Megolm machinery for one device."""

from __future__ import annotations

import base64
import itertools
import json
import os
from collections.abc import Iterable
from typing import Any

from messa._clock import FakeClock
from messa.crypto.context import CryptoContext
from messa.crypto.interfaces import AllDevicesPolicy, DecryptedOlmEvent, SharingPolicy
from messa.crypto.megolm import (
    EncryptionSettings,
    InboundGroupSessions,
    OutboundGroupSessions,
    RoomKeyInfo,
)
from messa.store.base import WithheldRecord
from messa.store.memory import MemoryStore
from messa.types.ids import Curve25519Key, DeviceId, Ed25519Key, EventId, RoomId, UserId
from messa.types.keys import OLM_ALGORITHM, Device, DeviceKeys, LocalTrust
from messa.types.requests import ToDeviceMessages, ToDeviceRequest

ROOM = RoomId("!room:example.org")
OTHER_ROOM = RoomId("!other:example.org")
ALICE = UserId("@alice:example.org")
BOB = UserId("@bob:example.org")
CAROL = UserId("@carol:example.org")
MALLORY = UserId("@mallory:example.org")

_event_counter = itertools.count()


def random_key() -> str:
    """A random 32-byte key in unpadded base64 (a stand-in for a public key)."""
    return base64.b64encode(os.urandom(32)).decode().rstrip("=")


def make_device(
    user: UserId,
    device_id: str,
    *,
    trust: LocalTrust = LocalTrust.UNSET,
    cross_signed: bool = False,
    curve25519: str | None = None,
) -> Device:
    """A device with random identity keys."""
    curve = Curve25519Key(curve25519 or random_key())
    ed = Ed25519Key(random_key())
    keys = DeviceKeys(
        user_id=user,
        device_id=DeviceId(device_id),
        algorithms=(OLM_ALGORITHM,),
        curve25519=curve,
        ed25519=ed,
        display_name=None,
        raw={},
    )
    return Device(keys=keys, local_trust=trust, cross_signed=cross_signed)


class FakeDevices:
    """A :class:`~messa.crypto.interfaces.DeviceSource` over a plain dict."""

    def __init__(self) -> None:
        self.devices: dict[UserId, dict[DeviceId, Device]] = {}

    def add(self, device: Device) -> Device:
        self.devices.setdefault(device.user_id, {})[device.device_id] = device
        return device

    def remove(self, user: UserId, device_id: DeviceId) -> None:
        """Forget a device entirely (deleted and no longer listed)."""
        self.devices.get(user, {}).pop(device_id, None)

    def get_user_devices(self, user_id: UserId) -> dict[DeviceId, Device]:
        return {k: d for k, d in self.devices.get(user_id, {}).items() if not d.deleted}

    def get_device_by_curve_key(self, user_id: UserId, curve25519: str) -> Device | None:
        for device in self.devices.get(user_id, {}).values():
            if device.curve25519 == curve25519:
                return device
        return None


class FakeOlm:
    """An :class:`~messa.crypto.interfaces.OlmEncryptor` that "encrypts" into clear JSON.

    Devices whose Curve25519 key is in ``no_session`` are returned as missing.
    """

    def __init__(self, sender: Device) -> None:
        self.sender = sender
        self.no_session: set[str] = set()
        self.calls: list[list[Device]] = []

    def encrypt_for_devices(
        self, devices: Iterable[Device], event_type: str, content: dict[str, Any]
    ) -> tuple[ToDeviceMessages, list[Device]]:
        devices = list(devices)
        self.calls.append(devices)
        messages: ToDeviceMessages = {}
        missing: list[Device] = []
        for device in devices:
            if device.curve25519 in self.no_session:
                missing.append(device)
                continue
            body = {
                "type": event_type,
                "content": content,
                "sender": self.sender.user_id,
                "recipient": device.user_id,
            }
            messages.setdefault(device.user_id, {})[device.device_id] = {
                "algorithm": OLM_ALGORITHM,
                "sender_key": self.sender.curve25519,
                "ciphertext": {device.curve25519: {"type": 1, "body": json.dumps(body)}},
            }
        return messages, missing


class Party:
    """One device: its store, clock, and both halves of the Megolm machinery."""

    def __init__(
        self,
        device: Device,
        directory: FakeDevices,
        *,
        store: MemoryStore | None = None,
        clock: FakeClock | None = None,
        policy: SharingPolicy | None = None,
        cache_size: int = 1000,
    ) -> None:
        self.device = device
        self.directory = directory
        self.store = store if store is not None else MemoryStore()
        self.clock = clock if clock is not None else FakeClock()
        self.ctx = CryptoContext(device.user_id, device.device_id, self.store, self.clock)
        self.olm = FakeOlm(device)
        self.policy: SharingPolicy = policy if policy is not None else AllDevicesPolicy()
        self.outbound = OutboundGroupSessions(
            self.ctx, self.olm, directory, (device.curve25519, device.ed25519), self.policy
        )
        self.inbound = InboundGroupSessions(self.ctx, directory, cache_size=cache_size)

    @property
    def user(self) -> UserId:
        return self.device.user_id

    def restarted(self) -> Party:
        """The same device after a restart: new objects on the same store."""
        return Party(
            self.device, self.directory, store=self.store, clock=self.clock, policy=self.policy
        )

    def share(
        self, users: Iterable[UserId], settings: EncryptionSettings | None = None
    ) -> list[ToDeviceRequest]:
        return self.outbound.share_room_key(ROOM, users, settings or EncryptionSettings())

    def send(
        self, body: str, *, room: RoomId = ROOM, event_id: str | None = None
    ) -> dict[str, Any]:
        """Encrypt a text message and wrap it as the room event the server would deliver."""
        content = self.outbound.encrypt(room, "m.room.message", {"msgtype": "m.text", "body": body})
        return room_event(content, self.user, event_id)

    def receive(
        self, requests: Iterable[ToDeviceRequest], sender: Party
    ) -> tuple[list[RoomKeyInfo], list[WithheldRecord]]:
        """Deliver the to-device messages addressed to this device."""
        keys: list[RoomKeyInfo] = []
        notices: list[WithheldRecord] = []
        for request in requests:
            content = request.messages.get(self.user, {}).get(self.device.device_id)
            if content is None:
                continue
            if request.event_type == "m.room.encrypted":
                body = json.loads(content["ciphertext"][self.device.curve25519]["body"])
                event = DecryptedOlmEvent(
                    sender=sender.user,
                    sender_curve25519=sender.device.curve25519,
                    sender_ed25519=sender.device.ed25519,
                    sender_device=sender.device,
                    event_type=body["type"],
                    content=body["content"],
                )
                info = self.inbound.add_room_key(event)
                if info is not None:
                    keys.append(info)
            elif request.event_type == "m.room_key.withheld":
                record = self.inbound.receive_withheld(sender.user, content)
                if record is not None:
                    notices.append(record)
            else:  # pragma: no cover - the Megolm side sends nothing else
                raise AssertionError(request.event_type)
        return keys, notices


def room_event(
    content: dict[str, Any], sender: UserId, event_id: str | None = None
) -> dict[str, Any]:
    """An ``m.room.encrypted`` event as it arrives in a sync timeline."""
    return {
        "type": "m.room.encrypted",
        "content": content,
        "sender": sender,
        "event_id": EventId(event_id or f"$ev{next(_event_counter)}:example.org"),
        "origin_server_ts": 1_700_000_000_000,
    }


def addressed(requests: Iterable[ToDeviceRequest], event_type: str) -> set[tuple[str, str]]:
    """Every (user, device) that a list of requests sends ``event_type`` to."""
    return {
        (user, device)
        for request in requests
        if request.event_type == event_type
        for user, devices in request.messages.items()
        for device in devices
    }


class World:
    """Several parties sharing one device directory and one clock."""

    def __init__(self) -> None:
        self.directory = FakeDevices()
        self.clock = FakeClock()

    def device(self, user: UserId, device_id: str, **kwargs: Any) -> Device:
        """Register a device without a party (a recipient we never act as)."""
        return self.directory.add(make_device(user, device_id, **kwargs))

    def party(
        self,
        user: UserId,
        device_id: str,
        *,
        policy: SharingPolicy | None = None,
        cache_size: int = 1000,
        **kwargs: Any,
    ) -> Party:
        device = self.device(user, device_id, **kwargs)
        return Party(device, self.directory, clock=self.clock, policy=policy, cache_size=cache_size)


def targets(request: ToDeviceRequest) -> set[tuple[str, str]]:
    """The ``(user, device)`` pairs a to-device request goes to."""
    return {(u, d) for u, devices in request.messages.items() for d in devices}


def sent_body(request: ToDeviceRequest, device: Device) -> dict[str, Any]:
    """The plaintext FakeOlm 'encrypted' for ``device``."""
    content = request.messages[device.user_id][device.device_id]
    body: dict[str, Any] = json.loads(content["ciphertext"][device.curve25519]["body"])
    return body
