"""Other devices' identities: device-key validation, device-list tracking, and
users' cross-signing identities (pinning, verification state)."""

from messa.crypto.identities.device import device_from_record, device_to_record, parse_device_keys
from messa.crypto.identities.tracker import DeviceTracker, KeyQueryResult
from messa.crypto.identities.user import IdentityUpdate, UserIdentities, parse_cross_signing_key

__all__ = [
    "DeviceTracker",
    "IdentityUpdate",
    "KeyQueryResult",
    "UserIdentities",
    "device_from_record",
    "device_to_record",
    "parse_cross_signing_key",
    "parse_device_keys",
]
