"""QR verification flows: showing a code and scanning one (``m.reciprocate.v1``).

The device that **scans** checks the two keys in the code against the keys
fixed for the flow, and tells the other side with an
``m.key.verification.start`` of method ``m.reciprocate.v1`` carrying the
code's secret. The device that **shows** checks the secret, then asks its
user to confirm that the other device did scan ("yes, they scanned").

What each side ends up trusting depends on the mode (see :mod:`.qr`):

=========  ===========================  ==================================
mode       scanner trusts               shower trusts (after confirming)
=========  ===========================  ==================================
``0x00``   the shower's master key      the scanner's master key
``0x01``   our master key (it is new)   the scanner's device key (signs it)
``0x02``   the shower's device key      our master key (it is new)
=========  ===========================  ==================================
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Mapping
from typing import Any

from messa.crypto._vodozemac import b64decode
from messa.crypto.verification.flow import FlowCancelled, FlowContext, Send, string_field
from messa.crypto.verification.identity import VerificationError, VerifiedKeys
from messa.crypto.verification.qr import QrCodeError, QrMode, QrPayload
from messa.crypto.verification.transport import START, CancelCode, Method


class QrState(enum.StrEnum):
    """Where a QR flow is."""

    SCANNED = "scanned"  # we scanned their code and sent m.reciprocate.v1
    RECIPROCATED = "reciprocated"  # they scanned ours; waiting for our user
    CONFIRMED = "confirmed"  # our user confirmed they scanned


def _same_key(raw: bytes, known: str | None) -> bool:
    if known is None:
        return False
    try:
        return hmac.compare_digest(raw, b64decode(known))
    except ValueError:
        return False


def build_qr(ctx: FlowContext) -> tuple[QrPayload, VerifiedKeys] | None:
    """The code we can show in this flow, and what a confirmed scan will prove.

    ``None`` when the keys a code needs are not known (or not trusted).
    """
    keys = ctx.keys
    master = keys.own_master_key
    try:
        if not ctx.is_self_verification:
            if master is None or not keys.own_master_trusted or keys.their_master_key is None:
                return None
            payload = QrPayload.create(
                QrMode.VERIFY_OTHER_USER, ctx.flow_id, master, keys.their_master_key
            )
            return payload, VerifiedKeys(ctx.their_user, master_key=keys.their_master_key)
        if master is None:
            return None
        if keys.own_master_trusted:
            payload = QrPayload.create(
                QrMode.SELF_TRUSTED, ctx.flow_id, master, keys.their_device_key
            )
            device = (ctx.their_device, keys.their_device_key)
            return payload, VerifiedKeys(ctx.their_user, device=device)
        payload = QrPayload.create(QrMode.SELF_UNTRUSTED, ctx.flow_id, ctx.our_ed25519, master)
        return payload, VerifiedKeys(ctx.their_user, master_key=master)
    except ValueError:
        return None  # a key that is not 32 bytes of base64 cannot go in a code


class QrShown:
    """Our side of a flow in which the other device scans our code."""

    def __init__(self, payload: QrPayload, proves: VerifiedKeys) -> None:
        self.payload = payload
        self._proves = proves
        self.state: QrState | None = None
        self.verified: VerifiedKeys | None = None

    def __repr__(self) -> str:
        return f"QrShown(mode={self.payload.mode.name}, state={self.state})"

    def receive_start(self, content: Mapping[str, Any]) -> None:
        """Check the secret in their ``m.reciprocate.v1`` start.

        Raises:
            FlowCancelled: ``m.key_mismatch`` if the secret is wrong.
        """
        if self.state is not None:
            raise FlowCancelled(CancelCode.UNEXPECTED_MESSAGE, "second reciprocate start")
        secret = string_field(content, "secret", max_length=1024)
        try:
            given = b64decode(secret)
        except ValueError as exc:
            raise FlowCancelled(CancelCode.INVALID_MESSAGE, "secret is not base64") from exc
        if not hmac.compare_digest(given, self.payload.secret):
            raise FlowCancelled(CancelCode.KEY_MISMATCH, "the QR code secret does not match")
        self.state = QrState.RECIPROCATED

    def confirm(self) -> None:
        """Our user saw the other device accept our code.

        Raises:
            VerificationError: if nobody has scanned our code yet.
        """
        if self.state is not QrState.RECIPROCATED:
            raise VerificationError("the other device has not scanned our QR code")
        self.state = QrState.CONFIRMED
        self.verified = self._proves

    def accepts_done(self) -> bool:
        """Their done may arrive once they scanned."""
        return self.state is not None

    def wants_done(self, their_done: bool) -> bool:
        """We send done once our user confirmed."""
        return self.state is QrState.CONFIRMED


class QrScanned:
    """Our side of a flow in which we scanned the other device's code."""

    def __init__(self, verified: VerifiedKeys) -> None:
        self.state = QrState.SCANNED
        self._proves = verified
        self.verified: VerifiedKeys | None = None

    def __repr__(self) -> str:
        return f"QrScanned(state={self.state})"

    @classmethod
    def scan(cls, ctx: FlowContext, payload: QrPayload) -> tuple[QrScanned, Send]:
        """Check a scanned code and build our ``m.reciprocate.v1`` start.

        Raises:
            QrCodeError: if the code belongs to another flow (nothing is sent).
            FlowCancelled: if the keys in the code are not the ones we know.
        """
        if payload.flow_id != ctx.flow_id:
            raise QrCodeError("this QR code belongs to another verification")
        proves = cls._check(ctx, payload)
        message = ctx.send(
            START,
            {
                "from_device": ctx.our_device,
                "method": Method.RECIPROCATE.value,
                "secret": payload.secret_b64,
            },
        )
        return cls(proves), message

    @staticmethod
    def _check(ctx: FlowContext, payload: QrPayload) -> VerifiedKeys:
        keys = ctx.keys
        master = keys.own_master_key
        if (payload.mode is QrMode.VERIFY_OTHER_USER) == ctx.is_self_verification:
            raise FlowCancelled(CancelCode.USER_MISMATCH, "QR mode does not fit these users")
        mismatch = FlowCancelled(CancelCode.KEY_MISMATCH, "the QR code's keys are not ours")
        if payload.mode is QrMode.VERIFY_OTHER_USER:
            their_master = keys.their_master_key
            if (
                not keys.own_master_trusted
                or their_master is None
                or not _same_key(payload.first_key, their_master)
                or not _same_key(payload.second_key, master)
            ):
                raise mismatch
            return VerifiedKeys(ctx.their_user, master_key=their_master)
        if payload.mode is QrMode.SELF_TRUSTED:
            if (
                master is None
                or not _same_key(payload.first_key, master)
                or not _same_key(payload.second_key, ctx.our_ed25519)
            ):
                raise mismatch
            return VerifiedKeys(ctx.their_user, master_key=master)
        # SELF_UNTRUSTED: the other device vouches for nothing; we must trust the master key.
        if (
            not keys.own_master_trusted
            or not _same_key(payload.first_key, keys.their_device_key)
            or not _same_key(payload.second_key, master)
        ):
            raise mismatch
        return VerifiedKeys(ctx.their_user, device=(ctx.their_device, keys.their_device_key))

    def accepts_done(self) -> bool:
        """The shower sends done first, once its user confirmed."""
        return True

    def wants_done(self, their_done: bool) -> bool:
        """We answer their done with ours; the scan itself proved their keys."""
        if their_done:
            self.verified = self._proves
        return their_done
