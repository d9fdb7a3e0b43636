"""Room key requests between our own devices (``m.room_key_request`` / ``m.forwarded_room_key``).

Rules this module enforces (spec "Key requests", and Messa's security rules):

* We ask only our own devices that we trust (verified, or cross-signed by
  our self-signing key), in clear as the spec says (a request holds no key),
  at most one outstanding request per session, persisted, re-sent no more
  often than a rate limit allows.
* We answer only our own user's trusted devices, only for a session we
  hold, always Olm-encrypted to that device's keys.
* A forwarded key is accepted only over Olm (:class:`DecryptedOlmEvent`),
  from our own user, from the trusted device the Olm session proves, for a
  session we asked that very device for and have not received yet. It is
  stored as unauthenticated (never shown as verified) and never replaces a
  better copy. Then the request is closed and cancelled.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from messa.crypto.context import CryptoContext
from messa.crypto.interfaces import DecryptedOlmEvent, DeviceSource, OlmEncryptor
from messa.crypto.key_requests.content import (
    CANCELLATION,
    FORWARDED_ROOM_KEY,
    MAX_SESSION_ID,
    REQUEST,
    ROOM_KEY_REQUEST,
    OutgoingKeyRequest,
    parse_forwarded_key,
    parse_request,
    parse_requests,
    serialize_requests,
)
from messa.crypto.megolm import InboundGroupSessions, RoomKeyInfo
from messa.crypto.own_devices import accept_from_own_device, is_trusted
from messa.errors import (
    CryptoMisuseError,
    ForwardedKeyRejectedError,
    InvalidInputError,
    MegolmError,
)
from messa.types import ids
from messa.types.ids import DeviceId, RoomId
from messa.types.keys import MEGOLM_ALGORITHM, Device
from messa.types.requests import ToDeviceMessages, ToDeviceRequest

log = logging.getLogger(__name__)

ENCRYPTED = "m.room.encrypted"
#: Key of the outstanding requests in the store's key-value area.
STORE_KEY = "crypto.key_requests.outgoing"
#: Source recorded on sessions imported from a forward.
FORWARD_SOURCE = "forward"
RESEND_AFTER_MS = 15 * 60_000
"""A request already sent to every target is not sent again before this."""
MAX_OUTSTANDING = 1000
"""More outstanding requests than this evict the oldest (its late answer is then refused)."""
# Answers waiting for an Olm session; our own devices are few, their requests may be many.
_MAX_WAITING = 1000


def _new_id() -> str:
    return secrets.token_urlsafe(18)


@dataclass(frozen=True, slots=True)
class ForwardedRoomKey:
    """A forwarded key that passed every check.

    Attributes:
        room_id: The session's room.
        session_id: The session.
        device_id: Our device that forwarded it.
        room_key: The stored or improved session (retry events waiting for
            it), or ``None`` when the copy we held was already as good.
        cancellation: ``request_cancellation`` for every device asked, to send.
    """

    room_id: RoomId
    session_id: str
    device_id: DeviceId
    room_key: RoomKeyInfo | None
    cancellation: ToDeviceRequest | None


class KeyRequests:
    """Requests missing room keys from, and forwards them to, our own trusted devices.

    Args:
        ctx: Shared crypto context (our identity; outstanding requests are
            persisted through its batches).
        devices: Source of our own devices and their trust.
        olm: Encrypts forwarded keys for one device.
        inbound: Our Megolm sessions (what we forward, where forwards go).
        resend_after_ms: Minimum time between two sends of the same request
            to the same devices.
        max_outstanding: Bound on outstanding requests (oldest evicted).
    """

    def __init__(
        self,
        ctx: CryptoContext,
        devices: DeviceSource,
        olm: OlmEncryptor,
        inbound: InboundGroupSessions,
        *,
        resend_after_ms: int = RESEND_AFTER_MS,
        max_outstanding: int = MAX_OUTSTANDING,
    ) -> None:
        self._ctx = ctx
        self._devices = devices
        self._olm = olm
        self._inbound = inbound
        self._resend_after_ms = resend_after_ms
        self._max_outstanding = max(1, max_outstanding)
        self._requests: dict[tuple[RoomId, str], OutgoingKeyRequest] | None = None
        # (device id, request id) -> session, for answers blocked on a missing Olm session.
        self._waiting: dict[tuple[DeviceId, str], tuple[RoomId, str]] = {}
        ctx.on_rollback(self._drop_cache)

    def _drop_cache(self) -> None:
        self._requests = None

    # --- persisted outstanding requests ------------------------------------------

    def _load(self) -> dict[tuple[RoomId, str], OutgoingKeyRequest]:
        if self._requests is None:
            self._requests = parse_requests(self._ctx.store.get_value(STORE_KEY))
        return self._requests

    def _save(self) -> None:
        with self._ctx.batch() as changes:
            changes.values[STORE_KEY] = serialize_requests(self._load().values())

    def pending_requests(self) -> list[OutgoingKeyRequest]:
        """Our outstanding requests, oldest first."""
        return sorted(self._load().values(), key=lambda r: (r.created_ms, r.request_id))

    def is_requested(self, room_id: RoomId, session_id: str) -> bool:
        """Whether a request for this session is outstanding."""
        return (room_id, session_id) in self._load()

    # --- asking ----------------------------------------------------------------------

    def _own_trusted_devices(self) -> list[Device]:
        own = self._devices.get_user_devices(self._ctx.user_id).values()
        return sorted(
            (d for d in own if d.device_id != self._ctx.device_id and is_trusted(d)),
            key=lambda d: d.device_id,
        )

    def _message(
        self, content: dict[str, Any], targets: Iterable[DeviceId]
    ) -> ToDeviceRequest | None:
        per_device = {device_id: dict(content) for device_id in targets}
        if not per_device:
            return None
        messages: ToDeviceMessages = {self._ctx.user_id: per_device}
        return ToDeviceRequest(_new_id(), ROOM_KEY_REQUEST, _new_id(), messages)

    def _request_content(self, request: OutgoingKeyRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "algorithm": MEGOLM_ALGORITHM,
            "room_id": request.room_id,
            "session_id": request.session_id,
        }
        if request.sender_key is not None:
            body["sender_key"] = request.sender_key  # deprecated; echoed only
        return {
            "action": REQUEST,
            "body": body,
            "request_id": request.request_id,
            "requesting_device_id": self._ctx.device_id,
        }

    def request_key(
        self, room_id: RoomId, session_id: str, sender_key: str | None = None
    ) -> ToDeviceRequest | None:
        """Ask our trusted devices for a room key we miss (in clear: it holds no key).

        An outstanding request for the session is reused (same id). It is sent
        again to every trusted device once ``resend_after_ms`` has passed, and
        at once to devices trusted since it was last sent.

        Args:
            room_id: The room of the undecryptable event.
            session_id: Its ``session_id``.
            sender_key: Its deprecated ``sender_key``, if it had one (echoed in
                the request for older clients, never used to find a session).

        Returns:
            The to-device request to send, or ``None`` when there is nothing to
            send: no trusted device to ask, the request was sent recently, or
            we already hold the session from its first message.

        Raises:
            CryptoMisuseError: if the room id or session id is not valid.
        """
        try:
            room = ids.room_id(room_id)
        except InvalidInputError as exc:
            raise CryptoMisuseError("room key request for an invalid room id") from exc
        if not session_id or len(session_id) > MAX_SESSION_ID:
            raise CryptoMisuseError("room key request for an invalid session id")
        held = self._inbound.get_record(room, session_id)
        if held is not None and held.first_known_index == 0:
            return None  # no copy could decrypt more than ours
        targets = [d.device_id for d in self._own_trusted_devices()]
        if not targets:
            return None
        now = self._ctx.clock.now_ms()
        requests = self._load()
        existing = requests.get((room, session_id))
        if existing is None:
            request = OutgoingKeyRequest(
                _new_id(), room, session_id, sender_key, tuple(targets), now, now
            )
            send_to = targets
        else:
            fresh = [t for t in targets if t not in existing.targets]
            due = now - existing.sent_ms >= self._resend_after_ms
            if not fresh and not due:
                return None
            send_to = targets if due else fresh
            request = replace(
                existing,
                targets=tuple(sorted(set(existing.targets) | set(targets))),
                sent_ms=now if due else existing.sent_ms,
            )
        with self._ctx.batch():
            requests[(room, session_id)] = request
            self._evict(requests)
            self._save()
        return self._message(self._request_content(request), send_to)

    def _evict(self, requests: dict[tuple[RoomId, str], OutgoingKeyRequest]) -> None:
        excess = len(requests) - self._max_outstanding
        if excess <= 0:
            return
        oldest = sorted(requests.values(), key=lambda r: (r.created_ms, r.request_id))
        for request in oldest[:excess]:
            del requests[(request.room_id, request.session_id)]
        log.info("dropped %d old room key requests", excess)

    def cancel(self, room_id: RoomId, session_id: str) -> ToDeviceRequest | None:
        """Close the request for a session (its key arrived some way).

        Returns:
            The ``request_cancellation`` for every device asked, or ``None``
            when no request for the session was outstanding.
        """
        requests = self._load()
        request = requests.get((room_id, session_id))
        if request is None:
            return None
        with self._ctx.batch():
            del requests[(room_id, session_id)]
            self._save()
        return self._cancellation(request)

    def _cancellation(self, request: OutgoingKeyRequest) -> ToDeviceRequest | None:
        content = {
            "action": CANCELLATION,
            "request_id": request.request_id,
            "requesting_device_id": self._ctx.device_id,
        }
        return self._message(content, request.targets)

    # --- answering ---------------------------------------------------------------------

    def receive_request(
        self, event: DecryptedOlmEvent | Mapping[str, Any]
    ) -> ToDeviceRequest | None:
        """Handle an ``m.room_key_request`` (in clear, as the spec sends it, or over Olm).

        Returns:
            The Olm-encrypted ``m.forwarded_room_key`` to send, or ``None`` when
            the request is not answered: it is a cancellation, not from our
            user, from an unknown or untrusted device, for a session we do not
            hold, or the device has no Olm session yet (see
            :meth:`waiting_devices`).

        Raises:
            InvalidInputError: if the event is malformed.
        """
        proven_key: str | None = None
        sender: object
        event_type: object
        content: object
        if isinstance(event, DecryptedOlmEvent):
            sender, event_type, content = event.sender, event.event_type, event.content
            proven_key = event.sender_curve25519
        elif isinstance(event, Mapping):
            sender, event_type, content = (
                event.get("sender"),
                event.get("type"),
                event.get("content"),
            )
        else:
            raise InvalidInputError("to-device event is not an object")
        if event_type != ROOM_KEY_REQUEST:
            raise InvalidInputError("not an m.room_key_request event")
        parsed = parse_request(content)
        if sender != self._ctx.user_id:
            log.info("ignored a room key request from another user")
            return None
        device_id = parsed.requesting_device_id
        if device_id == self._ctx.device_id:
            return None
        if parsed.action == CANCELLATION:
            self._waiting.pop((device_id, parsed.request_id), None)
            return None
        if parsed.action != REQUEST or parsed.room_id is None or parsed.session_id is None:
            return None
        device = self._devices.get_user_devices(self._ctx.user_id).get(device_id)
        if device is None or not is_trusted(device):
            log.info("not forwarding a room key to unverified own device %r", device_id)
            return None
        if proven_key is not None and proven_key != device.curve25519:
            log.warning("ignored a room key request whose Olm sender is not device %r", device_id)
            return None
        return self._answer(device, parsed.request_id, parsed.room_id, parsed.session_id)

    def _answer(
        self, device: Device, request_id: str, room_id: RoomId, session_id: str
    ) -> ToDeviceRequest | None:
        record = self._inbound.get_record(room_id, session_id)
        session_key = self._inbound.export_session(room_id, session_id)
        if record is None or session_key is None:
            log.debug("asked for a room key we do not hold")
            return None
        content = {
            "algorithm": MEGOLM_ALGORITHM,
            "room_id": room_id,
            "session_id": session_id,
            "session_key": session_key,
            "sender_key": record.sender_key,
            "sender_claimed_ed25519_key": record.signing_key,
            # The chain of devices the key passed through before us; the
            # receiver appends our key, as the spec's example shows.
            "forwarding_curve25519_key_chain": list(record.forwarding_chain),
        }
        messages, missing = self._olm.encrypt_for_devices([device], FORWARDED_ROOM_KEY, content)
        key = (device.device_id, request_id)
        if missing or not messages:
            if key in self._waiting or len(self._waiting) < _MAX_WAITING:
                self._waiting[key] = (room_id, session_id)
            return None
        self._waiting.pop(key, None)
        return ToDeviceRequest(_new_id(), ENCRYPTED, _new_id(), messages)

    def waiting_devices(self) -> list[Device]:
        """Trusted devices whose requests wait for an Olm session (claim keys for them)."""
        own = self._devices.get_user_devices(self._ctx.user_id)
        found = {d: own[d] for d, _ in self._waiting if d in own}
        return [found[d] for d in sorted(found)]

    def retry_waiting(self) -> list[ToDeviceRequest]:
        """Answer the requests that waited for an Olm session, where one now exists."""
        out: list[ToDeviceRequest] = []
        own = self._devices.get_user_devices(self._ctx.user_id)
        for (device_id, request_id), (room_id, session_id) in list(self._waiting.items()):
            device = own.get(device_id)
            if device is None or not is_trusted(device):
                del self._waiting[(device_id, request_id)]
                continue
            answer = self._answer(device, request_id, room_id, session_id)
            if answer is not None:
                out.append(answer)
        return out

    # --- receiving -----------------------------------------------------------------------

    def receive_forwarded_key(self, event: DecryptedOlmEvent) -> ForwardedRoomKey:
        """Accept a forwarded room key, after every check.

        Raises:
            ForwardedKeyRejectedError: if it did not arrive over Olm, is not
                from our own trusted device, answers no outstanding request
                sent to that device, or is malformed or not the session it
                names (the request then stays open for another answer).
        """
        event, device, info = accept_from_own_device(
            self._ctx.user_id,
            self._ctx.device_id,
            self._devices,
            event,
            FORWARDED_ROOM_KEY,
            ForwardedKeyRejectedError,
            "forwarded room key",
        )
        try:
            content = parse_forwarded_key(event.content)
        except InvalidInputError as exc:
            raise ForwardedKeyRejectedError(
                f"malformed forwarded room key: {exc}", **info
            ) from None
        info.update(room_id=content.room_id, session_id=content.session_id)
        requests = self._load()
        request = requests.get((content.room_id, content.session_id))
        if request is None:
            raise ForwardedKeyRejectedError("unsolicited forwarded room key", **info)
        if device.device_id not in request.targets:
            raise ForwardedKeyRejectedError(
                "forwarded room key from a device the request was not sent to", **info
            )
        rejected: ForwardedKeyRejectedError | None = None
        with self._ctx.batch():
            try:
                stored = self._inbound.import_session(
                    content.room_id,
                    content.session_key,
                    session_id=content.session_id,
                    sender_key=content.sender_key,
                    signing_key=content.sender_claimed_ed25519_key,
                    source=FORWARD_SOURCE,
                    forwarding_chain=(*content.forwarding_chain, event.sender_curve25519),
                )
            except MegolmError as exc:
                # Raised only after the batch closes, so that a sync batch we
                # joined is not rolled back for one bad forward.
                rejected = ForwardedKeyRejectedError(f"forwarded room key refused: {exc}", **info)
            else:
                del requests[(request.room_id, request.session_id)]
                self._save()
        if rejected is not None:
            raise rejected
        return ForwardedRoomKey(
            room_id=content.room_id,
            session_id=content.session_id,
            device_id=device.device_id,
            room_key=stored,
            cancellation=self._cancellation(request),
        )


__all__ = [
    "ENCRYPTED",
    "FORWARD_SOURCE",
    "STORE_KEY",
    "ForwardedRoomKey",
    "KeyRequests",
]
