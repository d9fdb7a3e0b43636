"""Keys and trust on the client: cross-signing, device trust, interactive verification.

Verification flows are driven by the user through the request objects; each
action here sends what the flow produced (to-device messages, or room
messages for in-room verification) and returns. Progress from the other side
arrives with the next syncs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from messa.crypto.cross_signing import CrossSigningStatus
from messa.crypto.verification import (
    Method,
    QrPayload,
    RoomMessageRequest,
    VerificationOutgoing,
    VerificationRequest,
)
from messa.errors import AuthRequiredError, ConfigError
from messa.matrix.uia import UiaChallenge, password_auth
from messa.types.ids import DeviceId, RoomId, UserId, user_id
from messa.types.keys import Device, LocalTrust, UserIdentity

if TYPE_CHECKING:
    from messa.client.wiring import Wiring
    from messa.store.base import Store

ENCRYPTED = "m.room.encrypted"


class TrustMixin:
    """Cross-signing, device trust and verification of :class:`~messa.client.MessaClient`."""

    if TYPE_CHECKING:
        _store: Store

        @property
        def _w(self) -> Wiring: ...

        def _resolve_known(self, room: str) -> RoomId: ...

    # -- cross-signing -----------------------------------------------------------

    async def bootstrap_cross_signing(self, password: str | None = None) -> bool:
        """Create and publish our cross-signing identity if the account has none.

        Returns ``True`` if keys were published now. If the account already
        has an identity, nothing is replaced: verify this device from another
        one, or restore from the recovery key, to get its keys.

        Args:
            password: The account password, for the server's user-interactive
                auth (only needed when the server asks for it).

        Raises:
            ConfigError: if the server needs the password and none was given.
        """
        w = self._w
        await w.pump.flush()
        await self._refresh_own_devices()
        if w.machine.devices.get_identity(w.session.user_id) is not None:
            return False
        await self._publish_cross_signing(password)
        return True

    async def reset_cross_signing(self, password: str | None = None) -> None:
        """Replace the account's cross-signing identity with fresh keys.

        Everyone who verified this account sees an identity change and must
        verify again; do this only when the old keys are lost or compromised.
        """
        await self._publish_cross_signing(password)

    async def _publish_cross_signing(self, password: str | None) -> None:
        w = self._w
        machine = w.machine
        req = machine.trust.cross_signing.bootstrap()
        try:
            await w.api.device_signing_upload(req.body())
        except AuthRequiredError as exc:
            if password is None:
                raise ConfigError("the server asks for the account password") from exc
            challenge = UiaChallenge.from_error(exc)
            auth = password_auth(w.session.user_id, password, challenge.session)
            await w.api.device_signing_upload(req.body(), auth=auth)
        with machine.batch():
            machine.trust.cross_signing.mark_upload_sent(req.request_id)
        await w.pump.flush()  # re-query our identity, then sign this device
        await w.pump.flush()

    async def _refresh_own_devices(self) -> None:
        w = self._w
        machine = w.machine
        machine.update_tracked_users([w.session.user_id])
        with machine.batch():
            machine.devices.mark_changed([w.session.user_id])
        await w.pump.flush()

    def cross_signing_status(self) -> CrossSigningStatus:
        """Which of the account's private cross-signing keys this device holds.

        A device holding all three (and matching the published identity) can
        verify other users and its own new devices for the whole account.
        """
        return self._w.machine.trust.cross_signing.status()

    def identity_alerts(self) -> list[UserIdentity]:
        """Users whose identity changed since we pinned or verified it (alert the user).

        ``verification_violation`` is set for users we had verified: their
        devices are no longer trusted until the user re-verifies or accepts
        the change with :meth:`pin_identity`.
        """
        return self._w.machine.devices.changed_identities()

    def pin_identity(self, user: str) -> UserIdentity:
        """Accept a user's changed identity (their earlier verification is withdrawn)."""
        w = self._w
        with w.machine.batch():
            return w.machine.devices.pin_identity(user_id(user))

    def identity(self, user: str) -> UserIdentity | None:
        """A user's cross-signing identity as we know it (``None`` if none is known)."""
        return self._w.machine.devices.get_identity(user_id(user))

    # -- devices ---------------------------------------------------------------------

    async def devices(self, user: str | None = None, *, refresh: bool = True) -> list[Device]:
        """A user's devices (ours by default) with their trust state."""
        w = self._w
        uid = user_id(user) if user else w.session.user_id
        if refresh:
            w.machine.update_tracked_users([uid])
            with w.machine.batch():
                w.machine.devices.mark_changed([uid])
            await w.pump.flush()
        return w.machine.get_user_devices(uid)

    def set_device_trust(self, user: str, device: str, trust: LocalTrust) -> None:
        """Mark a device verified, blocked, or back to unset, on this device only."""
        self._w.machine.set_local_trust(user_id(user), DeviceId(device), trust)

    # -- verification --------------------------------------------------------------------

    def verification_requests(self) -> list[VerificationRequest]:
        """Every verification request this client knows (ours and incoming)."""
        return self._w.machine.trust.verification.requests()

    def incoming_verifications(self) -> list[VerificationRequest]:
        """Requests from others waiting for us to accept."""
        return self._w.machine.trust.verification.incoming_requests()

    async def request_verification(
        self,
        user: str,
        device: str | None = None,
        *,
        room: str | None = None,
        methods: Sequence[Method] | None = None,
    ) -> VerificationRequest:
        """Ask a user (in a room) or some devices (to-device) to verify with us.

        Own devices are verified over to-device messages; another user
        preferably in a (direct) room shared with them.
        """
        w = self._w
        uid = user_id(user)
        verification = w.machine.trust.verification
        await self.devices(uid)
        if room is not None:
            request, out = verification.request_verification_in_room(
                self._resolve_known(room), uid, methods
            )
        else:
            devices = [DeviceId(device)] if device else None
            request, out = verification.request_verification(uid, devices, methods)
        await self._send_verification(out)
        return request

    async def _send_verification(self, out: Sequence[VerificationOutgoing]) -> None:
        w = self._w
        w.machine.trust.send(list(out))
        await w.pump.flush()
        for msg in w.machine.trust.take_room_messages():
            await self._send_room_verification(msg)

    async def _send_room_verification(self, msg: RoomMessageRequest) -> None:
        w = self._w
        room = self._store.get_room(msg.room_id)
        event_type, content = msg.event_type, msg.content
        if room is not None and room.encryption is not None:
            await w.pump.share_room_key(room)
            relates = content.get("m.relates_to")
            with w.machine.batch():
                content = w.machine.encrypt_room_event(msg.room_id, event_type, content)
            if relates is not None:
                content["m.relates_to"] = relates  # the relation stays visible, as the spec asks
            event_type = ENCRYPTED
        event_id = await w.api.send_event(msg.room_id, event_type, content, msg.txn_id)
        w.machine.trust.verification.room_message_sent(msg.txn_id, event_id)

    async def accept_verification(self, request: VerificationRequest) -> None:
        """Accept an incoming request (we become ready)."""
        if not request.keys_known:
            await self.devices(request.other_user)
        await self._send_verification(request.accept())

    async def start_sas(self, request: VerificationRequest) -> None:
        """Start emoji (SAS) verification on a ready request."""
        await self._send_verification(request.start_sas())

    async def confirm_sas(self, request: VerificationRequest) -> None:
        """The user saw the same emoji on both devices."""
        await self._send_verification(request.confirm_sas())

    async def sas_mismatch(self, request: VerificationRequest) -> None:
        """The emoji differ: cancel (someone may be in the middle)."""
        await self._send_verification(request.sas_mismatch())

    async def scan_qr_code(
        self, request: VerificationRequest, scanned: bytes | str | QrPayload
    ) -> None:
        """We scanned the other device's QR code (its payload, raw or base64)."""
        await self._send_verification(request.scan_qr_code(scanned))

    async def confirm_qr_scanned(self, request: VerificationRequest) -> None:
        """The user confirms the other device scanned our QR code."""
        await self._send_verification(request.confirm_qr_scanned())

    async def cancel_verification(self, request: VerificationRequest) -> None:
        """Cancel a verification flow."""
        await self._send_verification(request.cancel())

    async def request_own_secrets(self) -> None:
        """Ask our other verified devices for the cross-signing and backup keys.

        This happens by itself when this device verifies itself against
        another of ours; call it to ask again (e.g. that device was offline).
        The answers arrive with the next syncs.
        """
        self._w.machine.trust.request_cross_signing_secrets()
        await self._w.pump.flush()

    @staticmethod
    def _user(value: str) -> UserId:
        return user_id(value)
