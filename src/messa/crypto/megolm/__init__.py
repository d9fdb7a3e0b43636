"""Megolm: room keys, room-event encryption and decryption."""

from messa.crypto.megolm.inbound import InboundGroupSessions, RoomKeyInfo
from messa.crypto.megolm.outbound import OutboundGroupSessions
from messa.crypto.megolm.settings import (
    EncryptionSettings,
    HistoryVisibility,
    room_key_recipients,
)

__all__ = [
    "EncryptionSettings",
    "HistoryVisibility",
    "InboundGroupSessions",
    "OutboundGroupSessions",
    "RoomKeyInfo",
    "room_key_recipients",
]
