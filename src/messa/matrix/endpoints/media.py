"""Media repository: upload, and authenticated download."""

from __future__ import annotations

from messa.errors import UnrecognizedError
from messa.matrix.endpoints.base import CLIENT_V1, MEDIA_V3, EndpointGroup
from messa.matrix.mxc import parse_mxc

DEFAULT_MAX_MEDIA_BYTES = 50 * 1024 * 1024
_MEDIA_TIMEOUT_S = 120.0


class MediaEndpoints(EndpointGroup):
    """Media endpoints."""

    async def upload(
        self,
        data: bytes,
        content_type: str,
        filename: str | None = None,
        *,
        timeout_s: float = _MEDIA_TIMEOUT_S,
    ) -> str:
        """Upload bytes to the media repository and return their ``mxc://`` URI.

        For encrypted attachments ``data`` is ciphertext and ``content_type``
        should be ``application/octet-stream``; the filename, if any, is visible
        to the server.

        Raises:
            InvalidInputError: if the server answers without a valid mxc URI.
        """
        body = await self._http.send_bytes(
            "POST",
            f"{MEDIA_V3}/upload",
            data,
            content_type,
            query={"filename": filename},
            timeout_s=timeout_s,
        )
        return str(parse_mxc(body.get("content_uri")))

    async def download(
        self,
        mxc: str,
        max_bytes: int = DEFAULT_MAX_MEDIA_BYTES,
        *,
        timeout_s: float = _MEDIA_TIMEOUT_S,
    ) -> bytes:
        """Download media through the authenticated media API.

        Falls back to the legacy unauthenticated endpoint only when the server
        does not know the authenticated one (404 ``M_UNRECOGNIZED``).

        Args:
            mxc: An ``mxc://server/media_id`` URI (validated first).
            max_bytes: Largest body accepted; the download stops beyond it.
            timeout_s: Timeout of the whole request.

        Raises:
            InvalidInputError: if ``mxc`` is malformed.
            MediaTooLargeError: if the media exceeds ``max_bytes``.
            NotFoundError: if the media does not exist.
        """
        uri = parse_mxc(mxc)
        path = {"serverName": uri.server_name, "mediaId": uri.media_id}
        try:
            return await self._http.get_bytes(
                f"{CLIENT_V1}/media/download/{{serverName}}/{{mediaId}}",
                path=path,
                max_bytes=max_bytes,
                timeout_s=timeout_s,
            )
        except UnrecognizedError as err:
            if err.status != 404:
                raise
        # The legacy endpoint needs no token, so none is sent.
        return await self._http.get_bytes(
            f"{MEDIA_V3}/download/{{serverName}}/{{mediaId}}",
            path=path,
            max_bytes=max_bytes,
            auth=False,
            timeout_s=timeout_s,
        )
