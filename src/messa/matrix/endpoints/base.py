"""What every endpoint group shares: the transport and the path prefixes."""

from __future__ import annotations

from messa.errors import InvalidInputError
from messa.matrix._json import JsonDict
from messa.matrix.http import HttpTransport
from messa.types.ids import EventId, event_id

CLIENT_V3 = "/_matrix/client/v3"
CLIENT_V1 = "/_matrix/client/v1"
MEDIA_V3 = "/_matrix/media/v3"


class EndpointGroup:
    """Base of the endpoint mixins composed by :class:`messa.matrix.MatrixApi`.

    Groups are mixins rather than separate objects so the facade exposes one
    flat API while each concern keeps its own small module.
    """

    _http: HttpTransport


def event_id_from(body: JsonDict, where: str) -> EventId:
    """Return the validated ``event_id`` of a send answer.

    Raises:
        InvalidInputError: if it is missing or malformed.
    """
    try:
        return event_id(body.get("event_id"))
    except InvalidInputError:
        raise InvalidInputError(f"{where}: missing or invalid event_id") from None
