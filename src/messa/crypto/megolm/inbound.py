"""Inbound Megolm sessions: receiving room keys and decrypting room events.

Security rules this module enforces:

* A session is found only by ``(room_id, session_id)``; the cleartext
  ``sender_key`` / ``device_id`` of an event are never trusted.
* The session's owner must be the event's ``sender``: the owning device must
  be a device of that user, and the decrypted payload's ``room_id`` must be
  the room the event arrived in.
* Each ``(session, message index)`` belongs to one event id, persisted, so a
  replayed ciphertext under a new event id is refused even after a restart.
* A worse copy of a session (later first index, unauthenticated, or not
  connected to ours) never replaces a better one.
"""

from __future__ import annotations

import hmac
import logging
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from messa.crypto import _vodozemac as vz
from messa.crypto.context import CryptoContext
from messa.crypto.interfaces import DecryptedOlmEvent, DeviceSource
from messa.crypto.megolm import _parse
from messa.crypto.megolm._replay import ReplayRecords
from messa.crypto.megolm.state import dump_session, load_session
from messa.errors import InvalidInputError, MegolmError
from messa.store.base import InboundGroupSessionRecord, WithheldRecord
from messa.types import ids
from messa.types.events import (
    Decrypted,
    DecryptionResult,
    EncryptionInfo,
    UnableToDecrypt,
    UtdReason,
)
from messa.types.ids import Curve25519Key, DeviceId, Ed25519Key, RoomId, UserId
from messa.types.keys import Device, TrustState

log = logging.getLogger(__name__)

ROOM_KEY_EVENT = "m.room_key"
DEFAULT_CACHE_SIZE = 1000


@dataclass(frozen=True, slots=True)
class RoomKeyInfo:
    """A session that was stored or improved: events waiting for it can be retried."""

    room_id: RoomId
    session_id: str


@dataclass(slots=True)
class _Live:
    session: vz.InboundGroupSession
    record: InboundGroupSessionRecord


@dataclass(frozen=True, slots=True)
class PreparedSession:
    """A session key that passed its checks, ready for ``store_sessions``.

    ``record`` describes the session, its ``pickle`` being the session's
    stored state. Both are secret key material: never log them.
    """

    session: vz.InboundGroupSession = field(repr=False)
    record: InboundGroupSessionRecord = field(repr=False)


def _connected(a: vz.InboundGroupSession, b: vz.InboundGroupSession) -> bool:
    """Whether two copies hold the same ratchet (compared where both are known)."""
    index = max(a.first_known_index, b.first_known_index)
    ka, kb = a.export_at(index), b.export_at(index)
    if ka is None or kb is None:
        return False
    return hmac.compare_digest(ka.to_base64().encode(), kb.to_base64().encode())


class InboundGroupSessions:
    """Stores room keys and decrypts room events with them.

    Sessions live in the store; at most ``cache_size`` are kept unpickled in
    memory, so a store with 100k sessions costs only the cache.

    Args:
        ctx: Shared crypto context.
        devices: Source of senders' devices, for the owner check and trust.
        cache_size: Number of unpickled sessions kept in memory.
    """

    def __init__(
        self, ctx: CryptoContext, devices: DeviceSource, *, cache_size: int = DEFAULT_CACHE_SIZE
    ) -> None:
        self._ctx = ctx
        self._devices = devices
        self._cache_size = max(1, cache_size)
        self._cache: OrderedDict[tuple[str, str], _Live] = OrderedDict()
        self._replay = ReplayRecords(ctx)
        ctx.on_rollback(self._drop_caches)

    def _drop_caches(self) -> None:
        self._cache.clear()
        self._replay.drop()

    # --- sessions ------------------------------------------------------------

    def has_session(self, room_id: RoomId, session_id: str) -> bool:
        """Whether we hold this session."""
        return self._load(room_id, session_id) is not None

    def get_record(self, room_id: RoomId, session_id: str) -> InboundGroupSessionRecord | None:
        """Return the stored record of a session (owner, index, authenticity)."""
        live = self._load(room_id, session_id)
        return None if live is None else live.record

    def export_session(self, room_id: RoomId, session_id: str) -> str | None:
        """Export a session at its first known index (for backup, export, forwarding).

        The result is secret key material: never log it.
        """
        live = self._load(room_id, session_id)
        if live is None:
            return None
        exported = live.session.export_at(live.session.first_known_index)
        return None if exported is None else exported.to_base64()

    def add_room_key(self, event: DecryptedOlmEvent) -> RoomKeyInfo | None:
        """Store a room key received from its owner over Olm.

        Returns:
            The session's room and id when it was stored or improved, ``None``
            when the copy we already have is at least as good.

        Raises:
            InvalidInputError: if the content is malformed.
            UnknownAlgorithmError: if the algorithm is not Megolm.
            MegolmError: if the session key is invalid or not the declared session.
        """
        if event.event_type != ROOM_KEY_EVENT:
            raise InvalidInputError("not an m.room_key event")
        key = _parse.parse_room_key(event.content)
        with vz.translate(MegolmError, "invalid room key"):
            session = vz.InboundGroupSession(vz.SessionKey(key.session_key))
        _parse.check_session_id(key.session_id, session.session_id)
        record = InboundGroupSessionRecord(
            room_id=key.room_id,
            session_id=session.session_id,
            sender_key=event.sender_curve25519,
            signing_key=event.sender_ed25519,
            sender_user=event.sender,
            pickle=dump_session(session),
            first_known_index=session.first_known_index,
            authenticated=True,
            source="room_key",
        )
        return self.store_sessions([PreparedSession(session, record)])[0]

    def import_session(
        self,
        room_id: str,
        session_key: str,
        *,
        session_id: str,
        sender_key: str,
        signing_key: str = "",
        sender_user: UserId | None = None,
        source: str = "import",
        forwarding_chain: tuple[str, ...] = (),
    ) -> RoomKeyInfo | None:
        """Store a session from a forward, a backup or a key export (not authenticated).

        Args:
            room_id: The session's room.
            session_key: The exported session key (unpadded base64).
            session_id: The id the source declares for it.
            sender_key: Curve25519 key of the device claimed to own it.
            signing_key: Ed25519 key claimed for that device (``""`` if unknown).
            sender_user: The owner's user id, if the source states it.
            source: ``"forward"``, ``"backup"`` or ``"import"``.
            forwarding_chain: Curve25519 keys of the devices that forwarded it.

        Raises:
            InvalidInputError: if the room id is invalid.
            MegolmError: if the key is invalid or not the declared session.
        """
        prepared = self.prepare_import(
            room_id,
            session_key,
            session_id=session_id,
            sender_key=sender_key,
            signing_key=signing_key,
            sender_user=sender_user,
            source=source,
            forwarding_chain=forwarding_chain,
        )
        return self.store_sessions([prepared])[0]

    @staticmethod
    def prepare_import(
        room_id: str,
        session_key: str,
        *,
        session_id: str,
        sender_key: str,
        signing_key: str = "",
        sender_user: UserId | None = None,
        source: str = "import",
        forwarding_chain: tuple[str, ...] = (),
        backed_up: bool = False,
    ) -> PreparedSession:
        """Check an exported session key, as :meth:`import_session` does, without storing it.

        For importing many sessions at once with :meth:`store_sessions`.
        Arguments as for :meth:`import_session`; ``backed_up`` marks a copy
        that is already in the backup we upload to (restored from it).

        Raises:
            InvalidInputError: if the room id is invalid.
            MegolmError: if the key is invalid or not the declared session.
        """
        valid_room = ids.room_id(room_id)
        with vz.translate(MegolmError, "invalid exported session key"):
            session = vz.InboundGroupSession.import_session(vz.ExportedSessionKey(session_key))
        actual_id = session.session_id  # computed by the binding on each access
        _parse.check_session_id(session_id, actual_id)
        record = InboundGroupSessionRecord(
            room_id=valid_room,
            session_id=actual_id,
            sender_key=sender_key,
            signing_key=signing_key,
            sender_user=sender_user,
            pickle=dump_session(session),
            first_known_index=session.first_known_index,
            authenticated=False,
            source=source,
            backed_up=backed_up,
            forwarding_chain=forwarding_chain,
        )
        return PreparedSession(session, record)

    def receive_withheld(self, sender: UserId, content: object) -> WithheldRecord | None:
        """Record an ``m.room_key.withheld`` notice (it is only a notice: may be in clear).

        Returns:
            The stored record, or ``None`` for a notice about no session in
            particular (``m.no_olm``).

        Raises:
            InvalidInputError: if the content is malformed.
            UnknownAlgorithmError: if the algorithm is not Megolm.
        """
        notice = _parse.parse_withheld(content)
        if notice.room_id is None or notice.session_id is None:
            log.debug("received a withheld notice without a session")
            return None
        record = WithheldRecord(
            room_id=notice.room_id,
            session_id=notice.session_id,
            sender_key=notice.sender_key,
            code=notice.code,
            reason=notice.reason,
        )
        with self._ctx.batch() as changes:
            changes.withheld.append(record)
        return record

    def store_sessions(
        self,
        prepared: Sequence[PreparedSession],
        *,
        backed_up_source: str | None = None,
        remember: bool = True,
    ) -> list[RoomKeyInfo | None]:
        """Store checked sessions, each unless the copy we hold is at least as good.

        The copies we already hold are read with one store read for all of
        them, and every write joins the open batch (or one new batch).

        Args:
            prepared: Sessions from :meth:`prepare_import` (or a room key).
            backed_up_source: Records stored with this ``source`` are marked as
                already in the backup (when restoring from the version we
                upload to, so they are not sent back to it).
            remember: Keep the stored sessions in the memory cache. A bulk
                import (a backup restore) passes ``False``: thousands of old
                sessions would push out the ones in use.

        Returns:
            For each session, in order: its room and id when it was stored or
            improved, ``None`` when we already hold it at least as well.

        Raises:
            CryptoError: if a copy we hold is unreadable (nothing was stored).
        """
        with self._ctx.batch() as changes:
            held = self._load_many([(p.record.room_id, p.record.session_id) for p in prepared])
            out: list[RoomKeyInfo | None] = []
            for p in prepared:
                key = (p.record.room_id, p.record.session_id)
                live = held.get(key)
                record = self._merge(live, p.session, p.record)
                if record is None:
                    out.append(None)
                    continue
                new_state = live is None or record.pickle == p.record.pickle
                keep = p.session if new_state or live is None else live.session
                # Only a record that *is* the backup's copy is already in it; a
                # merge that kept something better of ours must still be sent.
                if record.source == backed_up_source and not record.backed_up:
                    record = replace(record, backed_up=True)
                changes.inbound_group_sessions.append(record)
                held[key] = live = _Live(keep, record)  # a later copy in this call sees it
                if remember:
                    self._remember(live)
                else:
                    self._cache.pop(key, None)  # never leave an older copy cached
                out.append(RoomKeyInfo(record.room_id, record.session_id))
            return out

    def get_records(
        self, keys: Iterable[tuple[RoomId, str]]
    ) -> dict[tuple[RoomId, str], InboundGroupSessionRecord]:
        """Return the stored records of several sessions (one store read for all)."""
        found: dict[tuple[RoomId, str], InboundGroupSessionRecord] = {}
        missing: list[tuple[RoomId, str]] = []
        for key in keys:
            live = self._cache.get(key)
            if live is not None:
                found[key] = live.record
            else:
                missing.append(key)
        if missing:
            found.update(self._ctx.store.get_inbound_group_sessions(missing))
        return found

    @staticmethod
    def _merge(
        live: _Live | None, session: vz.InboundGroupSession, new: InboundGroupSessionRecord
    ) -> InboundGroupSessionRecord | None:
        """Decide what to store: ``new``, a merge of both copies, or ``None`` (keep ``live``)."""
        if live is None:
            return new
        old = live.record
        if old.authenticated and new.authenticated and old.sender_key != new.sender_key:
            # Anyone who received the key can re-send it as its "owner"; the
            # first authenticated owner stays.
            log.warning("ignored a room key re-sent by another device than its owner")
            return None
        if not _connected(live.session, session):
            if new.authenticated and not old.authenticated:
                return new  # the old copy was not what its owner sent
            log.warning("ignored a room key that does not match the session we hold")
            return None
        owner = new if new.authenticated and not old.authenticated else old
        lower = session.first_known_index < live.session.first_known_index
        merged = replace(
            owner,
            pickle=new.pickle if lower else old.pickle,
            first_known_index=min(session.first_known_index, live.session.first_known_index),
            authenticated=old.authenticated or new.authenticated,
            backed_up=old.backed_up and not lower and owner is old,
        )
        if merged == old:
            return None
        return merged

    def _load(self, room_id: RoomId, session_id: str) -> _Live | None:
        key = (room_id, session_id)
        live = self._cache.get(key)
        if live is not None:
            self._cache.move_to_end(key)
            return live
        record = self._ctx.store.get_inbound_group_session(room_id, session_id)
        if record is None:
            return None
        live = _Live(load_session(record.pickle, self._ctx.pickle_key), record)
        self._remember(live)
        return live

    def _load_many(self, keys: list[tuple[RoomId, str]]) -> dict[tuple[RoomId, str], _Live]:
        found: dict[tuple[RoomId, str], _Live] = {}
        missing: list[tuple[RoomId, str]] = []
        for key in keys:
            live = self._cache.get(key)
            if live is not None:
                self._cache.move_to_end(key)
                found[key] = live
            else:
                missing.append(key)
        if not missing:
            return found
        records = self._ctx.store.get_inbound_group_sessions(missing)
        # All unpickled before any is remembered: an unreadable one leaves nothing behind.
        for key, record in records.items():
            found[key] = _Live(load_session(record.pickle, self._ctx.pickle_key), record)
        for key in records:
            self._remember(found[key])
        return found

    def _remember(self, live: _Live) -> None:
        key = (live.record.room_id, live.record.session_id)
        self._cache[key] = live
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    # --- decryption ----------------------------------------------------------

    def decrypt(self, room_id: RoomId, event: object) -> DecryptionResult:
        """Decrypt an ``m.room.encrypted`` room event. Never raises for bad input.

        Args:
            room_id: The room the event arrived in (from the sync structure,
                not from the event).
            event: The event as received (``type``, ``content``, ``sender``,
                ``event_id``).

        Returns:
            :class:`Decrypted`, or :class:`UnableToDecrypt` with the reason.
        """
        parsed = _parse.parse_encrypted_event(event)
        if isinstance(parsed, UnableToDecrypt):
            return parsed
        sid = parsed.session_id
        live = self._load(room_id, sid)
        if live is None:
            withheld = self._ctx.store.get_withheld(room_id, sid)
            if withheld is not None:
                return UnableToDecrypt(
                    UtdReason.WITHHELD, "the sender withheld the key", sid, withheld.code
                )
            return UnableToDecrypt(UtdReason.MISSING_SESSION, "no key for this session", sid)
        try:
            message = vz.MegolmMessage.from_base64(parsed.ciphertext)
        except (ValueError, TypeError):
            return UnableToDecrypt(UtdReason.DECRYPTION_FAILED, "ciphertext is garbled", sid)
        index = message.message_index()
        if index < live.session.first_known_index:
            return UnableToDecrypt(
                UtdReason.UNKNOWN_MESSAGE_INDEX, "key known only from a later message", sid
            )
        try:
            plaintext = live.session.decrypt(message).plaintext
        except (ValueError, TypeError):
            return UnableToDecrypt(UtdReason.DECRYPTION_FAILED, "ciphertext did not decrypt", sid)
        owner = self._owner(live.record, parsed.sender)
        if isinstance(owner, UnableToDecrypt):
            return owner
        payload = _parse.parse_payload(plaintext)
        if payload is None:
            return UnableToDecrypt(UtdReason.MALFORMED, "payload is not a JSON object", sid)
        if payload.get("room_id") != room_id:
            return UnableToDecrypt(UtdReason.ROOM_MISMATCH, "payload is for another room", sid)
        event_type, content = payload.get("type"), payload.get("content")
        if not isinstance(event_type, str) or not isinstance(content, dict):
            return UnableToDecrypt(UtdReason.MALFORMED, "payload lacks type or content", sid)
        replay = self._replay.check(room_id, sid, index, parsed.event_id)
        if replay is not None:
            return replay
        device_id, trust = owner
        record = live.record
        info = EncryptionInfo(
            sender=parsed.sender,
            sender_curve25519=Curve25519Key(record.sender_key),
            sender_ed25519=Ed25519Key(record.signing_key) if record.signing_key else None,
            sender_device_id=device_id,
            session_id=sid,
            authenticated=record.authenticated,
            trust=trust,
        )
        return Decrypted(event_type, content, info)

    def _owner(
        self, record: InboundGroupSessionRecord, sender: UserId
    ) -> tuple[DeviceId | None, TrustState] | UnableToDecrypt:
        """Check that ``sender`` owns the session; return its device id and trust."""
        sid = record.session_id
        if record.sender_user is not None and record.sender_user != sender:
            return UnableToDecrypt(
                UtdReason.SENDER_MISMATCH, "the session belongs to another user", sid
            )
        if record.source == "own" and sender == self._ctx.user_id:
            # Created by this very device; no device list needed to trust it.
            return self._ctx.device_id, TrustState.VERIFIED
        device: Device | None = self._devices.get_device_by_curve_key(sender, record.sender_key)
        if device is None and record.sender_user == sender:
            # The key came over Olm from this user (the server vouches for the
            # to-device sender) but we have not fetched their device list yet:
            # readable, shown as from an unknown, unverified device.
            return None, TrustState.UNVERIFIED
        if device is None or device.user_id != sender:
            return UnableToDecrypt(
                UtdReason.SENDER_MISMATCH, "the session's device is not a device of the sender", sid
            )
        if record.signing_key and device.ed25519 != record.signing_key:
            return UnableToDecrypt(
                UtdReason.SENDER_MISMATCH, "the session's signing key is not the device's", sid
            )
        return device.device_id, device.trust

    def prefetch_replay_records(self, events: Iterable[object]) -> None:
        """Read the replay records of many encrypted room events with one store read.

        Only an optimisation for a batch about to decrypt ``events`` (a sync's
        timeline): :meth:`decrypt` then finds the records in memory instead
        of reading them one event at a time. The answers are kept until the
        open batch ends; call it inside that batch. Malformed events are
        skipped here and judged by :meth:`decrypt`.
        """
        self._replay.prefetch(events)
