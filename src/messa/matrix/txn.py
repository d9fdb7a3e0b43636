"""Transaction ids: the client's handle that makes a send idempotent."""

from __future__ import annotations

import secrets

__all__ = ["new_txn_id"]


def new_txn_id() -> str:
    """Return a fresh random transaction id (URL-safe, 22 characters).

    Keep it with the pending send and reuse it on every retry: the server then
    answers with the same event id instead of sending twice.
    """
    return secrets.token_urlsafe(16)
