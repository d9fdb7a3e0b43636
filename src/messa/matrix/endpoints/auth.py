"""Login, logout, token owner and server versions."""

from __future__ import annotations

from messa.errors import InvalidInputError
from messa.matrix.endpoints.base import CLIENT_V3, EndpointGroup
from messa.matrix.responses import LoginResponse, ServerVersions, WhoAmI
from messa.types.ids import device_id, user_id


class AuthEndpoints(EndpointGroup):
    """Session endpoints."""

    async def versions(self) -> ServerVersions:
        """Return the spec versions the homeserver supports (no token needed)."""
        body = await self._http.json_object("GET", "/_matrix/client/versions", auth=False)
        return ServerVersions.from_json(body)

    async def login_password(
        self,
        user: str,
        password: str,
        device_name: str | None = None,
        device_id: str | None = None,
    ) -> LoginResponse:
        """Log in with a password and use the new access token from now on.

        Args:
            user: Full user id (``@alice:example.org``) or bare localpart.
            password: The account password (sent only in the request body).
            device_name: Display name for a new device.
            device_id: Reuse this device id instead of creating one.

        Raises:
            ForbiddenError: if the credentials are wrong.
            InvalidInputError: if the answer is malformed.
        """
        body: dict[str, object] = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
        }
        if device_name is not None:
            body["initial_device_display_name"] = device_name
        if device_id is not None:
            body["device_id"] = device_id
        answer = await self._http.json_object("POST", f"{CLIENT_V3}/login", json=body, auth=False)
        login = LoginResponse.from_json(answer)
        self._http.access_token = login.access_token
        return login

    async def whoami(self) -> WhoAmI:
        """Return the user and device the access token belongs to.

        Raises:
            UnknownTokenError: if the token is not (or no longer) valid.
        """
        body = await self._http.json_object("GET", f"{CLIENT_V3}/account/whoami")
        raw_device = body.get("device_id")
        try:
            device = None if raw_device is None else device_id(raw_device)
        except InvalidInputError:
            raise InvalidInputError("whoami: invalid device_id") from None
        return WhoAmI(user_id(body.get("user_id")), device)

    async def logout(self) -> None:
        """Invalidate the access token on the server and forget it locally."""
        await self._http.json_object("POST", f"{CLIENT_V3}/logout", json={})
        self._http.access_token = None
