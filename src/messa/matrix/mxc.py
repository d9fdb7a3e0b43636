"""``mxc://`` content URIs, validated before they are turned into URLs.

An mxc URI usually comes from an event another user sent, so it is untrusted:
only the spec's grammar is accepted (server name, then a media id of
``[A-Za-z0-9_-]``), which leaves no room for path traversal or extra URL parts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from messa.errors import InvalidInputError

__all__ = ["MxcUri", "parse_mxc"]

_DNS_NAME = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
)
_IPV6 = re.compile(r"\[[0-9A-Fa-f:.]{2,45}\]")
_MEDIA_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")
_MAX_SERVER_NAME = 255


@dataclass(frozen=True, slots=True)
class MxcUri:
    """A validated ``mxc://server/media_id`` URI."""

    server_name: str
    media_id: str

    def __str__(self) -> str:
        return f"mxc://{self.server_name}/{self.media_id}"


def _valid_server_name(value: str) -> bool:
    if not value or len(value) > _MAX_SERVER_NAME:
        return False
    host, port = value, None
    if value.startswith("["):
        close = value.find("]")
        if close < 0:
            return False
        host, rest = value[: close + 1], value[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                return False
            port = rest[1:]
        if not _IPV6.fullmatch(host):
            return False
    else:
        if value.count(":") > 1:
            return False
        host, _, port_part = value.partition(":")
        port = port_part if ":" in value else None
        if not _DNS_NAME.fullmatch(host):
            return False
    if port is not None:
        return port.isascii() and port.isdigit() and len(port) <= 5 and 0 < int(port) <= 65535
    return True


def parse_mxc(uri: object) -> MxcUri:
    """Validate an untrusted ``mxc://`` URI.

    Raises:
        InvalidInputError: if ``uri`` is not a well-formed mxc URI. The message
            does not repeat the value.
    """
    if not isinstance(uri, str) or not uri.startswith("mxc://"):
        raise InvalidInputError("not an mxc:// URI")
    server, sep, media = uri[len("mxc://") :].partition("/")
    if not sep or not _valid_server_name(server) or not _MEDIA_ID.fullmatch(media):
        raise InvalidInputError("malformed mxc:// URI")
    return MxcUri(server, media)
