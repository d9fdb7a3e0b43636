"""One process at a time per store: an exclusive ``flock`` on ``PATH.lock``.

``flock`` locks belong to the open file description, so a second open in the
same process conflicts too, and the kernel drops the lock when the process
dies (even by SIGKILL): there is no stale lock to clean up. The lock file is
never deleted, because deleting it would let two processes lock two
different files of the same name.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from messa.errors import StoreError, StoreLockedError


class StoreLock:
    """An acquired lock; :meth:`release` is idempotent."""

    __slots__ = ("_fd", "path")

    def __init__(self, path: Path) -> None:
        """Acquire the lock without waiting.

        Raises:
            StoreLockedError: If another holder has it.
            StoreError: If the lock file cannot be opened.
        """
        self.path = path
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot open the store lock file: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreLockedError(
                f"the store at {path.parent} is open in another process"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot lock the store: {exc.strerror}") from exc
        self._fd: int | None = fd
        try:
            # Write our pid for humans debugging a "locked" store; not used for locking.
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            os.fchmod(fd, 0o600)
        except OSError:
            pass

    def release(self) -> None:
        """Release the lock (closing the descriptor drops it)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
