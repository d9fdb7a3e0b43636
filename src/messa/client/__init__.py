"""The Messa SDK: :class:`MessaClient` and the records it returns."""

from messa.client.client import MessaClient
from messa.client.rooms import Room
from messa.client.session import SessionInfo
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
    "Emoji",
    "MessaClient",
    "QrPayload",
    "RequestState",
    "Room",
    "SessionInfo",
    "TimelineEvent",
    "VerificationRequest",
    "parse_scanned",
    "render_png",
    "render_svg",
    "render_terminal",
]
