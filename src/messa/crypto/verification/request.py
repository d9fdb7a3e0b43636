"""One verification request and the method flow running inside it.

A :class:`VerificationRequest` follows the spec's framework: request →
ready → start (SAS or QR reciprocation) → method messages → done, with a
cancel possible at any point. User actions (:meth:`accept`,
:meth:`start_sas`, :meth:`scan_qr_code`, :meth:`confirm_sas`,
:meth:`confirm_qr_scanned`, :meth:`cancel`) and incoming messages return the
messages to send; nothing is sent from here.

The other device's keys (and both users' master keys) are fixed the first
time they are needed after the other device is known; every later step
compares the identity provider's current keys with them and cancels with
``m.key_mismatch`` on any change. Trust is recorded only when the flow is
done on both sides.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from messa.crypto.verification.flow import FlowCancelled, Send, string_list
from messa.crypto.verification.identity import VerificationError
from messa.crypto.verification.qr import QrPayload, parse_scanned
from messa.crypto.verification.reciprocate import QrScanned, QrShown, build_qr
from messa.crypto.verification.request_base import (
    FLOW_TIMEOUT_MS,
    PROMPT_TIMEOUT_MS,
    Cancellation,
    RequestBase,
    RequestEnv,
    RequestState,
    ready_methods,
)
from messa.crypto.verification.sas import SasFlow, SasState
from messa.crypto.verification.transport import (
    CANCEL,
    DONE,
    READY,
    START,
    CancelCode,
    Incoming,
    Method,
    RoomTransport,
    VerificationOutgoing,
    envelope,
    to_device_request,
)
from messa.types.ids import DeviceId

__all__ = [
    "FLOW_TIMEOUT_MS",
    "PROMPT_TIMEOUT_MS",
    "Cancellation",
    "RequestEnv",
    "RequestState",
    "VerificationRequest",
    "ready_methods",
]


class VerificationRequest(RequestBase):
    """A verification with one other device (or, before ready, one user)."""

    def qr_code(self) -> QrPayload | None:
        """The code to show the other device, when both sides can do QR and keys allow it."""
        if self.state is not RequestState.READY and not isinstance(self.flow, QrShown):
            return None
        if self._shown is None and Method.QR_SHOW in self.methods:
            try:
                keys = self._ensure_keys()
            except FlowCancelled:
                return None
            built = build_qr(self._context(keys)) if keys is not None else None
            if built is not None:
                self._shown = QrShown(*built)
        return self._shown.payload if self._shown is not None else None

    # --- user actions -----------------------------------------------------------

    def accept(self) -> list[VerificationOutgoing]:
        """Answer their request with ready (or, for a bare start, with accept).

        Raises:
            VerificationError: if not waiting for our answer, if no method is
                in common, or if the other device's keys are not known yet.
        """
        if self.state is not RequestState.REQUESTED:
            raise VerificationError(f"cannot accept in state {self.state}")
        if not self.methods and self._pending_start is None:
            raise VerificationError("no verification method in common")
        try:
            keys = self._ensure_keys()
        except FlowCancelled as cancel:
            return self._cancel(cancel.code, cancel.reason)
        if keys is None:
            raise VerificationError("the other device's keys are not known yet")
        self._touch()
        if self._pending_start is not None:
            start, self._pending_start = self._pending_start, None
            return self._guard(lambda: self._begin_their_sas(start))
        self.state = RequestState.READY
        content = {"from_device": self._env.identity.device_id, "methods": list(self.methods)}
        return self._send(READY, content)

    def start_sas(self) -> list[VerificationOutgoing]:
        """Start SAS (emoji / decimals) with the other device.

        Raises:
            VerificationError: if not ready, SAS is not in common, or keys are unknown.
        """
        if self.state is not RequestState.READY or Method.SAS not in self.methods:
            raise VerificationError("SAS cannot start now")
        try:
            keys = self._ensure_keys()
        except FlowCancelled as cancel:
            return self._cancel(cancel.code, cancel.reason)
        if keys is None:
            raise VerificationError("the other device's keys are not known yet")
        flow, message = SasFlow.start(self._context(keys))
        self._begin(flow)
        return self._emit([message])

    def scan_qr_code(self, scanned: bytes | str | QrPayload) -> list[VerificationOutgoing]:
        """Check a code scanned from the other device and reciprocate.

        Args:
            scanned: The scanned bytes, their base64, or a parsed payload.

        Raises:
            QrCodeError: if the data is not a verification code for this flow.
            VerificationError: if scanning is not possible in this state.
        """
        payload = scanned if isinstance(scanned, QrPayload) else parse_scanned(scanned)
        if self.state is not RequestState.READY or Method.QR_SCAN not in self.methods:
            raise VerificationError("cannot scan a QR code now")
        try:
            keys = self._ensure_keys()
            if keys is None:
                raise VerificationError("the other device's keys are not known yet")
            flow, message = QrScanned.scan(self._context(keys), payload)
        except FlowCancelled as cancel:
            return self._cancel(cancel.code, cancel.reason)
        self._begin(flow)
        return self._emit([message])

    def confirm_sas(self) -> list[VerificationOutgoing]:
        """Our user says the emoji / numbers match.

        Raises:
            VerificationError: if no SAS is waiting for confirmation.
        """
        sas = self.sas
        if sas is None or self.is_final:
            raise VerificationError("no SAS to confirm")
        if (mismatch := self._keys_changed()) is not None:
            return mismatch
        return self._guard(sas.confirm)

    def sas_mismatch(self) -> list[VerificationOutgoing]:
        """Our user says the emoji / numbers differ: cancel with ``m.mismatched_sas``."""
        if self.sas is None or self.is_final:
            raise VerificationError("no SAS to reject")
        return self._cancel(CancelCode.MISMATCHED_SAS, "the short authentication strings differ")

    def confirm_qr_scanned(self) -> list[VerificationOutgoing]:
        """Our user saw the other device scan our code successfully.

        Raises:
            VerificationError: if nobody scanned our code.
        """
        if not isinstance(self.flow, QrShown) or self.is_final:
            raise VerificationError("nobody scanned our QR code")
        if (mismatch := self._keys_changed()) is not None:
            return mismatch
        shown = self.flow

        def confirm() -> list[Send]:
            shown.confirm()
            return []

        return self._guard(confirm)

    def cancel(
        self, code: CancelCode = CancelCode.USER, reason: str = "cancelled by the user"
    ) -> list[VerificationOutgoing]:
        """Cancel (or reject) the request. Does nothing once it is final."""
        if self.is_final:
            return []
        return self._cancel(code, reason)

    # --- machine hooks ------------------------------------------------------------

    def receive(self, msg: Incoming) -> list[VerificationOutgoing]:
        """Handle a message of this flow from the other user."""
        if self.is_final:
            return []  # never answer a finished flow: that is how error loops start
        if self._from_stranger(msg):
            return []
        if msg.event_type == CANCEL:
            return self._on_cancel(msg)
        self._touch()
        if (mismatch := self._keys_changed()) is not None:
            return mismatch
        if msg.event_type == READY:
            return self._on_ready(msg)
        if msg.event_type == START:
            return self._guard(lambda: self._on_start(msg.content))
        if msg.event_type == DONE:
            if self.flow is None or not self.flow.accepts_done() or self._their_done:
                return self._unexpected(DONE)
            self._their_done = True
            return self._emit([])
        if isinstance(self.flow, SasFlow):
            sas = self.flow
            return self._guard(lambda: sas.receive(msg.event_type, msg.content))
        return self._unexpected(msg.event_type)

    def set_pending_start(self, content: dict[str, Any]) -> None:
        """Hold a start that came without a request until our user accepts."""
        self._pending_start = content

    def recheck_keys(self) -> list[VerificationOutgoing]:
        """Cancel with ``m.key_mismatch`` if the keys changed since the flow started."""
        if self.is_final:
            return []
        return self._keys_changed() or []

    def expire(self, now_ms: int) -> list[VerificationOutgoing]:
        """Apply the spec's timeouts."""
        if self.is_final:
            return []
        if self.state is RequestState.REQUESTED:
            deadline = self._prompt_deadline_ms
            if deadline is not None and now_ms >= deadline:
                # Other devices of ours may still answer: tell the requester nothing.
                self._finish(RequestState.CANCELLED, Cancellation(CancelCode.TIMEOUT, "", True))
            return []
        idle = now_ms - self._last_activity_ms >= FLOW_TIMEOUT_MS
        too_long = self._started_ms is not None and now_ms - self._started_ms >= FLOW_TIMEOUT_MS
        if idle or too_long:
            return self._cancel(CancelCode.TIMEOUT, "the verification timed out")
        return []

    def accepted_elsewhere(self, code: CancelCode) -> None:
        """Another device of ours answered this request: stop, silently."""
        if not self.is_final:
            reason = "answered on another device"
            self._finish(RequestState.CANCELLED, Cancellation(code, reason, False))

    # --- incoming, by type -------------------------------------------------------

    def _from_stranger(self, msg: Incoming) -> bool:
        device = msg.sender_device
        if device is None:
            return False
        if self.other_device is not None:
            return device != self.other_device
        return bool(self.targets) and device not in self.targets

    def _on_cancel(self, msg: Incoming) -> list[VerificationOutgoing]:
        code = msg.content.get("code")
        reason = msg.content.get("reason")
        code = code if isinstance(code, str) and len(code) <= 255 else CancelCode.INVALID_MESSAGE
        reason = reason[:500] if isinstance(reason, str) else ""
        out: list[VerificationOutgoing] = []
        if self.state is RequestState.CREATED and len(self.targets) > 1:
            # One of their devices declined: tell the others the request is over.
            others = [d for d in self.targets if d != msg.sender_device]
            content = envelope(self.transport, self._fid, {"code": CancelCode.USER, "reason": ""})
            out.append(to_device_request(CANCEL, self.other_user, others, content))
        self._finish(RequestState.CANCELLED, Cancellation(code, reason, False))
        return out

    def _on_ready(self, msg: Incoming) -> list[VerificationOutgoing]:
        device = msg.content.get("from_device")
        if not isinstance(device, str):
            return self._cancel(CancelCode.INVALID_MESSAGE, "ready without from_device")
        if not self.we_requested:
            return self._unexpected(READY)
        if self.state is not RequestState.CREATED:
            late = device != self.other_device and device in self.targets
            if late and not isinstance(self.transport, RoomTransport):
                # Another of their devices answered too late: tell it we went elsewhere.
                content = {"code": CancelCode.ACCEPTED, "reason": "another device answered"}
                message = envelope(self.transport, self._fid, content)
                return [to_device_request(CANCEL, self.other_user, [DeviceId(device)], message)]
            return []
        is_room = isinstance(self.transport, RoomTransport)
        if not is_room and device not in self.targets:
            return []
        try:
            self.their_methods = tuple(string_list(msg.content, "methods"))
        except FlowCancelled as cancel:
            return self._cancel(cancel.code, cancel.reason)
        self.other_device = DeviceId(device)
        out: list[VerificationOutgoing] = []
        others = [d for d in self.targets if d != device]
        if others and not is_room:
            content = {"code": CancelCode.ACCEPTED, "reason": "another device answered"}
            message = envelope(self.transport, self._fid, content)
            out.append(to_device_request(CANCEL, self.other_user, others, message))
        if not self.methods:
            return out + self._cancel(CancelCode.UNKNOWN_METHOD, "no method in common")
        self.state = RequestState.READY
        try:
            self._ensure_keys()
        except FlowCancelled as cancel:
            return out + self._cancel(cancel.code, cancel.reason)
        return out

    def _on_start(self, content: Mapping[str, Any]) -> list[Send]:
        method = content.get("method")
        device = content.get("from_device")
        if not isinstance(method, str) or not isinstance(device, str):
            raise FlowCancelled(CancelCode.INVALID_MESSAGE, "start without method or from_device")
        if device != self.other_device:
            return []  # someone else's start; the chosen device is the only partner
        if self.state is RequestState.STARTED:
            if not self._lost_glare(method):
                return []  # our own start wins; theirs is ignored
            # Theirs wins: carry on as if we had never started.
            self.flow = None
            self.state = RequestState.READY
        elif self.state is not RequestState.READY:
            raise FlowCancelled(CancelCode.UNEXPECTED_MESSAGE, f"start in state {self.state}")
        if method == Method.SAS and Method.SAS in self.methods:
            return self._begin_their_sas(content)
        if method == Method.RECIPROCATE and self.qr_code() is not None:
            assert self._shown is not None
            self._shown.receive_start(content)
            self._begin(self._shown)
            return []
        raise FlowCancelled(CancelCode.UNKNOWN_METHOD, f"cannot do {method[:64]!r} here")

    def _lost_glare(self, their_method: str) -> bool:
        """Resolve two concurrent starts; True if theirs wins (spec: smaller id wins)."""
        flow = self.flow
        sas_pending = isinstance(flow, SasFlow) and flow.state is SasState.STARTED
        pending = sas_pending or (isinstance(flow, QrScanned) and not self._their_done)
        ours = Method.SAS if isinstance(flow, SasFlow) else Method.RECIPROCATE
        if not pending:
            raise FlowCancelled(CancelCode.UNEXPECTED_MESSAGE, "start after the method began")
        if their_method != ours:
            raise FlowCancelled(CancelCode.UNEXPECTED_MESSAGE, "both sides started, differently")
        me = self._env.identity
        if me.user_id != self.other_user:
            return self.other_user < me.user_id
        assert self.other_device is not None
        return self.other_device < me.device_id

    def _begin_their_sas(self, content: Mapping[str, Any]) -> list[Send]:
        keys = self._ensure_keys()
        if keys is None:
            raise FlowCancelled(CancelCode.KEY_MISMATCH, "the other device's keys are unknown")
        flow = SasFlow.from_start(self._context(keys), content)
        self._begin(flow)
        return [flow.accept()]
