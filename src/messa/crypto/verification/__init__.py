"""Interactive key verification: SAS (emoji, decimals) and QR codes.

Sans-I/O: the :class:`VerificationMachine` takes verification events and
returns the messages to send, over to-device or in-room transports. It
depends on keys and trust only through :class:`VerificationIdentity`.
"""

from messa.crypto.verification.emoji import EMOJI_TABLE, Emoji
from messa.crypto.verification.identity import (
    FixedKeys,
    VerificationError,
    VerificationIdentity,
    VerifiedKeys,
)
from messa.crypto.verification.machine import DEFAULT_METHODS, VerificationMachine
from messa.crypto.verification.qr import (
    QrCodeError,
    QrMode,
    QrPayload,
    parse_scanned,
    render_png,
    render_svg,
    render_terminal,
)
from messa.crypto.verification.request import Cancellation, RequestState, VerificationRequest
from messa.crypto.verification.sas import SasFlow, SasState
from messa.crypto.verification.transport import (
    VERIFICATION_EVENT_TYPES,
    CancelCode,
    Method,
    RoomMessageRequest,
    VerificationOutgoing,
)

__all__ = [
    "DEFAULT_METHODS",
    "EMOJI_TABLE",
    "VERIFICATION_EVENT_TYPES",
    "CancelCode",
    "Cancellation",
    "Emoji",
    "FixedKeys",
    "Method",
    "QrCodeError",
    "QrMode",
    "QrPayload",
    "RequestState",
    "RoomMessageRequest",
    "SasFlow",
    "SasState",
    "VerificationError",
    "VerificationIdentity",
    "VerificationMachine",
    "VerificationOutgoing",
    "VerificationRequest",
    "VerifiedKeys",
    "parse_scanned",
    "render_png",
    "render_svg",
    "render_terminal",
]
