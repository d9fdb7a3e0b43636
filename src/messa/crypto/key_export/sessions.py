"""Key export entries (``ExportedSessionData``) and the store and session adapters.

An entry is a Megolm session exported at its first known index, with the
keys of the device that (it is claimed) created it. Exports stream from the
store one session at a time; imports go into :class:`InboundGroupSessions`
in batches and are never authenticated: a key file proves nothing about
who made a session.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any, TextIO

from messa.crypto.key_export._format import DEFAULT_ROUNDS, MAX_ENTRY_CHARS, write_export
from messa.crypto.megolm.state import exported_key
from messa.errors import CryptoError, KeyExportError, RemoteInputError, UnknownAlgorithmError
from messa.store.base import InboundGroupSessionRecord, Store
from messa.types.keys import MEGOLM_ALGORITHM

if TYPE_CHECKING:
    from collections.abc import Mapping

    from messa.crypto.context import CryptoContext
    from messa.crypto.megolm import InboundGroupSessions

log = logging.getLogger(__name__)


def _str_field(obj: Mapping[str, Any], name: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value or len(value) > MAX_ENTRY_CHARS:
        raise KeyExportError(f"an exported session lacks a valid {name!r}")
    return value


@dataclass(frozen=True, slots=True)
class ExportedSession:
    """One ``ExportedSessionData`` entry, validated.

    ``session_key`` is the session exported at its first known index: secret,
    never logged (excluded from the repr).
    """

    room_id: str
    session_id: str
    session_key: str = field(repr=False)
    sender_key: str
    sender_claimed_ed25519: str | None = None
    forwarding_chain: tuple[str, ...] = ()
    shared_history: bool | None = None

    @classmethod
    def from_json(cls, obj: object) -> ExportedSession:
        """Validate one entry of an export (or of a backup plus room and session ids).

        Raises:
            UnknownAlgorithmError: if the entry is not for Megolm.
            KeyExportError: if a field is missing or mistyped.
        """
        if not isinstance(obj, dict):
            raise KeyExportError("an exported session is not an object")
        algorithm = obj.get("algorithm")
        if algorithm != MEGOLM_ALGORITHM:
            raise UnknownAlgorithmError(str(algorithm)[:80])
        claimed = obj.get("sender_claimed_keys", {})
        ed25519 = claimed.get("ed25519") if isinstance(claimed, dict) else 0
        chain = obj.get("forwarding_curve25519_key_chain", [])
        shared = obj.get("shared_history")
        if (
            not isinstance(ed25519, str | None)
            or not isinstance(chain, list)
            or not all(isinstance(k, str) for k in chain)
            or not isinstance(shared, bool | None)
        ):
            raise KeyExportError("an exported session has a mistyped field")
        return cls(
            room_id=_str_field(obj, "room_id"),
            session_id=_str_field(obj, "session_id"),
            session_key=_str_field(obj, "session_key"),
            sender_key=_str_field(obj, "sender_key"),
            sender_claimed_ed25519=ed25519 or None,
            forwarding_chain=tuple(chain),
            shared_history=shared,
        )

    def to_json(self) -> dict[str, Any]:
        """The ``ExportedSessionData`` dict."""
        claimed = self.sender_claimed_ed25519
        entry: dict[str, Any] = {
            "algorithm": MEGOLM_ALGORITHM,
            "room_id": self.room_id,
            "sender_key": self.sender_key,
            "session_id": self.session_id,
            "session_key": self.session_key,
            "sender_claimed_keys": {"ed25519": claimed} if claimed else {},
            "forwarding_curve25519_key_chain": list(self.forwarding_chain),
        }
        if self.shared_history is not None:
            entry["shared_history"] = self.shared_history
        return entry


def export_record(record: InboundGroupSessionRecord, pickle_key: bytes) -> ExportedSession:
    """Export a stored inbound session at its first known index (CryptoError if unreadable)."""
    return ExportedSession(
        room_id=record.room_id,
        session_id=record.session_id,
        session_key=exported_key(record.pickle, pickle_key),
        sender_key=record.sender_key,
        sender_claimed_ed25519=record.signing_key or None,
        forwarding_chain=record.forwarding_chain,
    )


@dataclass(slots=True)
class ExportResult:
    """Counts of one export: sessions written and unreadable ones skipped."""

    exported: int = 0
    skipped: int = 0


def iter_store_sessions(
    store: Store, result: ExportResult | None = None, *, room_id: str | None = None
) -> Iterator[dict[str, Any]]:
    """Stream a store's inbound sessions as export entries, unpickling one at a time.

    Unreadable sessions are skipped and counted in ``result``.
    """
    result = result if result is not None else ExportResult()
    for record in store.iter_inbound_group_sessions():
        if room_id is not None and record.room_id != room_id:
            continue
        try:
            entry = export_record(record, store.pickle_key).to_json()
        except CryptoError:
            log.warning("skipped an unreadable session in a key export")
            result.skipped += 1
            continue
        result.exported += 1
        yield entry


def export_store(
    store: Store,
    out: TextIO,
    passphrase: str,
    *,
    rounds: int = DEFAULT_ROUNDS,
    room_id: str | None = None,
) -> ExportResult:
    """Write every inbound session of ``store`` (or of one room) as an export file.

    Raises:
        CryptoMisuseError: as :func:`write_export`.
    """
    result = ExportResult()
    write_export(
        out, iter_store_sessions(store, result, room_id=room_id), passphrase, rounds=rounds
    )
    return result


@dataclass(slots=True)
class ImportResult:
    """Counts of one import: entries read, sessions stored (new or better), entries refused."""

    total: int = 0
    imported: int = 0
    invalid: int = 0


def import_sessions(
    inbound: InboundGroupSessions,
    ctx: CryptoContext,
    entries: Iterable[object],
    *,
    batch_size: int = 1000,
    progress: Callable[[ImportResult], None] | None = None,
) -> ImportResult:
    """Store exported sessions, ``batch_size`` per atomic store write.

    Imported sessions are unauthenticated (``source="import"``): never shown
    as verified. Invalid entries are counted and skipped; an error of the
    file itself (raised by :func:`iter_import`) stops the import, keeping
    the batches already written.
    """
    result = ImportResult()
    source = iter(entries)
    while batch := list(islice(source, max(1, batch_size))):
        with ctx.batch():
            for obj in batch:
                result.total += 1
                try:
                    entry = ExportedSession.from_json(obj)
                    info = inbound.import_session(
                        entry.room_id,
                        entry.session_key,
                        session_id=entry.session_id,
                        sender_key=entry.sender_key,
                        signing_key=entry.sender_claimed_ed25519 or "",
                        source="import",
                        forwarding_chain=entry.forwarding_chain,
                    )
                except (CryptoError, RemoteInputError):
                    result.invalid += 1
                    continue
                result.imported += info is not None
        if progress is not None:
            progress(result)
    return result
