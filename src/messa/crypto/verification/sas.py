"""The ``m.sas.v1`` flow: start, accept, key, SAS display, MAC.

A :class:`SasFlow` is driven by its :class:`~.request.VerificationRequest`,
which wraps what it returns in envelopes and turns :class:`FlowCancelled`
into a cancel message. Users interact with it through :meth:`emoji`,
:meth:`decimals`, and the request's ``confirm_sas`` / ``sas_mismatch``.

MACs always cover our device key, and our master key when this device
trusts it; the other side's MACs are checked against the keys fixed when
the flow started, and at least one of them (device or master) must verify.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from messa.crypto.verification.emoji import Emoji, emoji_for
from messa.crypto.verification.flow import (
    MAX_ITEMS,
    FlowCancelled,
    FlowContext,
    Send,
    string_field,
    string_list,
)
from messa.crypto.verification.identity import VerificationError, VerifiedKeys
from messa.crypto.verification.sas_crypto import (
    HASH,
    KEY_AGREEMENT,
    MAC_METHOD,
    SAS_METHODS,
    EphemeralKey,
    SharedSecret,
    commitment,
    commitment_matches,
    decimals,
    emoji_indices,
    key_ids_string,
    mac_info,
    sas_info,
)
from messa.crypto.verification.transport import ACCEPT, KEY, MAC, START, CancelCode, Method
from messa.types.ids import Ed25519Key

_KEY_IDS = "KEY_IDS"


class SasState(enum.StrEnum):
    """Where a SAS flow is."""

    STARTED = "started"  # we sent start; waiting for accept
    RECEIVED = "received"  # they sent start; we have not accepted yet
    ACCEPTED = "accepted"  # accept exchanged; waiting for their key
    KEYS_EXCHANGED = "keys_exchanged"  # SAS shown; waiting for the user
    CONFIRMED = "confirmed"  # user confirmed, our MAC sent; waiting for theirs
    VERIFIED = "verified"  # both MACs agree and the user confirmed


def _cancel(code: CancelCode, reason: str) -> FlowCancelled:
    return FlowCancelled(code, reason)


class SasFlow:
    """One SAS exchange between our device and one other device."""

    def __init__(self, ctx: FlowContext, *, we_started: bool, key: EphemeralKey | None = None):
        self._ctx = ctx
        self.we_started = we_started
        self._key = key if key is not None else EphemeralKey()
        self._start_content: dict[str, Any] = {}
        self._commitment: str | None = None
        self._their_key: str | None = None
        self._secret: SharedSecret | None = None
        self._sas: bytes | None = None
        self._sas_methods: tuple[str, ...] = ()
        self._their_mac: dict[str, Any] | None = None
        self.verified: VerifiedKeys | None = None
        self.state = SasState.STARTED if we_started else SasState.RECEIVED

    def __repr__(self) -> str:
        return f"SasFlow(flow_id={self._ctx.flow_id!r}, state={self.state})"

    # --- creation ---------------------------------------------------------------

    @classmethod
    def start(cls, ctx: FlowContext, *, key: EphemeralKey | None = None) -> tuple[SasFlow, Send]:
        """Begin as the device that sends ``m.key.verification.start``."""
        flow = cls(ctx, we_started=True, key=key)
        message = ctx.send(
            START,
            {
                "from_device": ctx.our_device,
                "method": Method.SAS.value,
                "key_agreement_protocols": [KEY_AGREEMENT],
                "hashes": [HASH],
                "message_authentication_codes": [MAC_METHOD],
                "short_authentication_string": list(SAS_METHODS),
            },
        )
        flow._start_content = message.content
        return flow, message

    @classmethod
    def from_start(
        cls, ctx: FlowContext, content: Mapping[str, Any], *, key: EphemeralKey | None = None
    ) -> SasFlow:
        """Take the other side's start; :meth:`accept` answers it.

        Raises:
            FlowCancelled: ``m.unknown_method`` if nothing in common, or
                ``m.invalid_message`` if the content is malformed.
        """
        flow = cls(ctx, we_started=False, key=key)
        agreements = string_list(content, "key_agreement_protocols")
        hashes = string_list(content, "hashes")
        macs = string_list(content, "message_authentication_codes")
        sas_methods = string_list(content, "short_authentication_string")
        if KEY_AGREEMENT not in agreements or HASH not in hashes or MAC_METHOD not in macs:
            raise _cancel(CancelCode.UNKNOWN_METHOD, "no common key agreement, hash or MAC")
        common = tuple(m for m in SAS_METHODS if m in sas_methods)
        if not common:
            raise _cancel(CancelCode.UNKNOWN_METHOD, "no common SAS method")
        flow._sas_methods = common
        flow._start_content = dict(content)
        try:
            flow._commitment = commitment(flow._key.public_key, flow._start_content)
        except (ValueError, TypeError, RecursionError) as exc:
            raise _cancel(CancelCode.INVALID_MESSAGE, "start is not canonical JSON") from exc
        return flow

    def accept(self) -> Send:
        """Our ``m.key.verification.accept`` (acceptor side, once)."""
        if self.state is not SasState.RECEIVED or self._commitment is None:
            raise VerificationError("this SAS flow cannot be accepted now")
        self.state = SasState.ACCEPTED
        return self._ctx.send(
            ACCEPT,
            {
                "method": Method.SAS.value,
                "key_agreement_protocol": KEY_AGREEMENT,
                "hash": HASH,
                "message_authentication_code": MAC_METHOD,
                "short_authentication_string": list(self._sas_methods),
                "commitment": self._commitment,
            },
        )

    # --- incoming ---------------------------------------------------------------

    def receive(self, event_type: str, content: Mapping[str, Any]) -> list[Send]:
        """Handle accept / key / mac.

        Raises:
            FlowCancelled: on any protocol or key problem.
        """
        if event_type == ACCEPT and self.state is SasState.STARTED:
            return self._on_accept(content)
        if event_type == KEY and self.state is SasState.ACCEPTED:
            return self._on_key(content)
        if event_type == MAC and self._their_mac is None and self._secret is not None:
            self._their_mac = dict(content)
            if self.state is SasState.CONFIRMED:
                self._check_mac()
            return []
        reason = f"unexpected {event_type} in state {self.state}"
        raise _cancel(CancelCode.UNEXPECTED_MESSAGE, reason)

    def _on_accept(self, content: Mapping[str, Any]) -> list[Send]:
        if (
            string_field(content, "key_agreement_protocol") != KEY_AGREEMENT
            or string_field(content, "hash") != HASH
            or string_field(content, "message_authentication_code") != MAC_METHOD
        ):
            raise _cancel(CancelCode.UNKNOWN_METHOD, "accept chose a method we did not offer")
        chosen = string_list(content, "short_authentication_string")
        common = tuple(m for m in SAS_METHODS if m in chosen)
        if not common or any(m not in SAS_METHODS for m in chosen):
            raise _cancel(CancelCode.UNKNOWN_METHOD, "accept chose no SAS method we offered")
        self._sas_methods = common
        self._commitment = string_field(content, "commitment", max_length=128)
        self.state = SasState.ACCEPTED
        return [self._ctx.send(KEY, {"key": self._key.public_key})]

    def _on_key(self, content: Mapping[str, Any]) -> list[Send]:
        their_key = string_field(content, "key", max_length=128)
        if their_key == self._key.public_key:
            raise _cancel(CancelCode.KEY_MISMATCH, "the other side echoed our key")
        out: list[Send] = []
        if self.we_started:
            assert self._commitment is not None  # set with the accept
            if not commitment_matches(self._commitment, their_key, self._start_content):
                raise _cancel(CancelCode.MISMATCHED_COMMITMENT, "key does not match commitment")
        else:
            out.append(self._ctx.send(KEY, {"key": self._key.public_key}))
        try:
            self._secret = self._key.agree(their_key)
        except ValueError as exc:
            raise _cancel(CancelCode.KEY_MISMATCH, "unusable ephemeral key") from exc
        self._their_key = their_key
        self._sas = self._secret.sas_bytes(self._info())
        self.state = SasState.KEYS_EXCHANGED
        return out

    def _info(self) -> str:
        ctx = self._ctx
        assert self._their_key is not None
        ours = (ctx.our_user, ctx.our_device, self._key.public_key)
        theirs = (ctx.their_user, ctx.their_device, self._their_key)
        first, second = (ours, theirs) if self.we_started else (theirs, ours)
        return sas_info(*first, *second, ctx.flow_id)

    # --- what the user sees and does ------------------------------------------

    @property
    def sas_methods(self) -> tuple[str, ...]:
        """The SAS methods both sides agreed on (``decimal``, ``emoji``)."""
        return self._sas_methods

    def emoji(self) -> list[Emoji] | None:
        """The seven emoji to compare, once keys are exchanged and emoji were agreed."""
        if self._sas is None or "emoji" not in self._sas_methods:
            return None
        return [emoji_for(i) for i in emoji_indices(self._sas)]

    def decimals(self) -> tuple[int, int, int] | None:
        """The three numbers to compare, once keys are exchanged."""
        if self._sas is None:
            return None
        return decimals(self._sas)

    def confirm(self) -> list[Send]:
        """The user says the SAS match: send our MAC (and check theirs if it came).

        Raises:
            VerificationError: if there is no SAS to confirm yet.
            FlowCancelled: if their MAC does not verify.
        """
        if self.state is not SasState.KEYS_EXCHANGED:
            raise VerificationError(f"nothing to confirm in state {self.state}")
        self.state = SasState.CONFIRMED
        out = [self._our_mac()]
        if self._their_mac is not None:
            self._check_mac()
        return out

    def accepts_done(self) -> bool:
        """Their done may come once their MAC did."""
        return self._their_mac is not None

    def wants_done(self, their_done: bool) -> bool:
        """We send done once both MACs agree and our user confirmed."""
        return self.state is SasState.VERIFIED

    # --- MACs -------------------------------------------------------------------

    def _our_mac(self) -> Send:
        ctx, secret = self._ctx, self._secret
        assert secret is not None
        keys: dict[str, str] = {f"ed25519:{ctx.our_device}": ctx.our_ed25519}
        master = ctx.keys.own_master_key
        if master is not None and ctx.keys.own_master_trusted:
            keys[f"ed25519:{master}"] = master

        def info(key_id: str) -> str:
            return mac_info(
                ctx.our_user, ctx.our_device, ctx.their_user, ctx.their_device, ctx.flow_id, key_id
            )

        macs = {key_id: secret.mac(key, info(key_id)) for key_id, key in keys.items()}
        keys_mac = secret.mac(key_ids_string(macs), info(_KEY_IDS))
        return ctx.send(MAC, {"mac": macs, "keys": keys_mac})

    def _check_mac(self) -> None:
        ctx, secret, content = self._ctx, self._secret, self._their_mac
        assert secret is not None and content is not None
        macs = content.get("mac")
        if (
            not isinstance(macs, dict)
            or not 0 < len(macs) <= MAX_ITEMS
            or not all(isinstance(v, str) for v in macs.values())
        ):
            raise _cancel(CancelCode.INVALID_MESSAGE, "mac must map key ids to strings")
        keys_mac = string_field(content, "keys", max_length=128)

        def info(key_id: str) -> str:
            return mac_info(
                ctx.their_user, ctx.their_device, ctx.our_user, ctx.our_device, ctx.flow_id, key_id
            )

        if not secret.verify_mac(key_ids_string(macs), info(_KEY_IDS), keys_mac):
            raise _cancel(CancelCode.KEY_MISMATCH, "the key id list MAC does not verify")
        known: dict[str, Ed25519Key] = {f"ed25519:{ctx.their_device}": ctx.keys.their_device_key}
        if ctx.keys.their_master_key is not None:
            known[f"ed25519:{ctx.keys.their_master_key}"] = ctx.keys.their_master_key
        verified: set[str] = set()
        for key_id, tag in macs.items():
            key = known.get(key_id)
            if key is None:
                continue  # a key we hold no copy of proves nothing either way
            if not secret.verify_mac(key, info(key_id), tag):
                raise _cancel(CancelCode.KEY_MISMATCH, f"MAC of {key_id} does not verify")
            verified.add(key_id)
        if not verified:
            raise _cancel(CancelCode.KEY_MISMATCH, "no key we know was MACed")
        device_id = f"ed25519:{ctx.their_device}"
        master = ctx.keys.their_master_key
        self.verified = VerifiedKeys(
            user_id=ctx.their_user,
            device=(ctx.their_device, ctx.keys.their_device_key) if device_id in verified else None,
            master_key=master if master is not None and f"ed25519:{master}" in verified else None,
        )
        self.state = SasState.VERIFIED
