"""The verification QR code: its binary payload, a strict parser, and rendering.

Payload (spec "QR code format"), one byte-mode segment::

    "MATRIX" | 0x02 | mode | len (2 bytes, big-endian) | flow id (UTF-8)
             | first key (32) | second key (32) | shared secret (the rest)

Modes: ``0x00`` verifying another user (our master key, their master key);
``0x01`` self-verification by a device that trusts the master key (master
key, the other device's key); ``0x02`` self-verification by a device that
does not (our device key, the master key).

Scanning is done by the user's camera app or another client: Messa takes the
scanned bytes (or their base64) and parses them here; it never decodes images.
"""

from __future__ import annotations

import enum
import io
import os
import secrets
from dataclasses import dataclass, field

import segno

from messa.crypto._vodozemac import b64decode, b64encode
from messa.errors import RemoteCryptoError

PREFIX = b"MATRIX"
VERSION = 0x02
KEY_LENGTH = 32
MIN_SECRET_LENGTH = 8
SECRET_LENGTH = 16
#: A QR code cannot hold more than this many bytes in byte mode (40-L).
MAX_PAYLOAD_LENGTH = 2953
_HEADER_LENGTH = len(PREFIX) + 1 + 1 + 2


class QrCodeError(RemoteCryptoError):
    """A scanned verification QR code is malformed or not for this flow."""


class QrMode(enum.IntEnum):
    """The verification mode byte of the payload."""

    VERIFY_OTHER_USER = 0x00
    SELF_TRUSTED = 0x01
    SELF_UNTRUSTED = 0x02


_MODES = frozenset(int(m) for m in QrMode)


@dataclass(frozen=True, slots=True)
class QrPayload:
    """The content of a verification QR code.

    Attributes:
        mode: What the two keys are (see :class:`QrMode`).
        flow_id: The request's event id or transaction id.
        first_key: 32 raw Ed25519 bytes.
        second_key: 32 raw Ed25519 bytes.
        secret: The shared secret echoed in ``m.reciprocate.v1`` (never printed).
    """

    mode: QrMode
    flow_id: str
    first_key: bytes
    second_key: bytes
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.first_key) != KEY_LENGTH or len(self.second_key) != KEY_LENGTH:
            raise ValueError("QR keys are 32 bytes")
        if len(self.secret) < MIN_SECRET_LENGTH:
            raise ValueError("QR shared secret too short")
        if not self.flow_id or len(self.flow_id.encode()) > 0xFFFF:
            raise ValueError("QR flow id must be 1..65535 bytes")

    @classmethod
    def create(cls, mode: QrMode, flow_id: str, first_key: str, second_key: str) -> QrPayload:
        """A new payload with a fresh random secret; keys are unpadded base64.

        Raises:
            ValueError: if a key is not 32 bytes of base64.
        """
        return cls(
            mode=mode,
            flow_id=flow_id,
            first_key=b64decode(first_key),
            second_key=b64decode(second_key),
            secret=secrets.token_bytes(SECRET_LENGTH),
        )

    @property
    def first_key_b64(self) -> str:
        """The first key as unpadded base64."""
        return b64encode(self.first_key)

    @property
    def second_key_b64(self) -> str:
        """The second key as unpadded base64."""
        return b64encode(self.second_key)

    @property
    def secret_b64(self) -> str:
        """The shared secret as unpadded base64 (what ``m.reciprocate.v1`` carries)."""
        return b64encode(self.secret)

    def encode(self) -> bytes:
        """The binary payload."""
        flow = self.flow_id.encode()
        return (
            PREFIX
            + bytes((VERSION, self.mode))
            + len(flow).to_bytes(2, "big")
            + flow
            + self.first_key
            + self.second_key
            + self.secret
        )

    @classmethod
    def parse(cls, data: bytes) -> QrPayload:
        """Parse a scanned payload, strictly.

        Raises:
            QrCodeError: if anything about it is off.
        """
        if not isinstance(data, bytes | bytearray):
            raise QrCodeError("QR payload must be bytes")
        data = bytes(data)
        if len(data) > MAX_PAYLOAD_LENGTH:
            raise QrCodeError("QR payload too long")
        if len(data) < _HEADER_LENGTH or not data.startswith(PREFIX):
            raise QrCodeError("not a Matrix verification QR code")
        version, mode = data[6], data[7]
        if version != VERSION:
            raise QrCodeError(f"unsupported QR code version {version}")
        if mode not in _MODES:
            raise QrCodeError(f"unknown QR verification mode {mode}")
        id_length = int.from_bytes(data[8:10], "big")
        keys_at = _HEADER_LENGTH + id_length
        if id_length == 0 or len(data) < keys_at + 2 * KEY_LENGTH + MIN_SECRET_LENGTH:
            raise QrCodeError("QR payload truncated")
        try:
            flow_id = data[_HEADER_LENGTH:keys_at].decode("utf-8", errors="strict")
        except UnicodeDecodeError as exc:
            raise QrCodeError("QR flow id is not UTF-8") from exc
        if not flow_id.isprintable():
            raise QrCodeError("QR flow id has control characters")
        second_at = keys_at + KEY_LENGTH
        secret_at = second_at + KEY_LENGTH
        return cls(
            mode=QrMode(mode),
            flow_id=flow_id,
            first_key=data[keys_at:second_at],
            second_key=data[second_at:secret_at],
            secret=data[secret_at:],
        )


def parse_scanned(data: bytes | str) -> QrPayload:
    """Parse what a scanner produced: the raw bytes, or their base64 as text.

    Raises:
        QrCodeError: if the input is not a valid payload.
    """
    if isinstance(data, str):
        text = data.strip()
        if text.startswith("MATRIX"):
            raise QrCodeError("give the scanned bytes, or their base64")
        try:
            raw = b64decode(text)
        except ValueError as exc:
            raise QrCodeError("QR payload text is not base64") from exc
        return QrPayload.parse(raw)
    return QrPayload.parse(data)


def _symbol(payload: QrPayload | bytes) -> segno.QRCode:
    raw = payload.encode() if isinstance(payload, QrPayload) else payload
    # One byte-mode segment, as the spec requires; segno picks the version.
    return segno.make(raw, mode="byte", error="m", micro=False, boost_error=False)


def render_terminal(payload: QrPayload | bytes, *, ansi: bool = False) -> str:
    """The QR code as text for a terminal.

    Args:
        payload: The payload (or its encoded bytes).
        ansi: Use ANSI reverse-video blocks instead of Unicode half blocks.
    """
    out = io.StringIO()
    _symbol(payload).terminal(out=out, compact=not ansi)
    return out.getvalue()


def render_png(payload: QrPayload | bytes, path: str | os.PathLike[str], *, scale: int = 8) -> None:
    """Write the QR code as a PNG image."""
    _symbol(payload).save(os.fspath(path), kind="png", scale=scale)


def render_svg(payload: QrPayload | bytes, path: str | os.PathLike[str], *, scale: int = 8) -> None:
    """Write the QR code as an SVG image."""
    _symbol(payload).save(os.fspath(path), kind="svg", scale=scale)
