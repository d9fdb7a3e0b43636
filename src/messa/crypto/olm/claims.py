"""``/keys/claim`` bookkeeping: claims in flight, recent failures, key validation."""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from messa._clock import Clock
from messa.crypto.account import SIGNED_CURVE25519
from messa.crypto.canonical import verify_json
from messa.errors import DeviceKeyError, RemoteCryptoError, SignatureError
from messa.types.ids import DeviceId, UserId
from messa.types.keys import Device
from messa.types.requests import KeysClaimRequest

DeviceKey = tuple[UserId, DeviceId]


def device_key(device: Device) -> DeviceKey:
    """The (user, device id) pair a claim is keyed by."""
    return (device.user_id, device.device_id)


@dataclass(slots=True)
class ClaimResult:
    """What a ``/keys/claim`` answer gave us.

    Attributes:
        created: Devices we now have a new Olm session with.
        failed: Devices for which no usable key came back.
        rejected: Why some returned keys were refused (bad signature, malformed).
    """

    created: list[Device] = field(default_factory=list)
    failed: list[Device] = field(default_factory=list)
    rejected: list[RemoteCryptoError] = field(default_factory=list)


@dataclass(slots=True)
class Claim:
    """A claim in flight."""

    devices: dict[DeviceKey, Device]
    sent_ms: int


class ClaimTracker:
    """Which devices have a claim in flight, and which failed recently.

    Args:
        clock: Time source.
        backoff_ms: A device whose claim failed is not claimed again before this.
        timeout_ms: An unanswered claim counts as lost after this.
        max_failures: Bound on remembered failures (oldest forgotten first).
    """

    def __init__(
        self,
        clock: Clock,
        *,
        backoff_ms: int = 15 * 60_000,
        timeout_ms: int = 60_000,
        max_failures: int = 10_000,
    ) -> None:
        self._clock = clock
        self._backoff_ms = backoff_ms
        self._timeout_ms = timeout_ms
        self._max_failures = max_failures
        self._claims: dict[str, Claim] = {}
        self._in_flight: dict[DeviceKey, str] = {}
        self._failures: OrderedDict[DeviceKey, int] = OrderedDict()

    def _expire(self) -> None:
        now = self._clock.now_ms()
        for request_id, claim in list(self._claims.items()):
            if now - claim.sent_ms >= self._timeout_ms:
                self.take(request_id)

    def in_flight(self, device: Device) -> bool:
        """Whether a claim for this device awaits its answer."""
        self._expire()
        return device_key(device) in self._in_flight

    def recently_failed(self, device: Device) -> bool:
        """Whether the last claim for this device failed less than the backoff ago."""
        failed_ms = self._failures.get(device_key(device))
        return failed_ms is not None and self._clock.now_ms() - failed_ms < self._backoff_ms

    def record_failure(self, device: Device) -> None:
        """Remember that a claim for this device gave no usable key."""
        key = device_key(device)
        self._failures.pop(key, None)
        self._failures[key] = self._clock.now_ms()
        while len(self._failures) > self._max_failures:
            self._failures.popitem(last=False)

    def clear_failure(self, device: Device) -> None:
        """Forget a failure (a session now exists)."""
        self._failures.pop(device_key(device), None)

    def request(self, devices: Iterable[Device]) -> KeysClaimRequest | None:
        """Build a claim for ``devices`` (already filtered) and mark them in flight."""
        self._expire()
        wanted = {device_key(d): d for d in devices if device_key(d) not in self._in_flight}
        if not wanted:
            return None
        one_time_keys: dict[UserId, dict[DeviceId, str]] = {}
        for user, dev in wanted:
            one_time_keys.setdefault(user, {})[dev] = SIGNED_CURVE25519
        request = KeysClaimRequest(request_id=uuid.uuid4().hex, one_time_keys=one_time_keys)
        self._claims[request.request_id] = Claim(wanted, self._clock.now_ms())
        for key in wanted:
            self._in_flight[key] = request.request_id
        return request

    def take(self, request_id: str) -> Claim | None:
        """Remove and return the claim ``request_id`` (``None`` if unknown or expired)."""
        claim = self._claims.pop(request_id, None)
        if claim is None:
            return None
        for key in claim.devices:
            if self._in_flight.get(key) == request_id:
                del self._in_flight[key]
        return claim

    def is_claim(self, request_id: str) -> bool:
        """Whether ``request_id`` is a claim of ours still awaiting its answer."""
        return request_id in self._claims


def validate_claimed_key(device: Device, keys: object) -> str:
    """Return the one-time key claimed for ``device`` after checking its signature.

    Args:
        device: The device the key was claimed for (its Ed25519 key signs it).
        keys: ``one_time_keys[user][device]`` from the answer: a map from
            ``signed_curve25519:<id>`` to ``{"key": ..., "signatures": ...}``.

    Raises:
        DeviceKeyError: if no signed Curve25519 key is present or it is malformed.
        SignatureError: if the key is not signed by the device.
    """
    user, dev = device.user_id, device.device_id
    if not isinstance(keys, dict):
        raise DeviceKeyError("claimed keys are not an object", sender=user, device_id=dev)
    for key_id, obj in keys.items():
        if not isinstance(key_id, str) or not key_id.startswith(SIGNED_CURVE25519 + ":"):
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("key"), str):
            raise DeviceKeyError("claimed key is malformed", sender=user, device_id=dev)
        try:
            verify_json(obj, user, f"ed25519:{dev}", device.ed25519)
        except SignatureError as exc:
            raise SignatureError(
                "one-time key is not signed by the device", sender=user, device_id=dev
            ) from exc
        except RecursionError as exc:
            raise DeviceKeyError("claimed key is malformed", sender=user, device_id=dev) from exc
        key: str = obj["key"]
        return key
    raise DeviceKeyError("no signed_curve25519 key was returned", sender=user, device_id=dev)
