"""Room-key export and import in the passphrase-encrypted file format other clients use."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from messa.client.timeline import retry_record
from messa.crypto.key_export import ExportResult, ImportResult, export_store, import_sessions
from messa.crypto.key_export import iter_import as _iter_import

if TYPE_CHECKING:
    from messa.client.wiring import Wiring
    from messa.store.base import Store


class KeysIOMixin:
    """``export_keys`` / ``import_keys`` of :class:`~messa.client.MessaClient`."""

    if TYPE_CHECKING:
        _store: Store

        @property
        def _w(self) -> Wiring: ...

    def export_keys(self, path: str | Path, passphrase: str) -> ExportResult:
        """Write every room key this device holds to ``path``, encrypted with ``passphrase``.

        The file is created with owner-only permissions. Element and other
        clients can import it.
        """
        target = Path(path).expanduser()
        target.touch(mode=0o600, exist_ok=True)
        target.chmod(0o600)
        with target.open("w", encoding="ascii") as out:
            return export_store(self._store, out, passphrase)

    def import_keys(
        self,
        path: str | Path,
        passphrase: str,
        *,
        progress: Callable[[ImportResult], None] | None = None,
    ) -> tuple[ImportResult, int]:
        """Import room keys from an export file; returns the counts and events decrypted.

        Imported keys are unauthenticated: what they decrypt is never shown as
        verified.

        Raises:
            WrongExportPassphraseError: wrong passphrase, or the file was altered.
            KeyExportError: the file is not a key export.
        """
        w = self._w
        with Path(path).expanduser().open(encoding="ascii") as source:
            result = import_sessions(
                w.machine.inbound,
                w.machine.context,
                _iter_import(source, passphrase),
                progress=progress,
            )
        return result, self._retry_all_waiting()

    def _retry_all_waiting(self) -> int:
        """Try every stored undecryptable event again (after keys arrived in bulk)."""
        w = self._w
        decrypted = 0
        for room in self._store.get_rooms():
            waiting = [
                r
                for r in self._store.get_timeline(room.room_id, limit=100_000)
                if r.utd_reason is not None and r.raw is not None
            ]
            if not waiting:
                continue
            with w.machine.batch() as changes:
                for rec in waiting:
                    new = retry_record(rec, w.machine)
                    if new is not None:
                        changes.timeline.append(new)
                        decrypted += new.utd_reason is None
        return decrypted
