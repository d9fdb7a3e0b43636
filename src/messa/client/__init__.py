"""The Messa SDK: :class:`MessaClient` and the records it returns."""

from messa.client.backup import BackupStatus
from messa.client.client import MessaClient
from messa.client.recovery import RecoveryResult
from messa.client.rooms import Room
from messa.client.session import SessionInfo
from messa.crypto.backup import RestoreProgress
from messa.crypto.cross_signing import CrossSigningStatus
from messa.crypto.key_export import ExportResult, ImportResult
from messa.crypto.verification import (
    Emoji,
    QrPayload,
    RequestState,
    VerificationRequest,
    parse_scanned,
    render_png,
    render_svg,
    render_terminal,
)
from messa.types.events import TimelineEvent

__all__ = [
    "BackupStatus",
    "CrossSigningStatus",
    "Emoji",
    "ExportResult",
    "ImportResult",
    "MessaClient",
    "QrPayload",
    "RecoveryResult",
    "RequestState",
    "RestoreProgress",
    "Room",
    "SessionInfo",
    "TimelineEvent",
    "VerificationRequest",
    "parse_scanned",
    "render_png",
    "render_svg",
    "render_terminal",
]
