"""Shared state of the crypto sub-machines: identity, store, clock, and the batch.

Every public crypto operation runs inside :meth:`CryptoContext.batch`. Its
writes accumulate in one :class:`~messa.store.base.Changes` that is saved
atomically when the outermost batch ends. A caller (the client) may open the
batch itself to add its own writes (timeline, sync token) to the same atomic
commit. If a batch fails, the sub-machines drop their in-memory caches so
that memory never runs ahead of the store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from messa._clock import Clock, SystemClock
from messa.errors import CryptoMisuseError
from messa.store.base import Changes, Store
from messa.types.ids import DeviceId, UserId


@dataclass(slots=True)
class CryptoContext:
    """Identity, store and clock shared by the crypto sub-machines."""

    user_id: UserId
    device_id: DeviceId
    store: Store
    clock: Clock = field(default_factory=SystemClock)
    _batch: Changes | None = None
    _rollback_hooks: list[Callable[[], None]] = field(default_factory=list)

    @property
    def pickle_key(self) -> bytes:
        """Key for vodozemac pickles (from the store)."""
        return self.store.pickle_key

    def on_rollback(self, hook: Callable[[], None]) -> None:
        """Register a cache-dropping hook to run when a batch fails."""
        self._rollback_hooks.append(hook)

    @contextmanager
    def batch(self) -> Iterator[Changes]:
        """Open (or join) the current atomic batch and yield its change set."""
        if self._batch is not None:
            yield self._batch
            return
        self._batch = Changes()
        try:
            yield self._batch
            if not self._batch.is_empty():
                self.store.save_changes(self._batch)
        except BaseException:
            for hook in self._rollback_hooks:
                hook()
            raise
        finally:
            self._batch = None

    @property
    def changes(self) -> Changes:
        """The open batch's change set.

        Raises:
            CryptoMisuseError: if no batch is open.
        """
        if self._batch is None:
            raise CryptoMisuseError("crypto writes need an open batch")
        return self._batch
