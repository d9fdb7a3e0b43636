"""Fakes for verification tests: identities with real Ed25519 keys, and a fake link.

* :class:`FakeIdentity` implements ``VerificationIdentity`` from plain dicts
  (what this device believes about keys) and records every trust decision.
* :class:`Link` carries outgoing verification messages between parties:
  to-device requests to the named devices' inboxes, room messages to every
  party in the room (the sender gets its own echo, with
  ``unsigned.transaction_id``, as a homeserver does). A test can intercept
  (tamper with or drop) each delivered event.
"""

from __future__ import annotations

import base64
import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from messa._clock import FakeClock
from messa.crypto.verification import (
    RequestState,
    VerificationMachine,
    VerificationOutgoing,
    VerificationRequest,
)
from messa.crypto.verification.transport import RoomMessageRequest
from messa.types.ids import DeviceId, Ed25519Key, EventId, RoomId, UserId
from messa.types.requests import ToDeviceRequest

ROOM = RoomId("!dm:example.org")

KEY = "m.key.verification.key"
MAC = "m.key.verification.mac"
START = "m.key.verification.start"
ACCEPT = "m.key.verification.accept"


def new_ed25519() -> Ed25519Key:
    """A fresh, real Ed25519 public key, unpadded base64."""
    raw = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    return Ed25519Key(base64.b64encode(raw).decode().rstrip("="))


def body(
    message: VerificationOutgoing, user: str | None = None, device: str | None = None
) -> dict[str, Any]:
    """The content of an outgoing message (for to-device: the one for ``user``'s ``device``)."""
    if isinstance(message, RoomMessageRequest):
        return message.content
    if user is None:
        user = next(iter(message.messages))
    devices = message.messages[UserId(user)]
    return devices[DeviceId(device) if device is not None else next(iter(devices))]


@dataclass
class Directory:
    """The keys the server publishes."""

    devices: dict[tuple[UserId, DeviceId], Ed25519Key] = field(default_factory=dict)
    masters: dict[UserId, Ed25519Key] = field(default_factory=dict)
    cross_signing: dict[UserId, set[str]] = field(default_factory=dict)

    def add_user(self, user: UserId) -> Ed25519Key:
        """Give ``user`` cross-signing keys; return the master key."""
        master, ssk, usk = new_ed25519(), new_ed25519(), new_ed25519()
        self.masters[user] = master
        self.cross_signing[user] = {master, ssk, usk}
        return master

    def add_device(self, user: UserId, device: DeviceId) -> Ed25519Key:
        """Publish a new device; return its key."""
        key = new_ed25519()
        self.devices[(user, device)] = key
        return key


class FakeIdentity:
    """A device's view of keys (a copy of the directory) and its trust decisions."""

    def __init__(
        self, directory: Directory, user: UserId, device: DeviceId, *, trusts_master: bool
    ):
        self.view = copy.deepcopy(directory)
        self._user = user
        self._device = device
        self.trusts_master = trusts_master
        self.verified_devices: list[tuple[UserId, DeviceId, Ed25519Key]] = []
        self.verified_users: list[tuple[UserId, Ed25519Key]] = []

    @property
    def user_id(self) -> UserId:
        return self._user

    @property
    def device_id(self) -> DeviceId:
        return self._device

    def own_ed25519(self) -> Ed25519Key:
        return self.view.devices[(self._user, self._device)]

    def trusts_own_master_key(self) -> bool:
        return self.trusts_master

    def master_key(self, user_id: UserId) -> Ed25519Key | None:
        return self.view.masters.get(user_id)

    def cross_signing_keys(self, user_id: UserId) -> frozenset[str]:
        return frozenset(self.view.cross_signing.get(user_id, set()))

    def device_ed25519(self, user_id: UserId, device_id: DeviceId) -> Ed25519Key | None:
        return self.view.devices.get((user_id, device_id))

    def user_device_ids(self, user_id: UserId) -> list[DeviceId]:
        return sorted(d for (u, d) in self.view.devices if u == user_id)

    def mark_device_verified(
        self, user_id: UserId, device_id: DeviceId, ed25519: Ed25519Key
    ) -> None:
        self.verified_devices.append((user_id, device_id, ed25519))

    def mark_user_verified(self, user_id: UserId, master_key: Ed25519Key) -> None:
        self.verified_users.append((user_id, master_key))
        if user_id == self._user:
            self.trusts_master = True


@dataclass
class Party:
    """One device: its identity, its machine, its inbox."""

    user: UserId
    device: DeviceId
    identity: FakeIdentity
    machine: VerificationMachine
    inbox: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    sent: list[VerificationOutgoing] = field(default_factory=list)

    @property
    def address(self) -> tuple[UserId, DeviceId]:
        return (self.user, self.device)


Interceptor = Callable[[Party, str, dict[str, Any]], dict[str, Any] | None]


class Link:
    """Parties, one fake clock, and delivery between them."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.directory = Directory()
        self.parties: dict[tuple[UserId, DeviceId], Party] = {}
        self.intercept: Interceptor | None = None
        self.log: list[tuple[str, str, str]] = []  # (sender device, kind, event type)
        self._event_ids = itertools.count(1)

    def add(self, user: str, device: str, *, trusts_master: bool = True, **kwargs: Any) -> Party:
        """Create a device (publishing its key; the user's cross-signing keys on first use)."""
        uid, did = UserId(user), DeviceId(device)
        if uid not in self.directory.masters:
            self.directory.add_user(uid)
        self.directory.add_device(uid, did)
        for party in self.parties.values():  # everyone learns the new device
            party.identity.view.devices[(uid, did)] = self.directory.devices[(uid, did)]
            party.identity.view.masters.setdefault(uid, self.directory.masters[uid])
            party.identity.view.cross_signing.setdefault(uid, self.directory.cross_signing[uid])
        identity = FakeIdentity(self.directory, uid, did, trusts_master=trusts_master)
        machine = VerificationMachine(identity, self.clock, **kwargs)
        party = Party(uid, did, identity, machine)
        self.parties[party.address] = party
        return party

    def send(self, sender: Party, messages: list[VerificationOutgoing]) -> None:
        """Deliver what ``sender``'s machine asked to send."""
        for message in messages:
            sender.sent.append(message)
            if isinstance(message, ToDeviceRequest):
                self.log.append((sender.device, "to_device", message.event_type))
                for user, devices in message.messages.items():
                    for device, content in devices.items():
                        target = self.parties.get((user, device))
                        if target is None:
                            continue
                        event = {
                            "type": message.event_type,
                            "sender": sender.user,
                            "content": copy.deepcopy(content),
                        }
                        self._put(target, "to_device", event)
            else:
                self.log.append((sender.device, "room", message.event_type))
                self._room(sender, message)

    def _room(self, sender: Party, message: RoomMessageRequest) -> None:
        event_id = EventId(f"$ev{next(self._event_ids)}:example.org")
        if message.event_type == "m.room.message":
            sender.machine.room_message_sent(message.txn_id, event_id)
        for party in self.parties.values():
            event: dict[str, Any] = {
                "type": message.event_type,
                "sender": sender.user,
                "event_id": event_id,
                "room_id": message.room_id,
                "origin_server_ts": self.clock.now_ms(),
                "content": copy.deepcopy(message.content),
            }
            if party is sender:
                event["unsigned"] = {"transaction_id": message.txn_id}
            self._put(party, "room", event)

    def _put(self, target: Party, kind: str, event: dict[str, Any]) -> None:
        if self.intercept is not None:
            changed = self.intercept(target, kind, event)
            if changed is None:
                return
            event = changed
        target.inbox.append((kind, event))

    def step(self) -> bool:
        """Deliver one pending event; False when every inbox is empty."""
        for party in self.parties.values():
            if party.inbox:
                kind, event = party.inbox.pop(0)
                if kind == "to_device":
                    out = party.machine.receive_to_device(event)
                else:
                    out = party.machine.receive_room_event(ROOM, event)
                self.send(party, out)
                return True
        return False

    def run(self, limit: int = 200) -> None:
        """Deliver until quiet."""
        for _ in range(limit):
            if not self.step():
                return
        raise AssertionError("the parties never went quiet (message loop?)")


# --- helpers shared by the attack and protocol tests ---------------------------------


def ready_pair(
    link: Link, a: Party, b: Party, *, in_room: bool = False
) -> tuple[VerificationRequest, VerificationRequest]:
    if in_room:
        request, out = a.machine.request_verification_in_room(ROOM, b.user)
    else:
        request, out = a.machine.request_verification(b.user, [b.device])
    link.send(a, out)
    link.run()
    theirs = b.machine.get_request(a.user, request.flow_id or "")
    assert theirs is not None
    link.send(b, theirs.accept())
    link.run()
    return request, theirs


def tamper(event_type: str, target: Party, change: Any) -> Any:
    def intercept(party: Party, kind: str, event: dict[str, Any]) -> dict[str, Any] | None:
        if party is target and event["type"] == event_type:
            change(event["content"])
        return event

    return intercept


def assert_cancelled(request: VerificationRequest, code: str, *, by_us: bool) -> None:
    assert request.state is RequestState.CANCELLED
    assert request.cancellation is not None
    assert request.cancellation.code == code and request.cancellation.by_us is by_us


def nothing_trusted(*parties: Party) -> None:
    for party in parties:
        assert party.identity.verified_devices == [] and party.identity.verified_users == []
