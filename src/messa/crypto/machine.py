"""``OlmMachine``: the sans-I/O end-to-end encryption engine of one device.

A facade: it owns the sub-machines (account, device tracker, Olm sessions,
outbound and inbound Megolm sessions) and only routes between them.

The protocol is push/pull:

* push what sync brought with :meth:`OlmMachine.receive_sync_changes`;
* pull what must be sent with :meth:`OlmMachine.outgoing_requests`, send it,
  and report the answer with :meth:`OlmMachine.mark_request_as_sent`;
* before sending to a room: :meth:`update_tracked_users` (then send the key
  query), :meth:`get_missing_sessions` (send the claim),
  :meth:`share_room_key` (send the to-device requests), and finally
  :meth:`encrypt_room_event`.

Every operation commits its writes atomically; open :meth:`batch` around
several calls to commit them (and the caller's own writes) together.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from messa._clock import Clock, SystemClock
from messa.crypto.account import AccountMachine
from messa.crypto.backup import BackupMachine
from messa.crypto.context import CryptoContext
from messa.crypto.identities import DeviceTracker
from messa.crypto.interfaces import AllDevicesPolicy, DecryptedOlmEvent, SharingPolicy
from messa.crypto.key_requests import KeyRequests
from messa.crypto.megolm import (
    EncryptionSettings,
    InboundGroupSessions,
    OutboundGroupSessions,
    RoomKeyInfo,
)
from messa.crypto.olm import OlmSessions
from messa.crypto.trust_hub import TrustEvents, TrustHub
from messa.errors import CryptoError, RemoteInputError
from messa.store.base import Changes, Store
from messa.types.events import DecryptionResult, UnableToDecrypt, UtdReason
from messa.types.ids import DeviceId, RoomId, UserId
from messa.types.keys import OLM_ALGORITHM, Device, LocalTrust, TrustState
from messa.types.requests import (
    KeysClaimRequest,
    KeysQueryRequest,
    KeysUploadRequest,
    OutgoingRequest,
    SignatureUploadRequest,
    ToDeviceRequest,
)

log = logging.getLogger(__name__)

#: To-device event types that carry keys or secrets: accepted only over Olm.
#: (Requests for keys and secrets carry none and travel in clear, per the spec;
#: the answers to them are Olm-encrypted to a verified device only.)
KEY_BEARING_TYPES = frozenset({"m.room_key", "m.forwarded_room_key", "m.secret.send"})


@dataclass(slots=True)
class ToDeviceResult:
    """What the to-device part of one sync produced.

    Attributes:
        room_keys: Megolm sessions that became available (retry waiting events).
        events: Decrypted to-device events other than room keys (for later layers,
            e.g. verification).
        errors: Short descriptions of rejected input (no plaintext, no secrets).
    """

    room_keys: list[RoomKeyInfo] = field(default_factory=list)
    events: list[DecryptedOlmEvent] = field(default_factory=list)
    plain_events: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    trust: TrustEvents = field(default_factory=TrustEvents)


class OlmMachine:
    """The end-to-end encryption state machine of one device.

    Args:
        user_id: Our user id.
        device_id: Our device id.
        store: Where every key and session is persisted.
        clock: Time source.
        policy: Who receives our room keys (default: every non-blocked device).
    """

    def __init__(
        self,
        user_id: UserId,
        device_id: DeviceId,
        store: Store,
        *,
        clock: Clock | None = None,
        policy: SharingPolicy | None = None,
    ) -> None:
        self._ctx = CryptoContext(user_id, device_id, store, clock or SystemClock())
        self.account = AccountMachine(self._ctx)
        self.devices = DeviceTracker(self._ctx, self.account)
        self.olm = OlmSessions(self._ctx, self.account, self.devices)
        self.outbound = OutboundGroupSessions(
            self._ctx,
            self.olm,
            self.devices,
            (self.account.curve25519, self.account.ed25519),
            policy or AllDevicesPolicy(),
        )
        self.inbound = InboundGroupSessions(self._ctx, self.devices)
        self.trust = TrustHub(self._ctx, self.account, self.devices, self.olm)
        self.key_requests = KeyRequests(self._ctx, self.devices, self.olm, self.inbound)
        self.backup = BackupMachine(
            self._ctx,
            self.account,
            self.inbound,
            devices=self.devices,
            trusted_keys=self._trusted_own_keys,
        )
        self.trust.attach_backup(self.backup)
        self._key_out: list[ToDeviceRequest] = []
        self._in_flight: dict[str, OutgoingRequest] = {}

    # -- identity ----------------------------------------------------------------

    @property
    def user_id(self) -> UserId:
        """Our user id."""
        return self._ctx.user_id

    @property
    def device_id(self) -> DeviceId:
        """Our device id."""
        return self._ctx.device_id

    @property
    def identity_keys(self) -> dict[str, str]:
        """Our Curve25519 and Ed25519 identity keys."""
        return dict(self.account.identity_keys)

    @property
    def context(self) -> CryptoContext:
        """The shared context (for bulk operations that commit in batches of their own)."""
        return self._ctx

    @contextmanager
    def batch(self) -> Iterator[Changes]:
        """Group several operations (and the caller's writes) into one commit."""
        with self._ctx.batch() as changes:
            yield changes

    # -- sync input ----------------------------------------------------------------

    def receive_sync_changes(
        self,
        *,
        to_device: Sequence[dict[str, Any]] = (),
        changed: Iterable[UserId] = (),
        left: Iterable[UserId] = (),
        one_time_key_counts: dict[str, int] | None = None,
        unused_fallback_key_types: list[str] | None = None,
    ) -> ToDeviceResult:
        """Apply the crypto-relevant parts of a sync response.

        Bad to-device events are skipped and reported in ``errors``; they never
        stop the rest of the batch.
        """
        result = ToDeviceResult()
        with self._ctx.batch():
            self.devices.mark_changed(list(changed))
            self.devices.mark_left(list(left))
            self.account.update_key_counts(one_time_key_counts or {}, unused_fallback_key_types)
            for event in to_device:
                try:
                    self._receive_to_device(event, result)
                except (RemoteInputError, CryptoError) as exc:
                    # One bad event never costs the rest of the batch.
                    result.errors.append(f"{type(exc).__name__}: {exc}")
        return result

    def _receive_to_device(self, event: dict[str, Any], result: ToDeviceResult) -> None:
        etype = event.get("type")
        content = event.get("content")
        if not isinstance(etype, str) or not isinstance(content, dict):
            result.errors.append("malformed to-device event")
            return
        if etype == "m.room.encrypted":
            if content.get("algorithm") != OLM_ALGORITHM:
                # Megolm (or anything else) cannot carry keys to a device.
                result.errors.append(f"to-device event with algorithm {content.get('algorithm')!r}")
                return
            decrypted = self.olm.decrypt(event)
            self._route_decrypted(decrypted, result)
        elif etype in KEY_BEARING_TYPES:
            result.errors.append(f"{etype} arrived unencrypted; ignored")
        elif self.trust.handles_plain(etype):
            self.trust.receive_plain(event, result.trust)
        elif etype == "m.room_key_request":
            self._queue_key(self.key_requests.receive_request(event))
        elif etype == "m.room_key.withheld":
            sender = event.get("sender")
            if isinstance(sender, str):
                self.inbound.receive_withheld(UserId(sender), content)
        else:
            result.plain_events.append(event)

    def _route_decrypted(self, ev: DecryptedOlmEvent, result: ToDeviceResult) -> None:
        if ev.event_type == "m.room_key":
            info = self.inbound.add_room_key(ev)
            if info is not None:
                result.room_keys.append(info)
                self._queue_key(self.key_requests.cancel(info.room_id, info.session_id))
        elif ev.event_type == "m.forwarded_room_key":
            forwarded = self.key_requests.receive_forwarded_key(ev)
            if forwarded.room_key is not None:
                result.room_keys.append(forwarded.room_key)
            self._queue_key(forwarded.cancellation)
        elif ev.event_type == "m.room_key_request":
            self._queue_key(self.key_requests.receive_request(ev))
        elif ev.event_type == "m.dummy":
            return
        elif self.trust.handles_decrypted(ev.event_type):
            self.trust.receive_decrypted(ev, result.trust)
        else:
            result.events.append(ev)

    def _trusted_own_keys(self) -> dict[str, str]:
        """Our own Ed25519 keys we trust: this device, verified own devices, trusted master."""
        keys = {f"ed25519:{self.device_id}": str(self.account.ed25519)}
        for device in self.devices.get_user_devices(self.user_id).values():
            if device.trust is TrustState.VERIFIED:
                keys[f"ed25519:{device.device_id}"] = str(device.ed25519)
        own = self.devices.get_identity(self.user_id)
        if own is not None and own.verified:
            master = str(own.master_key.public_key)
            keys[f"ed25519:{master}"] = master
        return keys

    def _queue_key(self, request: ToDeviceRequest | None) -> None:
        if request is not None:
            self._key_out.append(request)

    def request_room_key(
        self, room_id: RoomId, event: dict[str, Any], utd: UnableToDecrypt
    ) -> None:
        """Ask our own trusted devices for the key of an event we cannot decrypt."""
        if utd.reason not in (UtdReason.MISSING_SESSION, UtdReason.UNKNOWN_MESSAGE_INDEX):
            return
        if not utd.session_id:
            return
        content = event.get("content")
        sender_key = content.get("sender_key") if isinstance(content, dict) else None
        with self._ctx.batch():
            self._queue_key(
                self.key_requests.request_key(
                    room_id, utd.session_id, sender_key if isinstance(sender_key, str) else None
                )
            )

    def mark_all_tracked_outdated(self) -> None:
        """Re-query every tracked device list (after an initial sync, which reports no changes)."""
        with self._ctx.batch():
            self.devices.mark_changed(list(self.devices.tracked_users()))

    def update_tracked_users(self, users: Iterable[UserId]) -> None:
        """Track these users' device lists (members of encrypted rooms)."""
        with self._ctx.batch():
            self.devices.update_tracked_users(list(users))

    # -- outgoing requests -----------------------------------------------------------

    def outgoing_requests(self) -> list[OutgoingRequest]:
        """Requests to send now: key upload, key queries, unwedging."""
        out: list[OutgoingRequest] = []
        with self._ctx.batch():
            upload = self.account.upload_request()
            if upload is not None:
                out.append(upload)
            query = self.devices.query_request()
            if query is not None:
                out.append(query)
            out.extend(self.olm.outgoing_requests())
            out.extend(self.trust.outgoing_requests())
            waiting = [*self.key_requests.waiting_devices(), *self.trust.secrets.waiting_devices()]
            if waiting:
                claim = self.olm.missing_sessions_request(waiting)
                if claim is not None:
                    out.append(claim)
            out.extend(self.key_requests.retry_waiting())
            out.extend(self._key_out)
            self._key_out = []
        for req in out:
            self._in_flight[req.request_id] = req
        return out

    def mark_request_as_sent(self, request_id: str, response: dict[str, Any]) -> None:
        """Feed the server's answer to a request back into the engine."""
        req = self._in_flight.pop(request_id, None)
        with self._ctx.batch():
            if isinstance(req, KeysUploadRequest):
                self.account.mark_upload_sent(response, request_id)
            elif isinstance(req, KeysQueryRequest):
                result = self.devices.receive_query_response(request_id, response)
                changed = {
                    *(d.user_id for d in result.changed_devices),
                    *(d.user_id for d in result.deleted_devices),
                    *(i.user_id for i in result.identity_changes),
                }
                if changed:
                    self.trust.keys_changed(changed)
            elif isinstance(req, SignatureUploadRequest):
                self.trust.cross_signing.mark_request_as_sent(request_id, response)
            elif isinstance(req, KeysClaimRequest):
                self.olm.receive_claim_response(request_id, response)
            elif isinstance(req, ToDeviceRequest):
                self.olm.mark_request_as_sent(request_id, response)
            elif req is None:
                log.debug("answer to unknown request %s ignored", request_id)

    def request_failed(self, request_id: str) -> None:
        """Report that a request could not be sent, so it is rebuilt next time."""
        req = self._in_flight.pop(request_id, None)
        with self._ctx.batch():
            if isinstance(req, KeysUploadRequest):
                self.account.upload_failed(request_id)
            elif isinstance(req, KeysQueryRequest):
                self.devices.query_failed(request_id)
            elif isinstance(req, KeysClaimRequest | ToDeviceRequest):
                self.olm.request_failed(request_id)
            elif isinstance(req, SignatureUploadRequest):
                self.trust.cross_signing.request_failed(request_id)

    # -- rooms -----------------------------------------------------------------------

    def get_missing_sessions(self, users: Iterable[UserId]) -> KeysClaimRequest | None:
        """A claim for one-time keys of devices we have no Olm session with."""
        devices = [d for u in users for d in self.devices.get_user_devices(u).values()]
        with self._ctx.batch():
            req = self.olm.missing_sessions_request(devices)
        if req is not None:
            self._in_flight[req.request_id] = req
        return req

    def share_room_key(
        self,
        room_id: RoomId,
        users: Iterable[UserId],
        encryption: dict[str, Any],
        history_visibility: str = "shared",
    ) -> list[ToDeviceRequest]:
        """Create or rotate the room's Megolm session and share it as needed."""
        settings = EncryptionSettings.from_event_content(encryption, history_visibility)
        with self._ctx.batch():
            reqs = self.outbound.share_room_key(room_id, list(users), settings)
        for req in reqs:
            self._in_flight[req.request_id] = req
        return reqs

    def encrypt_room_event(
        self, room_id: RoomId, event_type: str, content: dict[str, Any]
    ) -> dict[str, Any]:
        """Megolm-encrypt an event for a room whose key was shared."""
        with self._ctx.batch():
            return self.outbound.encrypt(room_id, event_type, content)

    def invalidate_group_session(self, room_id: RoomId) -> None:
        """Force a new Megolm session for the next message in a room."""
        with self._ctx.batch():
            self.outbound.invalidate(room_id)

    def receive_room_verification(
        self, room_id: RoomId, event: dict[str, Any], sender_device: DeviceId | None
    ) -> None:
        """Route an in-room verification event (decrypted, ``m.relates_to`` merged)."""
        self.trust.receive_room_event(room_id, event, sender_device)

    def prefetch_replay_records(self, events: Iterable[dict[str, Any]]) -> None:
        """Read ahead, in one store query, the replay records these events will need."""
        self.inbound.prefetch_replay_records(events)

    def decrypt_room_event(self, room_id: RoomId, event: dict[str, Any]) -> DecryptionResult:
        """Decrypt an ``m.room.encrypted`` room event; never raises for bad input."""
        with self._ctx.batch():
            return self.inbound.decrypt(room_id, event)

    # -- devices -----------------------------------------------------------------------

    def get_user_devices(self, user_id: UserId) -> list[Device]:
        """Known devices of a user, with trust state."""
        return sorted(self.devices.get_user_devices(user_id).values(), key=lambda d: d.device_id)

    def set_local_trust(self, user_id: UserId, device_id: DeviceId, trust: LocalTrust) -> None:
        """Mark a device verified or blocked (or unset) locally."""
        with self._ctx.batch():
            self.devices.set_local_trust(user_id, device_id, trust)
