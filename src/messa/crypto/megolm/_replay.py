"""Replay detection for Megolm room events: one event id per (session, message index).

The first event seen at each ``(session_id, index)`` is persisted with the
batch that decrypted it, so a ciphertext replayed under a new event id is
refused, even after a restart. Records of the open batch are kept in memory
until it commits; records can also be read ahead for a whole sync at once.
"""

from __future__ import annotations

from collections.abc import Iterable

from messa.crypto import _vodozemac as vz
from messa.crypto.context import CryptoContext
from messa.crypto.megolm import _parse
from messa.store.base import Changes, MegolmIndexRecord
from messa.types.events import UnableToDecrypt, UtdReason
from messa.types.ids import EventId, RoomId

Key = tuple[str, int]


class ReplayRecords:
    """The ``(session_id, index)`` → event id records, through the open batch.

    Args:
        ctx: Shared crypto context (store and batch).
    """

    def __init__(self, ctx: CryptoContext) -> None:
        self._ctx = ctx
        self._batch: Changes | None = None
        # Records written in the open batch, not yet visible in the store.
        self._pending: dict[Key, EventId] = {}
        # Records read ahead for the open batch (None: nothing stored). The
        # store changes only when the batch commits, which ends their validity.
        self._known: dict[Key, EventId | None] = {}

    def drop(self) -> None:
        """Forget everything held for the open batch (it failed)."""
        self._batch, self._pending, self._known = None, {}, {}

    def _join(self, changes: Changes) -> None:
        """Start afresh when ``changes`` is another batch than the one we hold."""
        if self._batch is not changes:
            self._batch, self._pending, self._known = changes, {}, {}

    def prefetch(self, events: Iterable[object]) -> None:
        """Read the records of many encrypted room events with one store read.

        Only an optimisation: :meth:`check` finds them in memory instead of
        reading the store once per event. Malformed events are skipped here;
        decryption judges them.
        """
        with self._ctx.batch() as changes:
            self._join(changes)
            wanted: list[Key] = []
            for event in events:
                fields = _parse.session_and_ciphertext(event)
                if fields is None:
                    continue
                session_id, ciphertext = fields
                try:
                    index = vz.MegolmMessage.from_base64(ciphertext).message_index()
                except (ValueError, TypeError):
                    continue
                key = (session_id, index)
                if key not in self._pending and key not in self._known:
                    wanted.append(key)
            if not wanted:
                return
            found = self._ctx.store.get_megolm_indices(wanted)
            for key in wanted:
                record = found.get(key)
                self._known[key] = None if record is None else record.event_id

    def check(
        self, room_id: RoomId, session_id: str, index: int, event_id: EventId
    ) -> UnableToDecrypt | None:
        """Remember which event used this index; refuse another event at the same index."""
        with self._ctx.batch() as changes:
            self._join(changes)
            key = (session_id, index)
            first = self._pending.get(key)
            if first is None:
                if key in self._known:
                    first = self._known[key]
                else:
                    stored = self._ctx.store.get_megolm_index(session_id, index)
                    first = None if stored is None else stored.event_id
            if first is not None:
                if first == event_id:
                    return None  # the same event decrypted again
                return UnableToDecrypt(
                    UtdReason.REPLAY, "message index already used by another event", session_id
                )
            self._pending[key] = event_id
            changes.megolm_indices.append(MegolmIndexRecord(room_id, session_id, index, event_id))
            return None
