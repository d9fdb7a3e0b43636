"""An N-party harness for the crypto engine: parties, a fake homeserver, one fake clock.

* :class:`FakeServer` answers the E2EE endpoints the way a homeserver does:
  it stores uploaded device keys, one-time keys and fallback keys, hands out
  one one-time key per claim (the fallback key when none is left), routes
  to-device messages into per-device inboxes, and reports
  ``device_lists.changed`` and key counts in each device's sync. Every user
  is treated as sharing a room with every other user, so each device hears
  about every device-list change.
* :class:`Party` is one device: a :class:`~messa.store.memory.MemoryStore`,
  a :class:`~messa.crypto.context.CryptoContext` on the shared
  :class:`~messa._clock.FakeClock`, and the sub-machines built on it.
  :meth:`Party.restart` rebuilds every machine from the same store, as a
  process restart would.
* :class:`Harness` holds the server and the clock and makes parties.

Tests may reach into the server's dicts to tamper with what it serves, or
use :meth:`FakeServer.add_query_hook` / :meth:`FakeServer.add_claim_hook`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from messa._clock import FakeClock
from messa.crypto import _vodozemac as vz
from messa.crypto.account import SIGNED_CURVE25519, AccountMachine
from messa.crypto.canonical import sign_json
from messa.crypto.context import CryptoContext
from messa.crypto.identities import DeviceTracker, KeyQueryResult
from messa.crypto.interfaces import DecryptedOlmEvent
from messa.crypto.olm import ClaimResult, OlmSessions
from messa.errors import RemoteCryptoError
from messa.store.memory import MemoryStore
from messa.types.ids import DeviceId, UserId
from messa.types.keys import MEGOLM_ALGORITHM, OLM_ALGORITHM, Device
from messa.types.requests import (
    KeysClaimRequest,
    KeysQueryRequest,
    KeysUploadRequest,
    ToDeviceRequest,
)

DeviceAddress = tuple[UserId, DeviceId]
Hook = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class SyncBatch:
    """The crypto-relevant part of one ``/sync`` answer for one device."""

    to_device: list[dict[str, Any]]
    one_time_key_counts: dict[str, int]
    unused_fallback_key_types: list[str]
    changed: list[UserId]
    left: list[UserId]


@dataclass
class _FallbackKey:
    key_id: str
    key: dict[str, Any]
    used: bool = False


class FakeServer:
    """A homeserver's E2EE endpoints, in memory."""

    def __init__(self) -> None:
        self.device_keys: dict[UserId, dict[DeviceId, dict[str, Any]]] = {}
        self.one_time_keys: dict[DeviceAddress, dict[str, dict[str, Any]]] = {}
        self.fallback_keys: dict[DeviceAddress, _FallbackKey] = {}
        self.inboxes: dict[DeviceAddress, list[dict[str, Any]]] = {}
        self.changed: dict[DeviceAddress, set[UserId]] = {}
        self.left: dict[DeviceAddress, set[UserId]] = {}
        self.query_hooks: list[Hook] = []
        self.claim_hooks: list[Hook] = []
        self.claims_served = 0

    def register(self, user: UserId, device: DeviceId) -> None:
        """Log a device in (it starts receiving to-device messages and changes)."""
        self.inboxes.setdefault((user, device), [])
        self.changed.setdefault((user, device), set())
        self.left.setdefault((user, device), set())

    def _notify_changed(self, user: UserId) -> None:
        for listener in self.changed.values():
            listener.add(user)

    def delete_device(self, user: UserId, device: DeviceId) -> None:
        """Log a device out: its keys disappear and everyone hears of the change."""
        self.device_keys.get(user, {}).pop(device, None)
        self.one_time_keys.pop((user, device), None)
        self.fallback_keys.pop((user, device), None)
        for table in (self.inboxes, self.changed, self.left):
            table.pop((user, device), None)
        self._notify_changed(user)

    # -- endpoints ------------------------------------------------------------------

    def keys_upload(
        self, user: UserId, device: DeviceId, request: KeysUploadRequest
    ) -> dict[str, Any]:
        """``POST /keys/upload``: a repeated identical key is accepted; a changed one is not."""
        address = (user, device)
        if request.device_keys is not None:
            old = self.device_keys.get(user, {}).get(device)
            if old is not None and old != request.device_keys:
                raise AssertionError("a device may not change its device keys")
            self.device_keys.setdefault(user, {})[device] = copy.deepcopy(request.device_keys)
            if old is None:
                self._notify_changed(user)
        otks = self.one_time_keys.setdefault(address, {})
        for key_id, key in request.one_time_keys.items():
            if key_id in otks and otks[key_id] != key:
                raise AssertionError(f"one-time key {key_id} re-uploaded with another value")
            otks[key_id] = copy.deepcopy(key)
        for key_id, key in request.fallback_keys.items():
            current = self.fallback_keys.get(address)
            if current is None or current.key_id != key_id:
                self.fallback_keys[address] = _FallbackKey(key_id, copy.deepcopy(key))
        return {"one_time_key_counts": self._counts(address)}

    def _counts(self, address: DeviceAddress) -> dict[str, int]:
        return {SIGNED_CURVE25519: len(self.one_time_keys.get(address, {}))}

    def keys_query(self, request: KeysQueryRequest) -> dict[str, Any]:
        """``POST /keys/query``."""
        response: dict[str, Any] = {
            "device_keys": {
                user: copy.deepcopy(self.device_keys.get(user, {})) for user in request.users
            },
            "failures": {},
        }
        for hook in self.query_hooks:
            response = hook(response)
        return response

    def keys_claim(self, request: KeysClaimRequest) -> dict[str, Any]:
        """``POST /keys/claim``: one one-time key per device, else its fallback key."""
        result: dict[str, dict[str, dict[str, Any]]] = {}
        for user, devices in request.one_time_keys.items():
            for device, algorithm in devices.items():
                address = (user, device)
                otks = self.one_time_keys.get(address, {})
                key_id = next((k for k in otks if k.startswith(algorithm + ":")), None)
                if key_id is not None:
                    claimed = {key_id: otks.pop(key_id)}
                elif address in self.fallback_keys:
                    fallback = self.fallback_keys[address]
                    fallback.used = True
                    claimed = {fallback.key_id: copy.deepcopy(fallback.key)}
                else:
                    continue
                self.claims_served += 1
                result.setdefault(user, {})[device] = claimed
        response: dict[str, Any] = {"one_time_keys": result, "failures": {}}
        for hook in self.claim_hooks:
            response = hook(response)
        return response

    def send_to_device(self, sender: UserId, request: ToDeviceRequest) -> dict[str, Any]:
        """``PUT /sendToDevice``: queue each message in its device's inbox."""
        for user, devices in request.messages.items():
            for device, content in devices.items():
                targets = (
                    [a for a in self.inboxes if a[0] == user] if device == "*" else [(user, device)]
                )
                for address in targets:
                    if address in self.inboxes:
                        self.inboxes[address].append(
                            {
                                "type": request.event_type,
                                "sender": sender,
                                "content": copy.deepcopy(content),
                            }
                        )
        return {}

    def sync(self, user: UserId, device: DeviceId) -> SyncBatch:
        """The next sync of a device: drains its inbox and pending list changes."""
        address = (user, device)
        inbox, self.inboxes[address] = self.inboxes[address], []
        changed, self.changed[address] = sorted(self.changed[address]), set()
        left, self.left[address] = sorted(self.left[address]), set()
        fallback = self.fallback_keys.get(address)
        unused = [SIGNED_CURVE25519] if fallback is not None and not fallback.used else []
        return SyncBatch(inbox, self._counts(address), unused, changed, left)


@dataclass
class SyncOutcome:
    """What a party made of one sync."""

    decrypted: list[DecryptedOlmEvent] = field(default_factory=list)
    errors: list[RemoteCryptoError] = field(default_factory=list)


@dataclass
class FlushOutcome:
    """What a party got back while sending its outgoing requests."""

    queries: list[KeyQueryResult] = field(default_factory=list)
    claims: list[ClaimResult] = field(default_factory=list)
    to_device_sent: int = 0


class Party:
    """One device taking part in a test.

    Args:
        server: The fake homeserver.
        clock: The clock every party shares.
        user_id: Owner of the device.
        device_id: The device id.
        store: An existing store to reopen (default: a new one).
    """

    def __init__(
        self,
        server: FakeServer,
        clock: FakeClock,
        user_id: str,
        device_id: str,
        store: MemoryStore | None = None,
    ) -> None:
        self.server = server
        self.clock = clock
        self.user_id = UserId(user_id)
        self.device_id = DeviceId(device_id)
        self.store = store if store is not None else MemoryStore()
        self.ctx: CryptoContext
        self.account: AccountMachine
        self.tracker: DeviceTracker
        self.olm: OlmSessions
        self._build()
        server.register(self.user_id, self.device_id)

    def _build(self) -> None:
        self.ctx = CryptoContext(self.user_id, self.device_id, self.store, self.clock)
        self.account = AccountMachine(self.ctx)
        self.tracker = DeviceTracker(self.ctx, self.account)
        self.olm = OlmSessions(self.ctx, self.account, self.tracker)

    def restart(self) -> None:
        """Throw away every machine and rebuild them from the same store."""
        self._build()

    @property
    def address(self) -> DeviceAddress:
        """``(user id, device id)``."""
        return (self.user_id, self.device_id)

    # -- requests ---------------------------------------------------------------------

    def flush(self) -> FlushOutcome:
        """Send every outgoing request to the server until none is left."""
        outcome = FlushOutcome()
        for _ in range(20):
            sent = False
            upload = self.account.upload_request()
            if upload is not None:
                response = self.server.keys_upload(self.user_id, self.device_id, upload)
                self.account.mark_upload_sent(response, upload.request_id)
                sent = True
            query = self.tracker.query_request()
            if query is not None:
                response = self._keys_query(query)
                outcome.queries.append(
                    self.tracker.receive_query_response(query.request_id, response)
                )
                sent = True
            for request in self.olm.outgoing_requests():
                if isinstance(request, KeysClaimRequest):
                    outcome.claims.append(
                        self.olm.receive_claim_response(
                            request.request_id, self.server.keys_claim(request)
                        )
                    )
                else:
                    response = self.server.send_to_device(self.user_id, request)
                    self.olm.mark_request_as_sent(request.request_id, response)
                    outcome.to_device_sent += request.message_count()
                sent = True
            sent = self._flush_more() or sent
            if not sent:
                return outcome
        raise AssertionError("outgoing requests did not settle")

    def _keys_query(self, query: KeysQueryRequest) -> dict[str, Any]:
        """The server's answer to our ``/keys/query``."""
        return self.server.keys_query(query)

    def _flush_more(self) -> bool:
        """Send requests of machines a subclass adds; return whether any was sent."""
        return False

    def sync(self) -> SyncOutcome:
        """Receive one sync from the server, decrypt its to-device events, then flush."""
        batch = self.server.sync(self.user_id, self.device_id)
        self.tracker.mark_changed(batch.changed)
        self.tracker.mark_left(batch.left)
        self.account.update_key_counts(batch.one_time_key_counts, batch.unused_fallback_key_types)
        outcome = SyncOutcome()
        for event in batch.to_device:
            if event.get("type") != "m.room.encrypted":
                continue
            try:
                outcome.decrypted.append(self.olm.decrypt(event))
            except RemoteCryptoError as exc:
                outcome.errors.append(exc)
        self.flush()
        return outcome

    # -- conveniences -------------------------------------------------------------------

    def track(self, *users: UserId) -> FlushOutcome:
        """Track users' device lists and fetch them."""
        self.tracker.update_tracked_users(users)
        return self.flush()

    def device_of(self, other: Party) -> Device:
        """``other``'s device as this party knows it (tracks and queries if needed)."""
        device = self.tracker.get_device(other.user_id, other.device_id)
        if device is None or self.tracker.outdated_users():
            self.track(other.user_id)
            device = self.tracker.get_device(other.user_id, other.device_id)
        assert device is not None, f"{other.address} unknown to {self.address}"
        return device

    def claim_sessions(self, devices: Iterable[Device]) -> ClaimResult | None:
        """Claim one-time keys and create sessions for devices without one."""
        request = self.olm.missing_sessions_request(devices)
        if request is None:
            return None
        return self.olm.receive_claim_response(request.request_id, self.server.keys_claim(request))

    def send(self, others: Iterable[Party], event_type: str, content: dict[str, Any]) -> None:
        """Olm-encrypt an event for other parties' devices and hand it to the server."""
        devices = [self.device_of(other) for other in others]
        self.claim_sessions(devices)
        messages, missing = self.olm.encrypt_for_devices(devices, event_type, content)
        assert not missing, f"no Olm session with {[d.device_id for d in missing]}"
        self.send_encrypted(messages)

    def send_encrypted(self, messages: dict[UserId, dict[DeviceId, dict[str, Any]]]) -> None:
        """Hand already-encrypted ``m.room.encrypted`` contents to the server."""
        request = ToDeviceRequest("req", "m.room.encrypted", "txn", messages)
        self.server.send_to_device(self.user_id, request)


class Harness:
    """A fake homeserver, a fake clock, and a factory of parties."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.server = FakeServer()
        self.parties: list[Party] = []

    def party(self, user_id: str, device_id: str) -> Party:
        """A new device that has uploaded its keys."""
        party = Party(self.server, self.clock, user_id, device_id)
        party.flush()
        self.parties.append(party)
        return party

    def reopen(self, party: Party) -> Party:
        """A new :class:`Party` object on ``party``'s store (a process restart)."""
        reopened = Party(self.server, self.clock, party.user_id, party.device_id, party.store)
        self.parties[self.parties.index(party)] = reopened
        return reopened


def encrypt_raw(sender: Party, device: Device, payload: dict[str, Any] | bytes) -> dict[str, Any]:
    """Olm-encrypt any plaintext over ``sender``'s real session with ``device``.

    For building forged payloads: the Olm layer is genuine, only the
    plaintext is wrong. Returns the ``m.room.encrypted`` content.
    """
    plaintext = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    with sender.ctx.batch() as changes:
        return sender.olm._encrypt_bytes(changes, device, plaintext)


def to_device_event(sender: Party, content: dict[str, Any]) -> dict[str, Any]:
    """The to-device event a recipient's sync would carry for ``content``."""
    return {"type": "m.room.encrypted", "sender": sender.user_id, "content": content}


class FakeDevice:
    """A bare device identity (no machines) for building signed test entries."""

    def __init__(self, user_id: str, device_id: str) -> None:
        self.user_id = UserId(user_id)
        self.device_id = DeviceId(device_id)
        self.account = vz.Account()

    @property
    def curve25519(self) -> str:
        """Curve25519 identity key."""
        return self.account.curve25519_key.to_base64()

    @property
    def ed25519(self) -> str:
        """Ed25519 identity key."""
        return self.account.ed25519_key.to_base64()

    def sign(self, obj: dict[str, Any], *, key_id: str | None = None) -> dict[str, Any]:
        """``obj`` signed with this device's Ed25519 key (under ``key_id``)."""
        return sign_json(
            obj,
            self.user_id,
            key_id or f"ed25519:{self.device_id}",
            lambda message: self.account.sign(message).to_base64(),
        )

    def device_keys(self, **overrides: Any) -> dict[str, Any]:
        """Signed device keys; ``overrides`` replace fields before signing."""
        entry: dict[str, Any] = {
            "user_id": self.user_id,
            "device_id": self.device_id,
            "algorithms": [OLM_ALGORITHM, MEGOLM_ALGORITHM],
            "keys": {
                f"curve25519:{self.device_id}": self.curve25519,
                f"ed25519:{self.device_id}": self.ed25519,
            },
        }
        entry.update(overrides)
        return self.sign(entry)

    def signed_one_time_key(self) -> dict[str, dict[str, Any]]:
        """A fresh one-time key as ``/keys/claim`` returns it."""
        self.account.generate_one_time_keys(1)
        key_id, key = next(iter(self.account.one_time_keys.items()))
        self.account.mark_keys_as_published()
        return {f"{SIGNED_CURVE25519}:{key_id}": self.sign({"key": key.to_base64()})}
