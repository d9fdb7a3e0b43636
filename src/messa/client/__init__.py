"""The Messa SDK: :class:`MessaClient` and the records it returns."""

from messa.client.client import MessaClient
from messa.client.rooms import Room
from messa.client.session import SessionInfo
from messa.types.events import TimelineEvent

__all__ = ["MessaClient", "Room", "SessionInfo", "TimelineEvent"]
