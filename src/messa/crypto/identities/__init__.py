"""Other devices' identities: device-key validation and device-list tracking."""

from messa.crypto.identities.device import device_from_record, device_to_record, parse_device_keys
from messa.crypto.identities.tracker import DeviceTracker, KeyQueryResult

__all__ = [
    "DeviceTracker",
    "KeyQueryResult",
    "device_from_record",
    "device_to_record",
    "parse_device_keys",
]
