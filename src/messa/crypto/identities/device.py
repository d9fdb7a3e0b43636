"""Validation of device-key entries from ``/keys/query`` and their stored form."""

from __future__ import annotations

import copy
from typing import Any

from messa.crypto import _vodozemac as vz
from messa.crypto.canonical import verify_json
from messa.errors import DeviceKeyError, SignatureError
from messa.store.base import DeviceRecord
from messa.types.ids import Curve25519Key, DeviceId, Ed25519Key, UserId
from messa.types.keys import Device, DeviceKeys, LocalTrust

_MAX_ALGORITHMS = 32
_MAX_DISPLAY_NAME = 1024


def _error(message: str, user_id: str, device_id: str) -> DeviceKeyError:
    return DeviceKeyError(message, sender=user_id, device_id=device_id)


def parse_device_keys(
    user_id: UserId, device_id: DeviceId, entry: object, *, verify: bool = True
) -> DeviceKeys:
    """Validate one ``device_keys[user_id][device_id]`` entry.

    Checks that the ids inside match the map keys, that the algorithms are a
    list of strings, that both identity keys are present under the device's
    key ids and well-formed, and (with ``verify``) that the entry is signed by
    its own Ed25519 key.

    Args:
        user_id: The user the entry was listed under.
        device_id: The device id the entry was listed under.
        entry: The untrusted JSON value.
        verify: Check the self-signature (skipped only for our own store).

    Raises:
        DeviceKeyError: naming the user and device, if any check fails.
    """
    if not isinstance(entry, dict):
        raise _error("device keys are not an object", user_id, device_id)
    if entry.get("user_id") != user_id:
        raise _error("user_id does not match the map key", user_id, device_id)
    if entry.get("device_id") != device_id:
        raise _error("device_id does not match the map key", user_id, device_id)
    algorithms = entry.get("algorithms")
    if (
        not isinstance(algorithms, list)
        or len(algorithms) > _MAX_ALGORITHMS
        or not all(isinstance(a, str) for a in algorithms)
    ):
        raise _error("algorithms must be a list of strings", user_id, device_id)
    keys = entry.get("keys")
    if not isinstance(keys, dict):
        raise _error("keys must be an object", user_id, device_id)
    curve = keys.get(f"curve25519:{device_id}")
    ed = keys.get(f"ed25519:{device_id}")
    if not isinstance(curve, str) or not isinstance(ed, str):
        raise _error("missing curve25519 or ed25519 key for the device", user_id, device_id)
    try:
        vz.Curve25519PublicKey.from_base64(curve)
        vz.Ed25519PublicKey.from_base64(ed)
    except (ValueError, TypeError) as exc:  # the binding's errors are ValueErrors
        raise _error("malformed identity key", user_id, device_id) from exc
    if verify:
        try:
            verify_json(entry, user_id, f"ed25519:{device_id}", ed)
        except (SignatureError, RecursionError) as exc:
            raise _error("device keys are not self-signed", user_id, device_id) from exc
    unsigned = entry.get("unsigned")
    name = unsigned.get("device_display_name") if isinstance(unsigned, dict) else None
    if not isinstance(name, str) or len(name) > _MAX_DISPLAY_NAME:
        name = None
    raw = copy.deepcopy({k: v for k, v in entry.items() if k != "unsigned"})
    return DeviceKeys(
        user_id=user_id,
        device_id=device_id,
        algorithms=tuple(algorithms),
        curve25519=Curve25519Key(curve),
        ed25519=Ed25519Key(ed),
        display_name=name,
        raw=raw,
    )


def device_to_record(device: Device) -> DeviceRecord:
    """The stored form of a device: the signed entry plus its display name."""
    keys: dict[str, Any] = dict(device.keys.raw)
    if device.keys.display_name is not None:
        keys["unsigned"] = {"device_display_name": device.keys.display_name}
    return DeviceRecord(
        user_id=device.user_id,
        device_id=device.device_id,
        keys=keys,
        local_trust=device.local_trust.value,
        deleted=device.deleted,
        first_seen_ms=device.first_seen_ms,
    )


def device_from_record(record: DeviceRecord) -> Device:
    """Rebuild a device from the store (its signature was checked when it arrived).

    Raises:
        DeviceKeyError: if the record is damaged.
    """
    keys = parse_device_keys(record.user_id, record.device_id, record.keys, verify=False)
    try:
        trust = LocalTrust(record.local_trust)
    except ValueError:
        trust = LocalTrust.UNSET
    return Device(
        keys=keys,
        local_trust=trust,
        deleted=record.deleted,
        first_seen_ms=record.first_seen_ms,
        # Cross-signing status is computed by the cross-signing machine (later).
        cross_signed=False,
    )
