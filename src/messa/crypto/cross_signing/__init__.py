"""Our cross-signing keys: creation, upload body, signatures, sealed storage."""

from messa.crypto.cross_signing.keys import SECRET_NAMES, CrossSigningSeeds, SigningKey
from messa.crypto.cross_signing.machine import PENDING_KEYS, PRIVATE_KEYS, CrossSigningMachine
from messa.crypto.cross_signing.records import (
    CrossSigningStatus,
    CrossSigningUploadRequest,
    SignatureUploadResult,
)
from messa.crypto.cross_signing.trust import VerificationTrust

__all__ = [
    "PENDING_KEYS",
    "PRIVATE_KEYS",
    "SECRET_NAMES",
    "CrossSigningMachine",
    "CrossSigningSeeds",
    "CrossSigningStatus",
    "CrossSigningUploadRequest",
    "SignatureUploadResult",
    "SigningKey",
    "VerificationTrust",
]
