"""Secret sharing between our own devices (``m.secret.request`` / ``m.secret.send``).

Rules this module enforces (spec "Sharing", and Messa's security rules):

* Requests (``m.secret.request``, sent in clear as the spec says: they carry
  no secret) go only to our own devices that we trust, and each request
  remembers whom it asked.
* A secret is given only to our own user's devices that are verified or
  cross-signed by our self-signing key, only for the secrets Messa shares,
  and always Olm-encrypted to that device's keys.
* A received secret is accepted only over Olm (:class:`DecryptedOlmEvent`),
  from our own user, from the trusted device that the Olm session proves, in
  answer to an open request we sent to that very device, and only when it
  matches the public key it must match. Once accepted, the request is closed
  and cancelled on the other devices.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from messa.crypto.context import CryptoContext
from messa.crypto.interfaces import DecryptedOlmEvent, DeviceSource, OlmEncryptor
from messa.crypto.own_devices import accept_from_own_device, is_trusted
from messa.crypto.secrets.storage import KNOWN_SECRETS, SecretValidator
from messa.errors import (
    CryptoMisuseError,
    InvalidInputError,
    SecretGossipError,
    SecretMismatchError,
)
from messa.types.ids import DeviceId
from messa.types.keys import Device
from messa.types.requests import ToDeviceMessages, ToDeviceRequest

log = logging.getLogger(__name__)

SECRET_REQUEST = "m.secret.request"  # noqa: S105 - an event type, not a secret
SECRET_SEND = "m.secret.send"  # noqa: S105 - an event type, not a secret
ENCRYPTED = "m.room.encrypted"
#: Key of the open requests in the store's key-value area.
STORE_KEY = "crypto.secret_gossip.requests"
_FORMAT_VERSION = 1
# Answers waiting for an Olm session are few (our own devices); bound them anyway.
_MAX_WAITING = 64

SecretProvider = Callable[[str], str | None]


def _new_id() -> str:
    return secrets.token_urlsafe(18)


@dataclass(frozen=True, slots=True)
class SecretRequest:
    """An open request of ours: which secret, and which devices were asked."""

    request_id: str
    name: str
    targets: tuple[DeviceId, ...]
    created_ms: int


@dataclass(frozen=True, slots=True)
class ReceivedSecret:
    """A secret that passed every check.

    Attributes:
        name: The secret's name.
        secret: Its value (secret: never log it; excluded from the repr).
        device_id: Our device that sent it.
        cancellation: ``request_cancellation`` for the other devices asked, to send.
    """

    name: str
    secret: str = field(repr=False)
    device_id: DeviceId
    cancellation: ToDeviceRequest | None


class SecretGossip:
    """Requests secrets from, and shares them with, our own trusted devices.

    Args:
        ctx: Shared crypto context (our identity; open requests are persisted
            through its batches).
        devices: Source of our own devices and their trust.
        olm: Encrypts answers for one device.
        secret_provider: Returns a secret we hold by name, or ``None``.
        validator: Checks a received secret against its public key (raises
            :class:`~messa.errors.SecretMismatchError`).
        shareable: Names of the secrets that may be requested or shared.
    """

    def __init__(
        self,
        ctx: CryptoContext,
        devices: DeviceSource,
        olm: OlmEncryptor,
        *,
        secret_provider: SecretProvider,
        validator: SecretValidator,
        shareable: Iterable[str] = KNOWN_SECRETS,
    ) -> None:
        self._ctx = ctx
        self._devices = devices
        self._olm = olm
        self._provider = secret_provider
        self._validator = validator
        self._shareable = frozenset(shareable)
        self._requests: dict[str, SecretRequest] | None = None
        # (device id, request id) -> secret name, for answers blocked on a missing Olm session.
        self._waiting: dict[tuple[DeviceId, str], str] = {}
        ctx.on_rollback(self._drop_cache)

    def _drop_cache(self) -> None:
        self._requests = None

    # --- persisted open requests ------------------------------------------------

    def _load(self) -> dict[str, SecretRequest]:
        if self._requests is None:
            self._requests = parse_requests(self._ctx.store.get_value(STORE_KEY))
        return self._requests

    def _save(self) -> None:
        with self._ctx.batch() as changes:
            changes.values[STORE_KEY] = serialize_requests(self._load().values())

    def pending_requests(self) -> list[SecretRequest]:
        """Our open requests, oldest first."""
        return sorted(self._load().values(), key=lambda r: r.created_ms)

    # --- asking -----------------------------------------------------------------

    def _own_trusted_devices(self) -> list[Device]:
        own = self._devices.get_user_devices(self._ctx.user_id).values()
        return sorted(
            (d for d in own if d.device_id != self._ctx.device_id and is_trusted(d)),
            key=lambda d: d.device_id,
        )

    def _request_message(
        self, action: str, request_id: str, targets: Iterable[DeviceId], name: str | None
    ) -> ToDeviceRequest | None:
        content: dict[str, Any] = {
            "action": action,
            "requesting_device_id": self._ctx.device_id,
            "request_id": request_id,
        }
        if name is not None:
            content["name"] = name
        per_device = {device_id: dict(content) for device_id in targets}
        if not per_device:
            return None
        messages: ToDeviceMessages = {self._ctx.user_id: per_device}
        return ToDeviceRequest(_new_id(), SECRET_REQUEST, _new_id(), messages)

    def request_secret(self, name: str) -> ToDeviceRequest | None:
        """Ask our trusted devices for a secret (in clear: a request holds no secret).

        An open request for the same secret is reused (same id), extended to
        devices trusted since.

        Returns:
            The to-device request to send, or ``None`` when we have no trusted
            device to ask.

        Raises:
            CryptoMisuseError: if ``name`` is not a secret Messa shares.
        """
        if name not in self._shareable:
            raise CryptoMisuseError(f"secret {name!r} cannot be requested")
        targets = [d.device_id for d in self._own_trusted_devices()]
        if not targets:
            return None
        requests = self._load()
        existing = next((r for r in requests.values() if r.name == name), None)
        if existing is None:
            request = SecretRequest(_new_id(), name, tuple(targets), self._ctx.clock.now_ms())
        else:
            merged = tuple(sorted(set(existing.targets) | set(targets)))
            request = SecretRequest(existing.request_id, name, merged, existing.created_ms)
        with self._ctx.batch():
            requests[request.request_id] = request
            self._save()
        return self._request_message("request", request.request_id, targets, name)

    def cancel(self, request_id: str) -> ToDeviceRequest | None:
        """Withdraw an open request; return the cancellation to send (``None`` if unknown)."""
        requests = self._load()
        request = requests.get(request_id)
        if request is None:
            return None
        with self._ctx.batch():
            del requests[request_id]
            self._save()
        return self._request_message("request_cancellation", request_id, request.targets, None)

    # --- answering --------------------------------------------------------------

    def receive_request(
        self, event: DecryptedOlmEvent | Mapping[str, Any]
    ) -> ToDeviceRequest | None:
        """Handle an ``m.secret.request`` (in clear or over Olm).

        Returns:
            The Olm-encrypted ``m.secret.send`` to send, or ``None`` when the
            request is not answered: it is a cancellation, not from our user,
            from an unknown or untrusted device, for a secret we do not share
            or hold, or the device has no Olm session yet (see
            :meth:`waiting_devices`).

        Raises:
            InvalidInputError: if the event is malformed.
        """
        sender: object
        event_type: object
        content: object
        proven_key: str | None = None
        if isinstance(event, DecryptedOlmEvent):
            sender, event_type, content = event.sender, event.event_type, event.content
            proven_key = event.sender_curve25519
        else:
            sender, event_type, content = (
                event.get("sender"),
                event.get("type"),
                event.get("content"),
            )
        if event_type != SECRET_REQUEST or not isinstance(content, dict):
            raise InvalidInputError("not an m.secret.request event")
        action = content.get("action")
        device_id = content.get("requesting_device_id")
        request_id = content.get("request_id")
        if not isinstance(device_id, str) or not isinstance(request_id, str):
            raise InvalidInputError("m.secret.request lacks requesting_device_id or request_id")
        if sender != self._ctx.user_id:
            log.info("ignored a secret request from another user")
            return None
        key = (DeviceId(device_id), request_id)
        if device_id == self._ctx.device_id:
            return None
        if action == "request_cancellation":
            self._waiting.pop(key, None)
            return None
        if action != "request":
            return None
        name = content.get("name")
        if not isinstance(name, str):
            raise InvalidInputError("m.secret.request lacks the secret's name")
        device = self._devices.get_user_devices(self._ctx.user_id).get(DeviceId(device_id))
        if device is None or not is_trusted(device):
            log.info("not sharing a secret with unverified own device %s", device_id)
            return None
        if proven_key is not None and proven_key != device.curve25519:
            log.warning("ignored a secret request whose Olm sender is not device %s", device_id)
            return None
        return self._answer(device, request_id, name)

    def _answer(self, device: Device, request_id: str, name: str) -> ToDeviceRequest | None:
        if name not in self._shareable:
            return None
        secret = self._provider(name)
        if secret is None:
            return None
        content = {"request_id": request_id, "secret": secret}
        messages, missing = self._olm.encrypt_for_devices([device], SECRET_SEND, content)
        if missing or not messages:
            if len(self._waiting) < _MAX_WAITING:
                self._waiting[(device.device_id, request_id)] = name
            return None
        self._waiting.pop((device.device_id, request_id), None)
        return ToDeviceRequest(_new_id(), ENCRYPTED, _new_id(), messages)

    def waiting_devices(self) -> list[Device]:
        """Trusted devices whose request waits for an Olm session (claim keys for them)."""
        own = self._devices.get_user_devices(self._ctx.user_id)
        found = {own[d].device_id: own[d] for d, _ in self._waiting if d in own}
        return [found[d] for d in sorted(found)]

    def retry_waiting(self) -> list[ToDeviceRequest]:
        """Answer the requests that waited for an Olm session, where one now exists."""
        out: list[ToDeviceRequest] = []
        own = self._devices.get_user_devices(self._ctx.user_id)
        for (device_id, request_id), name in list(self._waiting.items()):
            device = own.get(device_id)
            if device is None or not is_trusted(device):
                del self._waiting[(device_id, request_id)]
                continue
            request = self._answer(device, request_id, name)
            if request is not None:
                out.append(request)
        return out

    # --- receiving --------------------------------------------------------------

    def receive_secret_send(self, event: DecryptedOlmEvent) -> ReceivedSecret:
        """Accept a secret sent to us, after every check.

        Raises:
            SecretGossipError: if it did not arrive over Olm, is not from our
                own trusted device, or answers no open request sent to that device.
            SecretMismatchError: if the secret does not match its public key
                (the request stays open for another device's answer).
        """
        event, device, info = accept_from_own_device(
            self._ctx.user_id,
            self._ctx.device_id,
            self._devices,
            event,
            SECRET_SEND,
            SecretGossipError,
            "secret",
        )
        request_id, secret = event.content.get("request_id"), event.content.get("secret")
        if not isinstance(request_id, str) or not isinstance(secret, str):
            raise SecretGossipError("m.secret.send lacks request_id or secret", **info)
        request = self._load().get(request_id)
        if request is None:
            raise SecretGossipError("unsolicited secret (no open request)", **info)
        if device.device_id not in request.targets:
            raise SecretGossipError(
                "secret from a device the request was not sent to", secret_name=request.name, **info
            )
        try:
            self._validator(request.name, secret)
        except SecretMismatchError as exc:
            raise SecretMismatchError(str(exc), secret_name=request.name, **info) from None
        with self._ctx.batch():
            del self._load()[request_id]
            self._save()
        others = [d for d in request.targets if d != device.device_id]
        cancellation = self._request_message("request_cancellation", request_id, others, None)
        return ReceivedSecret(request.name, secret, device.device_id, cancellation)


def serialize_requests(requests: Iterable[SecretRequest]) -> bytes:
    """The stored form of the open requests (a golden-tested format)."""
    body = {
        r.request_id: {"name": r.name, "targets": list(r.targets), "created_ms": r.created_ms}
        for r in sorted(requests, key=lambda r: r.request_id)
    }
    return json.dumps({"version": _FORMAT_VERSION, "requests": body}, sort_keys=True).encode()


def parse_requests(raw: bytes | None) -> dict[str, SecretRequest]:
    """Read the stored open requests; unreadable data counts as none (they are re-sent)."""
    if raw is None:
        return {}
    try:
        data = json.loads(raw)
        if data.get("version") != _FORMAT_VERSION:
            raise ValueError("unknown version")
        out: dict[str, SecretRequest] = {}
        for request_id, item in data["requests"].items():
            targets = item["targets"]
            if not isinstance(item["name"], str) or not all(isinstance(t, str) for t in targets):
                raise ValueError("bad entry")
            out[request_id] = SecretRequest(
                request_id=request_id,
                name=item["name"],
                targets=tuple(DeviceId(t) for t in targets),
                created_ms=int(item["created_ms"]),
            )
        return out
    except (ValueError, TypeError, KeyError, AttributeError):
        log.warning("stored secret requests are unreadable; starting afresh")
        return {}


__all__ = [
    "ENCRYPTED",
    "SECRET_REQUEST",
    "SECRET_SEND",
    "ReceivedSecret",
    "SecretGossip",
    "SecretProvider",
    "SecretRequest",
]
