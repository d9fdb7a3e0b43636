"""Typed requests that the crypto engine asks the transport to send.

The engine never sends anything itself: the client pulls these with
``OlmMachine.outgoing_requests()``, sends them, and feeds the response back
with ``OlmMachine.mark_request_as_sent(request_id, response)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from messa.types.ids import DeviceId, UserId

ToDeviceMessages = dict[UserId, dict[DeviceId, dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class KeysUploadRequest:
    """``POST /keys/upload``."""

    request_id: str
    device_keys: dict[str, Any] | None
    one_time_keys: dict[str, Any] = field(default_factory=dict)
    fallback_keys: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class KeysQueryRequest:
    """``POST /keys/query`` for these users."""

    request_id: str
    users: tuple[UserId, ...]


@dataclass(frozen=True, slots=True)
class KeysClaimRequest:
    """``POST /keys/claim``: one one-time key per listed device."""

    request_id: str
    one_time_keys: dict[UserId, dict[DeviceId, str]]


@dataclass(frozen=True, slots=True)
class ToDeviceRequest:
    """``PUT /sendToDevice/{event_type}/{txn_id}``."""

    request_id: str
    event_type: str
    txn_id: str
    messages: ToDeviceMessages

    def message_count(self) -> int:
        """Number of device messages in this request."""
        return sum(len(devices) for devices in self.messages.values())


@dataclass(frozen=True, slots=True)
class SignatureUploadRequest:
    """``POST /keys/signatures/upload``."""

    request_id: str
    signed_keys: dict[UserId, dict[str, Any]]


OutgoingRequest = (
    KeysUploadRequest
    | KeysQueryRequest
    | KeysClaimRequest
    | ToDeviceRequest
    | SignatureUploadRequest
)
