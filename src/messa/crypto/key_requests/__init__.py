"""Room key requests and forwarding between our own devices."""

from messa.crypto.key_requests.content import (
    FORWARDED_ROOM_KEY,
    ROOM_KEY_REQUEST,
    OutgoingKeyRequest,
)
from messa.crypto.key_requests.machine import (
    FORWARD_SOURCE,
    ForwardedRoomKey,
    KeyRequests,
)

__all__ = [
    "FORWARDED_ROOM_KEY",
    "FORWARD_SOURCE",
    "ROOM_KEY_REQUEST",
    "ForwardedRoomKey",
    "KeyRequests",
    "OutgoingKeyRequest",
]
