"""Our outbound Megolm sessions: creation, rotation, key sharing, encryption.

One session per room. It is replaced when it is too old or has encrypted too
many messages, when the room's settings change, when it was invalidated, and
when a device that holds its key is no longer among the recipients (a member
left, a device was deleted, a device became blocked): the departed device
must not read anything sent after that.
"""

from __future__ import annotations

import logging
import secrets
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from messa.crypto import _vodozemac as vz
from messa.crypto.canonical import canonical_json
from messa.crypto.context import CryptoContext
from messa.crypto.interfaces import DeviceSource, OlmEncryptor, SharingPolicy, WithheldCode
from messa.crypto.megolm.settings import EncryptionSettings
from messa.errors import CryptoError, CryptoMisuseError
from messa.store.base import Changes, InboundGroupSessionRecord, OutboundGroupSessionRecord
from messa.types.ids import Curve25519Key, DeviceId, Ed25519Key, RoomId, UserId
from messa.types.keys import MEGOLM_ALGORITHM, Device
from messa.types.requests import ToDeviceMessages, ToDeviceRequest

log = logging.getLogger(__name__)

#: Most device messages per ``/sendToDevice`` request (servers cap request sizes).
MAX_MESSAGES_PER_REQUEST = 250
ROOM_KEY_EVENT = "m.room_key"
WITHHELD_EVENT = "m.room_key.withheld"
ENCRYPTED_EVENT = "m.room.encrypted"
# Persisted marker: "m.no_olm already sent to this device" (keyed by its Curve25519 key).
NO_OLM_SENT_PREFIX = "megolm.no_olm_sent/"
_CACHE_SIZE = 256

WITHHELD_REASONS: dict[WithheldCode, str] = {
    WithheldCode.BLACKLISTED: "The sender has blocked this device.",
    WithheldCode.UNVERIFIED: "The sender only shares keys with verified devices.",
    WithheldCode.UNAUTHORISED: "This device is not allowed to have the key.",
    WithheldCode.UNAVAILABLE: "The requested key is not available.",
    WithheldCode.NO_OLM: "Unable to establish a secure channel.",
}


def _new_id() -> str:
    return secrets.token_urlsafe(18)


def chunk_to_device(event_type: str, messages: ToDeviceMessages) -> list[ToDeviceRequest]:
    """Split per-device messages into requests of at most ``MAX_MESSAGES_PER_REQUEST``."""
    requests: list[ToDeviceRequest] = []
    current: ToDeviceMessages = {}
    count = 0
    for user, devices in messages.items():
        for device, content in devices.items():
            current.setdefault(user, {})[device] = content
            count += 1
            if count == MAX_MESSAGES_PER_REQUEST:
                requests.append(ToDeviceRequest(_new_id(), event_type, _new_id(), current))
                current, count = {}, 0
    if count:
        requests.append(ToDeviceRequest(_new_id(), event_type, _new_id(), current))
    return requests


@dataclass(slots=True)
class _Live:
    """A session object together with the record it was loaded from."""

    session: vz.GroupSession
    record: OutboundGroupSessionRecord


class OutboundGroupSessions:
    """Creates, rotates and shares our Megolm sessions, and encrypts room events.

    Args:
        ctx: Shared crypto context (identity, store, clock, batch).
        olm: Encrypts the ``m.room_key`` payloads for each device.
        devices: Source of the recipients' devices.
        own_keys: Our device's (Curve25519, Ed25519) identity keys.
        policy: Decides which devices may receive keys.
    """

    def __init__(
        self,
        ctx: CryptoContext,
        olm: OlmEncryptor,
        devices: DeviceSource,
        own_keys: tuple[Curve25519Key, Ed25519Key],
        policy: SharingPolicy,
    ) -> None:
        self._ctx = ctx
        self._olm = olm
        self._devices = devices
        self._curve25519, self._ed25519 = own_keys
        self.policy = policy
        self._cache: OrderedDict[RoomId, _Live] = OrderedDict()
        ctx.on_rollback(self._cache.clear)

    # --- queries -------------------------------------------------------------

    def has_session(self, room_id: RoomId) -> bool:
        """Whether the room has a usable (not invalidated) outbound session."""
        live = self._load(room_id)
        return live is not None and not live.record.invalidated

    def session_id(self, room_id: RoomId) -> str | None:
        """The id of the room's current outbound session, if any."""
        live = self._load(room_id)
        return None if live is None or live.record.invalidated else live.record.session_id

    # --- commands ------------------------------------------------------------

    def invalidate(self, room_id: RoomId) -> None:
        """Force the next :meth:`share_room_key` for this room to start a new session."""
        with self._ctx.batch() as changes:
            live = self._load(room_id)
            if live is None or live.record.invalidated:
                return
            self._save(live, replace(live.record, invalidated=True), changes)

    def share_room_key(
        self, room_id: RoomId, users: Iterable[UserId], settings: EncryptionSettings
    ) -> list[ToDeviceRequest]:
        """Make sure every recipient device holds the room's current key.

        Rotates the session first when needed. Returns the to-device requests
        to send (``m.room.encrypted`` with the key, ``m.room_key.withheld``
        notices); an empty list when every device is already served.

        Args:
            room_id: The room.
            users: Members who should receive the key (see
                :func:`~messa.crypto.megolm.settings.room_key_recipients`). Our
                own user is always added, so our other devices get the key.
            settings: The room's current encryption settings.
        """
        with self._ctx.batch() as changes:
            recipients = self._recipients(users)
            decisions = {key: self.policy.withheld_code(dev) for key, dev in recipients.items()}
            live = self._load(room_id)
            if live is None or self._must_rotate(live.record, settings, recipients, decisions):
                live = self._create(room_id, settings, changes)
            return self._share(live, recipients, decisions, changes)

    def encrypt(self, room_id: RoomId, event_type: str, content: dict[str, Any]) -> dict[str, Any]:
        """Megolm-encrypt a room event; return the ``m.room.encrypted`` content.

        Raises:
            CryptoMisuseError: if the room has no current session (call
                :meth:`share_room_key` first, and send its requests before the
                event), or the content is not JSON.
        """
        with self._ctx.batch() as changes:
            live = self._load(room_id)
            if live is None or live.record.invalidated:
                raise CryptoMisuseError("no room key shared for this room; share it first")
            if self._expired(live.record, EncryptionSettings.from_dict(live.record.settings)):
                raise CryptoMisuseError("the room key has expired; share a new one first")
            payload = {"type": event_type, "content": content, "room_id": room_id}
            try:
                plaintext = canonical_json(payload)
            except (TypeError, ValueError) as exc:
                raise CryptoMisuseError("event content is not valid JSON") from exc
            message = live.session.encrypt(plaintext)
            record = replace(
                live.record,
                message_count=live.record.message_count + 1,
                pickle=live.session.pickle(self._ctx.pickle_key),
            )
            self._save(live, record, changes)
            encrypted: dict[str, Any] = {
                "algorithm": MEGOLM_ALGORITHM,
                # Deprecated fields, still read by many clients; never trusted by us.
                "sender_key": self._curve25519,
                "device_id": self._ctx.device_id,
                "session_id": record.session_id,
                "ciphertext": message.to_base64(),
            }
            relates_to = content.get("m.relates_to")
            if isinstance(relates_to, dict):
                # The server aggregates relations (threads, edits) without seeing plaintext.
                encrypted["m.relates_to"] = relates_to
            return encrypted

    # --- internals -----------------------------------------------------------

    def _load(self, room_id: RoomId) -> _Live | None:
        live = self._cache.get(room_id)
        if live is not None:
            self._cache.move_to_end(room_id)
            return live
        record = self._ctx.store.get_outbound_group_session(room_id)
        if record is None:
            return None
        with vz.translate(CryptoError, "stored outbound Megolm session is unreadable"):
            session = vz.GroupSession.from_pickle(record.pickle, self._ctx.pickle_key)
        live = _Live(session, record)
        self._remember(room_id, live)
        return live

    def _remember(self, room_id: RoomId, live: _Live) -> None:
        self._cache[room_id] = live
        self._cache.move_to_end(room_id)
        while len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)

    def _save(self, live: _Live, record: OutboundGroupSessionRecord, changes: Changes) -> None:
        live.record = record
        changes.outbound_group_sessions.append(record)
        self._remember(record.room_id, live)

    def _recipients(self, users: Iterable[UserId]) -> dict[tuple[UserId, DeviceId], Device]:
        wanted = set(users)
        wanted.add(self._ctx.user_id)
        result: dict[tuple[UserId, DeviceId], Device] = {}
        for user in sorted(wanted):
            for device_id, device in self._devices.get_user_devices(user).items():
                if device.deleted or device.user_id != user or device.device_id != device_id:
                    continue
                if user == self._ctx.user_id and device_id == self._ctx.device_id:
                    continue
                result[(user, device_id)] = device
        return result

    def _expired(self, record: OutboundGroupSessionRecord, settings: EncryptionSettings) -> bool:
        age = self._ctx.clock.now_ms() - record.created_ms
        return (
            record.message_count >= settings.rotation_period_msgs
            or age >= settings.rotation_period_ms
            # A clock that jumped backwards must not keep a session alive forever.
            or age < 0
        )

    def _must_rotate(
        self,
        record: OutboundGroupSessionRecord,
        settings: EncryptionSettings,
        recipients: dict[tuple[UserId, DeviceId], Device],
        decisions: dict[tuple[UserId, DeviceId], WithheldCode | None],
    ) -> bool:
        if record.invalidated or record.settings != settings.to_dict():
            return True
        if self._expired(record, settings):
            return True
        # Every device that holds the key must still be an allowed recipient
        # with the same identity key; otherwise it could read what follows.
        for user, devices in record.shared_with.items():
            for device_id, entry in devices.items():
                if "index" not in entry:
                    continue
                key = (UserId(user), DeviceId(device_id))
                device = recipients.get(key)
                if device is None or decisions.get(key) is not None:
                    return True
                if device.curve25519 != entry.get("curve25519"):
                    return True
        return False

    def _create(self, room_id: RoomId, settings: EncryptionSettings, changes: Changes) -> _Live:
        session = vz.GroupSession()
        now = self._ctx.clock.now_ms()
        record = OutboundGroupSessionRecord(
            room_id=room_id,
            session_id=session.session_id,
            pickle=session.pickle(self._ctx.pickle_key),
            created_ms=now,
            message_count=0,
            shared_with={},
            settings=settings.to_dict(),
        )
        # Our own inbound copy, so we can read our own messages (and other
        # devices of ours can later be given it).
        inbound = vz.InboundGroupSession(session.session_key)
        changes.inbound_group_sessions.append(
            InboundGroupSessionRecord(
                room_id=room_id,
                session_id=session.session_id,
                sender_key=self._curve25519,
                signing_key=self._ed25519,
                sender_user=self._ctx.user_id,
                pickle=inbound.pickle(self._ctx.pickle_key),
                first_known_index=inbound.first_known_index,
                authenticated=True,
                source="own",
            )
        )
        log.debug("created outbound Megolm session for a room")
        live = _Live(session, record)
        self._save(live, record, changes)
        return live

    def _share(
        self,
        live: _Live,
        recipients: dict[tuple[UserId, DeviceId], Device],
        decisions: dict[tuple[UserId, DeviceId], WithheldCode | None],
        changes: Changes,
    ) -> list[ToDeviceRequest]:
        record = live.record
        shared = record.shared_with
        to_share: list[Device] = []
        withhold: list[tuple[Device, WithheldCode]] = []
        for key, device in recipients.items():
            entry = shared.get(key[0], {}).get(key[1])
            if entry is not None and entry.get("curve25519") != device.curve25519:
                entry = None  # a new device reusing an old id: nothing was sent to it
            if entry is not None and "index" in entry:
                continue  # already holds this session
            code = decisions[key]
            if code is None:
                to_share.append(device)
            elif entry is None:
                withhold.append((device, code))  # each notice only once per session
        if not to_share and not withhold:
            return []

        new_shared = {user: dict(devs) for user, devs in shared.items()}
        requests: list[ToDeviceRequest] = []
        if to_share:
            index = live.session.message_index
            content = {
                "algorithm": MEGOLM_ALGORITHM,
                "room_id": record.room_id,
                "session_id": record.session_id,
                "session_key": live.session.session_key.to_base64(),
            }
            encrypted, missing = self._olm.encrypt_for_devices(to_share, ROOM_KEY_EVENT, content)
            asked = {(d.user_id, d.device_id): d for d in to_share}
            messages: ToDeviceMessages = {}
            for user, devs in encrypted.items():
                for device_id, message in devs.items():
                    target = asked.get((user, device_id))
                    if target is None:
                        continue  # never send a key to a device we did not choose
                    messages.setdefault(user, {})[device_id] = message
                    new_shared.setdefault(user, {})[device_id] = {
                        "curve25519": target.curve25519,
                        "index": index,
                    }
            requests.extend(chunk_to_device(ENCRYPTED_EVENT, messages))
            withhold.extend(
                (d, WithheldCode.NO_OLM)
                for d in missing
                if shared.get(d.user_id, {}).get(d.device_id, {}).get("curve25519") != d.curve25519
            )
        requests.extend(self._withhold(record, withhold, new_shared, changes))
        self._save(live, replace(record, shared_with=new_shared), changes)
        return requests

    def _withhold(
        self,
        record: OutboundGroupSessionRecord,
        withhold: list[tuple[Device, WithheldCode]],
        new_shared: dict[str, dict[str, dict[str, Any]]],
        changes: Changes,
    ) -> list[ToDeviceRequest]:
        common = {
            "algorithm": MEGOLM_ALGORITHM,
            "sender_key": self._curve25519,
            "from_device": self._ctx.device_id,
        }
        by_code: dict[WithheldCode, ToDeviceMessages] = {}
        for device, code in withhold:
            new_shared.setdefault(device.user_id, {})[device.device_id] = {
                "curve25519": device.curve25519,
                "withheld": str(code),
            }
            if code is WithheldCode.NO_OLM:
                # The spec asks for one notice per device, not per session,
                # without room or session, so a device's mailbox does not fill.
                marker = NO_OLM_SENT_PREFIX + device.curve25519
                if self._ctx.store.get_value(marker) is not None or marker in changes.values:
                    continue
                changes.values[marker] = b"1"
                content: dict[str, Any] = {**common, "code": str(code)}
            else:
                content = {
                    **common,
                    "room_id": record.room_id,
                    "session_id": record.session_id,
                    "code": str(code),
                }
            content["reason"] = WITHHELD_REASONS.get(code, str(code))
            by_code.setdefault(code, {}).setdefault(device.user_id, {})[device.device_id] = content
        requests: list[ToDeviceRequest] = []
        for messages in by_code.values():
            requests.extend(chunk_to_device(WITHHELD_EVENT, messages))
        return requests
