"""``OlmSessions``: Olm session setup, to-device encryption and decryption, unwedging.

Implements :class:`~messa.crypto.interfaces.OlmEncryptor` for the Megolm side.
Each public operation commits its writes (ratchet states, the account when
a one-time key is used, the unwedging queue) in one batch. Errors about
remote input are raised only after the batch closed, so that what did
happen (a consumed one-time key, an advanced ratchet) is saved first.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from messa.crypto import _vodozemac as vz
from messa.crypto.account import AccountMachine
from messa.crypto.context import CryptoContext
from messa.crypto.identities.tracker import DeviceTracker
from messa.crypto.interfaces import DecryptedOlmEvent
from messa.crypto.olm.claims import ClaimResult, ClaimTracker, validate_claimed_key
from messa.crypto.olm.content import (
    NORMAL,
    PRE_KEY,
    OlmCiphertext,
    build_payload,
    check_payload,
    encrypted_content,
    parse_encrypted_event,
)
from messa.crypto.olm.store import OlmSession, SessionCache
from messa.crypto.olm.unwedge import Unwedger
from messa.errors import (
    CryptoMisuseError,
    OlmDecryptionError,
    OlmReplayError,
    RemoteCryptoError,
)
from messa.store.base import Changes
from messa.types.keys import Device
from messa.types.requests import KeysClaimRequest, ToDeviceMessages, ToDeviceRequest

ENCRYPTED = "m.room.encrypted"
REQUEST_TIMEOUT_MS = 60_000
"""An unanswered ``m.dummy`` request counts as lost after this; it is rebuilt."""


class OlmSessions:
    """Olm sessions of this device with every other device.

    Args:
        ctx: The shared crypto context.
        account: Our account (creates sessions, consumes one-time keys).
        tracker: Known devices (to check payload keys and find devices to unwedge).
        max_cached_devices: How many devices' sessions to keep in memory.
        claim_backoff_ms: Wait this long before claiming again for a device
            whose last claim returned no usable key.
    """

    def __init__(
        self,
        ctx: CryptoContext,
        account: AccountMachine,
        tracker: DeviceTracker,
        *,
        max_cached_devices: int = 2000,
        claim_backoff_ms: int = 15 * 60_000,
    ) -> None:
        self._ctx = ctx
        self._account = account
        self._tracker = tracker
        self._cache = SessionCache(ctx, max_devices=max_cached_devices)
        self._claims = ClaimTracker(ctx.clock, backoff_ms=claim_backoff_ms)
        self._unwedger = Unwedger(ctx)
        # to-device request id -> (curve keys, time sent) of m.dummy requests in flight
        self._dummies: dict[str, tuple[list[str], int]] = {}

    # --- queries -----------------------------------------------------------

    def _is_own(self, device: Device) -> bool:
        return device.user_id == self._ctx.user_id and device.device_id == self._ctx.device_id

    def has_session(self, device: Device) -> bool:
        """Whether we share an Olm session with ``device``."""
        return self._cache.has_session(device.curve25519)

    def claim_failed(self, device: Device) -> bool:
        """Whether the last claim for ``device`` recently gave no usable key (``m.no_olm``)."""
        return self._claims.recently_failed(device)

    def session_ids(self, device: Device) -> list[str]:
        """Ids of our sessions with ``device``, most recently used first."""
        return [s.session_id for s in self._cache.sessions(device.curve25519)]

    # --- session setup --------------------------------------------------------

    def missing_sessions_request(self, devices: Iterable[Device]) -> KeysClaimRequest | None:
        """Claim one-time keys for the devices we have no session with.

        Skips our own device, deleted devices, devices with a claim in flight
        and devices whose last claim failed within the backoff.
        """
        wanted = [
            d
            for d in devices
            if not self._is_own(d)
            and not d.deleted
            and not self._claims.recently_failed(d)
            and not self._claims.in_flight(d)
            and not self._cache.has_session(d.curve25519)
        ]
        return self._claims.request(wanted)

    def receive_claim_response(self, request_id: str, response: object) -> ClaimResult:
        """Create outbound sessions from a ``/keys/claim`` answer. Never raises for bad input.

        Each returned key must be a ``signed_curve25519`` key signed by the
        device's Ed25519 key; devices without a usable key are recorded as
        failed. Answers to unknown or expired claims are ignored.
        """
        result = ClaimResult()
        claim = self._claims.take(request_id)
        if claim is None:
            return result
        body = response if isinstance(response, dict) else {}
        all_keys = body.get("one_time_keys")
        if not isinstance(all_keys, dict):
            all_keys = {}
        with self._ctx.batch() as changes:
            for (user, dev), device in claim.devices.items():
                user_keys = all_keys.get(user)
                keys = user_keys.get(dev) if isinstance(user_keys, dict) else None
                session = None
                if keys is not None:
                    try:
                        otk = validate_claimed_key(device, keys)
                        session = self._account.create_outbound_session(device.curve25519, otk)
                    except RemoteCryptoError as exc:
                        result.rejected.append(exc)
                if session is None:
                    self._claims.record_failure(device)
                    result.failed.append(device)
                    if self._unwedger.is_queued(device.curve25519, "claim"):
                        self._unwedger.done(changes, device.curve25519)
                    continue
                now = self._ctx.clock.now_ms()
                self._cache.add(changes, OlmSession(device.curve25519, session, now, now))
                self._claims.clear_failure(device)
                result.created.append(device)
                if self._unwedger.is_queued(device.curve25519, "claim"):
                    self._unwedger.advance(changes, device.curve25519)
        return result

    # --- encryption ------------------------------------------------------------

    def _encrypt_bytes(self, changes: Changes, device: Device, plaintext: bytes) -> dict[str, Any]:
        session = self._cache.most_recent(device.curve25519)
        if session is None:
            raise CryptoMisuseError(f"no Olm session with {device.user_id} {device.device_id}")
        message = session.session.encrypt(plaintext)
        self._cache.touch(changes, session)
        return encrypted_content(self._account.curve25519, device.curve25519, message)

    def _payload(self, device: Device, event_type: str, content: dict[str, Any]) -> bytes:
        try:
            return build_payload(
                sender=self._ctx.user_id,
                sender_device=self._ctx.device_id,
                sender_ed25519=self._account.ed25519,
                recipient=device,
                event_type=event_type,
                content=content,
            )
        except (TypeError, ValueError) as exc:
            raise CryptoMisuseError("to-device content is not JSON-serializable") from exc

    def encrypt(self, device: Device, event_type: str, content: dict[str, Any]) -> dict[str, Any]:
        """Olm-encrypt one event for ``device``; return the ``m.room.encrypted`` content.

        Raises:
            CryptoMisuseError: if we have no session with the device, or the
                content is not JSON.
        """
        plaintext = self._payload(device, event_type, content)
        with self._ctx.batch() as changes:
            return self._encrypt_bytes(changes, device, plaintext)

    def encrypt_for_devices(
        self, devices: Iterable[Device], event_type: str, content: dict[str, Any]
    ) -> tuple[ToDeviceMessages, list[Device]]:
        """Encrypt for each device; return the messages and the devices with no session.

        Our own device is skipped (it is neither encrypted for nor reported).
        """
        messages: ToDeviceMessages = {}
        missing: list[Device] = []
        with self._ctx.batch() as changes:
            for device in devices:
                if self._is_own(device):
                    continue
                if not self._cache.has_session(device.curve25519):
                    missing.append(device)
                    continue
                plaintext = self._payload(device, event_type, content)
                messages.setdefault(device.user_id, {})[device.device_id] = self._encrypt_bytes(
                    changes, device, plaintext
                )
        return messages, missing

    # --- decryption ------------------------------------------------------------

    def decrypt(self, event: object) -> DecryptedOlmEvent:
        """Decrypt an incoming to-device ``m.room.encrypted`` event (Olm).

        Raises:
            UnknownAlgorithmError: if the event is not Olm-encrypted.
            OlmReplayError: if it replays a pre-key message already used.
            OlmDecryptionError: if it is malformed, not for us, or does not decrypt.
            OlmPayloadError: if the plaintext fails the spec's payload checks.
        """
        ciphertext = parse_encrypted_event(event, self._account.curve25519)
        error: RemoteCryptoError | None = None
        result: DecryptedOlmEvent | None = None
        with self._ctx.batch() as changes:
            device = self._tracker.get_device_by_curve_key(ciphertext.sender, ciphertext.sender_key)
            try:
                plaintext = self._decrypt_message(changes, ciphertext)
                checked = check_payload(
                    plaintext,
                    ciphertext,
                    our_user=self._ctx.user_id,
                    our_ed25519=self._account.ed25519,
                    sender_device=device,
                )
            except OlmReplayError as exc:
                error = exc
            except OlmDecryptionError as exc:
                if ciphertext.message_type == NORMAL and device is not None:
                    self._unwedger.maybe_queue(changes, device)
                error = exc
            except RemoteCryptoError as exc:
                error = exc
            else:
                result = DecryptedOlmEvent(
                    sender=ciphertext.sender,
                    sender_curve25519=ciphertext.sender_key,
                    sender_ed25519=checked.sender_ed25519,
                    sender_device=device,
                    event_type=checked.event_type,
                    content=checked.content,
                )
        if error is not None:
            raise error
        assert result is not None
        return result

    def _decrypt_message(self, changes: Changes, ct: OlmCiphertext) -> bytes:
        def fail(message: str, cls: type[OlmDecryptionError] = OlmDecryptionError) -> Exception:
            return cls(message, sender=ct.sender, sender_key=ct.sender_key)

        try:
            message = vz.AnyOlmMessage.from_parts(ct.message_type, ct.body)
        except (ValueError, TypeError) as exc:  # the binding's errors are ValueErrors
            raise fail("malformed Olm message") from exc
        sessions = self._cache.sessions(ct.sender_key)
        if ct.message_type == PRE_KEY:
            pre_key = message.to_pre_key()
            if pre_key is None:
                raise fail("malformed pre-key message")
            for session in sessions:
                if session.session.session_matches(pre_key):
                    # Messages of a session decrypt once each: a failure here is a
                    # replay (or a corrupted copy) of a message already seen.
                    return self._decrypt_with(changes, session, message, OlmReplayError)
            if any(s.session_id == pre_key.session_id() for s in sessions):
                raise fail("pre-key message replayed", OlmReplayError)
            inbound, plaintext = self._account.create_inbound_session(ct.sender_key, pre_key)
            now = self._ctx.clock.now_ms()
            self._cache.add(changes, OlmSession(ct.sender_key, inbound, now, now))
            return plaintext
        for session in sessions:
            try:
                return self._decrypt_with(changes, session, message, OlmDecryptionError)
            except OlmDecryptionError:
                continue
        raise fail("no Olm session could decrypt the message")

    def _decrypt_with(
        self,
        changes: Changes,
        session: OlmSession,
        message: vz.AnyOlmMessage,
        error: type[OlmDecryptionError],
    ) -> bytes:
        try:
            plaintext = session.session.decrypt(message)
        except (ValueError, TypeError) as exc:  # the binding's errors are ValueErrors
            raise error("Olm message did not decrypt", sender_key=session.sender_key) from exc
        self._cache.touch(changes, session)
        return plaintext

    # --- unwedging requests --------------------------------------------------

    def outgoing_requests(self) -> list[KeysClaimRequest | ToDeviceRequest]:
        """Requests unwedging needs now: claims for fresh sessions, then ``m.dummy``."""
        out: list[KeysClaimRequest | ToDeviceRequest] = []
        now = self._ctx.clock.now_ms()
        for request_id, (_, sent_ms) in list(self._dummies.items()):
            if now - sent_ms >= REQUEST_TIMEOUT_MS:
                del self._dummies[request_id]
        busy = {curve for curves, _ in self._dummies.values() for curve in curves}
        with self._ctx.batch() as changes:
            to_claim: list[Device] = []
            for curve, user, dev in self._unwedger.queued("claim"):
                device = self._tracker.get_device(user, dev)
                if device is None or device.curve25519 != curve:
                    self._unwedger.done(changes, curve)
                elif not self._claims.in_flight(device):
                    to_claim.append(device)
            claim = self._claims.request(to_claim)
            if claim is not None:
                out.append(claim)
            messages: ToDeviceMessages = {}
            curves: list[str] = []
            for curve, user, dev in self._unwedger.queued("dummy"):
                if curve in busy:
                    continue
                device = self._tracker.get_device(user, dev)
                if device is None or device.curve25519 != curve or not self.has_session(device):
                    self._unwedger.done(changes, curve)
                    continue
                plaintext = self._payload(device, "m.dummy", {})
                messages.setdefault(user, {})[dev] = self._encrypt_bytes(changes, device, plaintext)
                curves.append(curve)
            if messages:
                request_id = uuid.uuid4().hex
                out.append(ToDeviceRequest(request_id, ENCRYPTED, request_id, messages))
                self._dummies[request_id] = (curves, now)
        return out

    def mark_request_as_sent(self, request_id: str, response: object) -> None:
        """Feed back the answer to a request from :meth:`outgoing_requests`.

        Unknown request ids are ignored.
        """
        if self._claims.is_claim(request_id):
            self.receive_claim_response(request_id, response)
            return
        entry = self._dummies.pop(request_id, None)
        if entry is None:
            return
        with self._ctx.batch() as changes:
            for curve in entry[0]:
                self._unwedger.done(changes, curve)

    def request_failed(self, request_id: str) -> None:
        """Forget a request that could not be sent; it is rebuilt next time."""
        self._claims.take(request_id)
        self._dummies.pop(request_id, None)
