"""Send-to-device messages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from messa.matrix.endpoints.base import CLIENT_V3, EndpointGroup


class ToDeviceEndpoints(EndpointGroup):
    """``/sendToDevice``."""

    async def send_to_device(
        self,
        event_type: str,
        txn_id: str,
        messages: Mapping[str, Mapping[str, Mapping[str, Any]]],
    ) -> None:
        """Send events straight to devices.

        Args:
            event_type: Event type, e.g. ``m.room.encrypted``.
            txn_id: Transaction id; retries reuse it so a message arrives once.
            messages: ``{user_id: {device_id or "*": content}}``.
        """
        body = {
            "messages": {
                user: {device: dict(content) for device, content in devices.items()}
                for user, devices in messages.items()
            }
        }
        await self._http.json_object(
            "PUT",
            f"{CLIENT_V3}/sendToDevice/{{eventType}}/{{txnId}}",
            path={"eventType": event_type, "txnId": txn_id},
            json=body,
            idempotent=True,
        )
