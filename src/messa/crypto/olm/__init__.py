"""Olm: pairwise sessions between devices, for to-device messages."""

from messa.crypto.olm.claims import ClaimResult
from messa.crypto.olm.sessions import OlmSessions

__all__ = ["ClaimResult", "OlmSessions"]
