"""Async Matrix Client-Server API transport.

:class:`MatrixApi` is the entry point; the access token only ever travels in
the ``Authorization`` header, errors arrive as classes of :mod:`messa.errors`,
and sends are made idempotent with transaction ids (:func:`new_txn_id`).
"""

from messa.matrix.api import MatrixApi
from messa.matrix.errors import MediaTooLargeError, register_errcode
from messa.matrix.http import HttpTransport, RetryPolicy
from messa.matrix.mxc import MxcUri, parse_mxc
from messa.matrix.responses import (
    DeviceInfo,
    DeviceListChanges,
    LoginResponse,
    ServerVersions,
    WhoAmI,
)
from messa.matrix.txn import new_txn_id
from messa.matrix.uia import UiaChallenge, password_auth

__all__ = [
    "DeviceInfo",
    "DeviceListChanges",
    "HttpTransport",
    "LoginResponse",
    "MatrixApi",
    "MediaTooLargeError",
    "MxcUri",
    "RetryPolicy",
    "ServerVersions",
    "UiaChallenge",
    "WhoAmI",
    "new_txn_id",
    "parse_mxc",
    "password_auth",
    "register_errcode",
]
