"""Keys-and-trust sub-machines of the facade: cross-signing, verification, secret sharing.

:class:`TrustHub` builds them on the shared context, routes the to-device
events that concern them, and collects what they want sent. The facade
(:class:`~messa.crypto.machine.OlmMachine`) only delegates here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from messa.crypto.account import AccountMachine
from messa.crypto.backup import BackupMachine
from messa.crypto.context import CryptoContext
from messa.crypto.cross_signing import CrossSigningMachine, VerificationTrust
from messa.crypto.identities import DeviceTracker
from messa.crypto.interfaces import DecryptedOlmEvent
from messa.crypto.olm import OlmSessions
from messa.crypto.secrets.gossip import ReceivedSecret, SecretGossip
from messa.crypto.secrets.storage import (
    CROSS_SIGNING_MASTER,
    CROSS_SIGNING_SELF_SIGNING,
    CROSS_SIGNING_USER_SIGNING,
    MEGOLM_BACKUP,
)
from messa.crypto.secrets.validation import PublicKeyValidator, validate_backup_key_format
from messa.crypto.verification import (
    VERIFICATION_EVENT_TYPES,
    RoomMessageRequest,
    VerificationMachine,
    VerificationOutgoing,
)
from messa.types.ids import DeviceId, RoomId, UserId
from messa.types.requests import OutgoingRequest, ToDeviceRequest

_CS_NAMES = (CROSS_SIGNING_MASTER, CROSS_SIGNING_SELF_SIGNING, CROSS_SIGNING_USER_SIGNING)


@dataclass(slots=True)
class TrustEvents:
    """What the trust sub-machines made of a batch of to-device events."""

    secrets_received: list[str] = field(default_factory=list)
    """Names of secrets received and accepted (never the values)."""
    verification_events: int = 0


class TrustHub:
    """Cross-signing, verification and secret sharing for one device."""

    def __init__(
        self,
        ctx: CryptoContext,
        account: AccountMachine,
        devices: DeviceTracker,
        olm: OlmSessions,
    ) -> None:
        self._ctx = ctx
        self._devices = devices
        self.cross_signing = CrossSigningMachine(ctx, account, devices)
        self.verification_trust = VerificationTrust(ctx, account, devices, self.cross_signing)
        self.verification = VerificationMachine(self.verification_trust, ctx.clock)
        self.secrets = SecretGossip(
            ctx,
            devices,
            olm,
            secret_provider=self._provide_secret,
            validator=self._validate_secret,
        )
        self._backup: BackupMachine | None = None
        self._to_device: list[ToDeviceRequest] = []
        self._room_messages: list[RoomMessageRequest] = []
        self._received_cs: dict[str, str] = {}
        self._pending_backup_key: str | None = None
        self._ask_secrets_after_flow = False
        self.verification_trust.on_own_identity_verified = self._own_identity_verified

    # -- secrets -----------------------------------------------------------------

    def attach_backup(self, backup: BackupMachine) -> None:
        """The backup machine whose key and version the backup secret is checked against."""
        self._backup = backup

    def backup_public_key(self) -> str | None:
        """Public key of the backup version we trust and upload to, if any."""
        active = self._backup.active if self._backup is not None else None
        return active.public_key if active is not None else None

    def _provide_secret(self, name: str) -> str | None:
        if name in _CS_NAMES:
            seeds = self.cross_signing.export_seeds()
            if seeds is None:
                return None
            return {
                CROSS_SIGNING_MASTER: seeds.master,
                CROSS_SIGNING_SELF_SIGNING: seeds.self_signing,
                CROSS_SIGNING_USER_SIGNING: seeds.user_signing,
            }[name]
        if name == MEGOLM_BACKUP and self._backup is not None:
            key = self._backup.decryption_key
            return key.to_base64() if key is not None else None
        return None

    def validator(self) -> PublicKeyValidator:
        """A validator from the public keys we trust right now."""
        own = self._devices.get_identity(self._ctx.user_id)
        trusted = own is not None and own.verified
        return PublicKeyValidator(
            master=own.master_key.public_key if trusted and own else None,
            self_signing=own.self_signing_key.public_key if trusted and own else None,
            user_signing=(
                own.user_signing_key.public_key
                if trusted and own and own.user_signing_key
                else None
            ),
            backup=self.backup_public_key(),
        )

    def _validate_secret(self, name: str, secret: str) -> None:
        if name == MEGOLM_BACKUP and self.backup_public_key() is None:
            # Nothing to check it against yet (a new device): it is held
            # aside, unused, until checked against the server's trusted backup.
            validate_backup_key_format(secret)
            return
        self.validator()(name, secret)

    def store_backup_key(self, private_key_b64: str) -> None:
        """Keep the backup private key, checked against the backup version we trust."""
        self.validator()(MEGOLM_BACKUP, private_key_b64)
        if self._backup is not None:
            with self._ctx.batch():
                self._backup.set_decryption_key(private_key_b64)

    def backup_private_key(self) -> str | None:
        """The backup private key we hold, if any (secret: never log it)."""
        return self._provide_secret(MEGOLM_BACKUP)

    def _accept_secret(self, received: ReceivedSecret, out: TrustEvents) -> None:
        if received.name in _CS_NAMES:
            self._received_cs[received.name] = received.secret
            if all(n in self._received_cs for n in _CS_NAMES):
                seeds = self._received_cs
                self.cross_signing.import_seeds(
                    seeds[CROSS_SIGNING_MASTER],
                    seeds[CROSS_SIGNING_SELF_SIGNING],
                    seeds[CROSS_SIGNING_USER_SIGNING],
                )
                self._received_cs = {}
        elif received.name == MEGOLM_BACKUP:
            if self.backup_public_key() is None:
                self._pending_backup_key = received.secret
            else:
                self.store_backup_key(received.secret)
        out.secrets_received.append(received.name)

    def request_cross_signing_secrets(self, *, only_missing: bool = False) -> list[ToDeviceRequest]:
        """Ask our other verified devices for the cross-signing and backup keys.

        Args:
            only_missing: Ask only for the keys this device does not hold.
        """
        reqs = self._secret_requests(only_missing=only_missing)
        self._to_device.extend(reqs)
        return reqs

    def _secret_requests(self, *, only_missing: bool) -> list[ToDeviceRequest]:
        names = [*_CS_NAMES, MEGOLM_BACKUP]
        if only_missing:
            names = [n for n in names if self._provide_secret(n) is None]
            if self._pending_backup_key is not None and MEGOLM_BACKUP in names:
                names.remove(MEGOLM_BACKUP)
        return [r for name in names if (r := self.secrets.request_secret(name)) is not None]

    def _own_identity_verified(self) -> None:
        # A device that just verified itself against another of ours gets the
        # keys from it, as a user expects after "verify this device". The
        # request is sent after the flow's own messages (see outgoing_requests):
        # the other device answers only once our "done" made us verified to it.
        self._ask_secrets_after_flow = True

    def take_pending_backup_key(self) -> str | None:
        """A backup key one of our devices sent before we knew which backup to check it against.

        The caller checks it against the server's current backup (which must
        be trusted) and keeps it only if it matches. Secret: never log it.
        """
        key, self._pending_backup_key = self._pending_backup_key, None
        return key

    # -- routing -------------------------------------------------------------------

    def handles_plain(self, event_type: str) -> bool:
        """Whether an unencrypted to-device event of this type is ours."""
        return event_type in VERIFICATION_EVENT_TYPES or event_type == "m.secret.request"

    def receive_plain(self, event: dict[str, Any], out: TrustEvents) -> None:
        """An unencrypted to-device event (verification, secret request)."""
        etype = event.get("type")
        if etype == "m.secret.request":
            reply = self.secrets.receive_request(event)
            if reply is not None:
                self._to_device.append(reply)
        else:
            out.verification_events += 1
            self._queue(self.verification.receive_to_device(event, None))

    def handles_decrypted(self, event_type: str) -> bool:
        """Whether an Olm-decrypted to-device event of this type is ours."""
        return event_type in VERIFICATION_EVENT_TYPES or event_type in (
            "m.secret.request",
            "m.secret.send",
        )

    def receive_decrypted(self, ev: DecryptedOlmEvent, out: TrustEvents) -> None:
        """An Olm-decrypted to-device event (proven sender device)."""
        if ev.event_type == "m.secret.send":
            received = self.secrets.receive_secret_send(ev)
            if received.cancellation is not None:
                self._to_device.append(received.cancellation)
            self._accept_secret(received, out)
        elif ev.event_type == "m.secret.request":
            reply = self.secrets.receive_request(ev)
            if reply is not None:
                self._to_device.append(reply)
        else:
            out.verification_events += 1
            event = {"type": ev.event_type, "sender": ev.sender, "content": ev.content}
            device = ev.sender_device.device_id if ev.sender_device else None
            self._queue(self.verification.receive_to_device(event, device))

    def receive_room_event(
        self, room_id: RoomId, event: dict[str, Any], sender_device: DeviceId | None
    ) -> None:
        """A (decrypted) in-room verification event."""
        self._queue(self.verification.receive_room_event(room_id, event, sender_device))

    def keys_changed(self, users: Iterable[UserId]) -> None:
        """Device or identity keys of these users changed: flows re-check their keys."""
        self._queue(self.verification.keys_changed(list(users)))

    def _queue(self, outgoing: list[VerificationOutgoing]) -> None:
        for item in outgoing:
            if isinstance(item, RoomMessageRequest):
                self._room_messages.append(item)
            else:
                self._to_device.append(item)

    def send(self, outgoing: list[VerificationOutgoing]) -> None:
        """Queue what a verification call on a request object returned."""
        self._queue(outgoing)

    # -- outgoing -------------------------------------------------------------------

    def outgoing_requests(self) -> list[OutgoingRequest]:
        """Signature uploads, verification and secret to-device messages."""
        self._queue(self.verification.expire())
        out: list[OutgoingRequest] = [*self.cross_signing.outgoing_requests()]
        out.extend(self.secrets.retry_waiting())
        out.extend(self._to_device)
        self._to_device = []
        if self._ask_secrets_after_flow:
            self._ask_secrets_after_flow = False
            out.extend(self._secret_requests(only_missing=True))
        return out

    def take_room_messages(self) -> list[RoomMessageRequest]:
        """In-room verification messages the client must send (then report the event id)."""
        out, self._room_messages = self._room_messages, []
        return out
