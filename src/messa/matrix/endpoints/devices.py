"""The user's own device list."""

from __future__ import annotations

from typing import Any

from messa.errors import InvalidInputError
from messa.matrix.endpoints.base import CLIENT_V3, EndpointGroup
from messa.matrix.responses import DeviceInfo


class DeviceEndpoints(EndpointGroup):
    """``/devices`` endpoints."""

    async def get_devices(self) -> list[DeviceInfo]:
        """List this user's devices; malformed entries are skipped."""
        body = await self._http.json_object("GET", f"{CLIENT_V3}/devices")
        raw = body.get("devices")
        if not isinstance(raw, list):
            raise InvalidInputError("devices: missing or invalid 'devices'")
        devices: list[DeviceInfo] = []
        for entry in raw:
            if not isinstance(entry, dict):
                continue
            try:
                devices.append(DeviceInfo.from_json(entry))
            except InvalidInputError:
                continue
        return devices

    async def delete_device(self, device_id: str, auth: dict[str, Any] | None = None) -> None:
        """Delete one of the user's devices (logs it out).

        Args:
            device_id: The device to delete.
            auth: User-interactive auth dict for the second step, if any.

        Raises:
            AuthRequiredError: when the server wants user-interactive auth; its
                ``body`` holds ``flows``, ``session`` and ``params``.
        """
        body: dict[str, Any] = {} if auth is None else {"auth": auth}
        await self._http.json_object(
            "DELETE", f"{CLIENT_V3}/devices/{{deviceId}}", path={"deviceId": device_id}, json=body
        )
