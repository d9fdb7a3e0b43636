"""State and plumbing shared by verification requests.

:class:`RequestBase` holds a request's state, the keys fixed for it, and the
helpers that wrap method messages for the transport, send ``done`` when due,
record trust when both sides are done, and cancel. The protocol logic lives
in :class:`~.request.VerificationRequest`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from messa._clock import Clock
from messa.crypto.verification.flow import FlowCancelled, FlowContext, Send
from messa.crypto.verification.identity import (
    FixedKeys,
    KeyConflict,
    KeysUnavailable,
    VerificationError,
    VerificationIdentity,
    VerifiedKeys,
    fix_keys,
    keys_still_match,
)
from messa.crypto.verification.reciprocate import QrScanned, QrShown
from messa.crypto.verification.sas import SasFlow
from messa.crypto.verification.transport import (
    CANCEL,
    DONE,
    CancelCode,
    Method,
    RoomTransport,
    Transport,
    VerificationOutgoing,
    envelope,
    room_request,
    to_device_request,
)
from messa.types.ids import DeviceId, UserId

#: A flow with no message for this long is cancelled (``m.timeout``).
FLOW_TIMEOUT_MS = 10 * 60 * 1000
#: An unanswered incoming request is dropped this long after we received it.
PROMPT_TIMEOUT_MS = 2 * 60 * 1000

MethodFlow = SasFlow | QrShown | QrScanned


class RequestState(enum.StrEnum):
    """Where a request is."""

    CREATED = "created"  # we asked; waiting for a ready
    REQUESTED = "requested"  # they asked; our user has not answered
    READY = "ready"  # both ready; a method may start
    STARTED = "started"  # a method runs (see ``flow``)
    DONE = "done"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Cancellation:
    """Why a request ended without success."""

    code: str
    reason: str
    by_us: bool


@dataclass(slots=True)
class RequestEnv:
    """What every request of one machine shares."""

    identity: VerificationIdentity
    clock: Clock
    methods: tuple[Method, ...]


def ready_methods(ours: Sequence[str], theirs: Sequence[str]) -> tuple[Method, ...]:
    """Our methods that make sense with theirs (for ``ready`` and negotiation)."""
    out: list[Method] = []
    if Method.SAS in ours and Method.SAS in theirs:
        out.append(Method.SAS)
    if Method.QR_SHOW in ours and Method.QR_SCAN in theirs:
        out.append(Method.QR_SHOW)
    if Method.QR_SCAN in ours and Method.QR_SHOW in theirs:
        out.append(Method.QR_SCAN)
    if (Method.QR_SHOW in out or Method.QR_SCAN in out) and Method.RECIPROCATE in ours:
        out.append(Method.RECIPROCATE)
    return tuple(out)


class RequestBase:
    """A verification with one other device (or, before ready, one user)."""

    def __init__(
        self,
        env: RequestEnv,
        *,
        other_user: UserId,
        flow_id: str | None,
        transport: Transport,
        we_requested: bool,
        other_device: DeviceId | None = None,
        targets: Sequence[DeviceId] = (),
        their_methods: Sequence[str] = (),
        prompt_deadline_ms: int | None = None,
    ) -> None:
        self._env = env
        self.other_user = other_user
        self.flow_id = flow_id
        self.transport = transport
        self.we_requested = we_requested
        self.other_device = other_device
        self.targets = tuple(targets)
        self.our_methods: tuple[Method, ...] = env.methods
        self.their_methods = tuple(their_methods)
        self.state = RequestState.CREATED if we_requested else RequestState.REQUESTED
        self.cancellation: Cancellation | None = None
        self.verified: VerifiedKeys | None = None
        self.flow: MethodFlow | None = None
        self._keys: FixedKeys | None = None
        self._shown: QrShown | None = None
        self._pending_start: dict[str, Any] | None = None
        self._our_done = False
        self._their_done = False
        now = env.clock.now_ms()
        self._last_activity_ms = now
        self._started_ms: int | None = None
        self._prompt_deadline_ms = prompt_deadline_ms
        self.finished_ms: int | None = None

    def __repr__(self) -> str:
        return (
            f"VerificationRequest(other_user={self.other_user!r}, "
            f"other_device={self.other_device!r}, flow_id={self.flow_id!r}, state={self.state})"
        )

    # --- read-only views ----------------------------------------------------------

    @property
    def is_self_verification(self) -> bool:
        """Whether both devices belong to one user."""
        return self.other_user == self._env.identity.user_id

    @property
    def is_final(self) -> bool:
        """Done or cancelled."""
        return self.state in (RequestState.DONE, RequestState.CANCELLED)

    @property
    def methods(self) -> tuple[Method, ...]:
        """The methods both sides can use (known once ready or requested)."""
        return ready_methods(self.our_methods, self.their_methods)

    @property
    def sas(self) -> SasFlow | None:
        """The running SAS flow, if the method chosen is SAS."""
        return self.flow if isinstance(self.flow, SasFlow) else None

    @property
    def keys_known(self) -> bool:
        """Whether the other device's keys are known (fixed for the flow, or fixable now).

        When false, the caller should query the other user's keys before
        :meth:`accept`, :meth:`start_sas` or :meth:`scan_qr_code`.
        """
        try:
            return self._ensure_keys() is not None
        except FlowCancelled:
            return False

    # --- plumbing -----------------------------------------------------------------

    @property
    def _fid(self) -> str:
        if self.flow_id is None:
            raise VerificationError("the request has not been sent yet")
        return self.flow_id

    def _touch(self) -> None:
        self._last_activity_ms = self._env.clock.now_ms()

    def _begin(self, flow: MethodFlow) -> None:
        self.flow = flow
        self.state = RequestState.STARTED
        self._started_ms = self._env.clock.now_ms()
        self._touch()

    def _ensure_keys(self) -> FixedKeys | None:
        if self._keys is None and self.other_device is not None:
            try:
                self._keys = fix_keys(self._env.identity, self.other_user, self.other_device)
            except KeyConflict as exc:
                reason = "the device id is a cross-signing key"
                raise FlowCancelled(CancelCode.KEY_MISMATCH, reason) from exc
            except KeysUnavailable:
                return None
        return self._keys

    def _keys_changed(self) -> list[VerificationOutgoing] | None:
        if self._keys is None or self.other_device is None:
            return None
        if keys_still_match(self._env.identity, self._keys, self.other_user, self.other_device):
            return None
        return self._cancel(CancelCode.KEY_MISMATCH, "keys changed during the verification")

    def _context(self, keys: FixedKeys) -> FlowContext:
        identity = self._env.identity
        assert self.other_device is not None
        fid = self._fid
        transport = self.transport
        return FlowContext(
            our_user=identity.user_id,
            our_device=identity.device_id,
            our_ed25519=identity.own_ed25519(),
            their_user=self.other_user,
            their_device=self.other_device,
            flow_id=fid,
            keys=keys,
            envelope=lambda content: envelope(transport, fid, content),
        )

    def _guard(self, step: Callable[[], list[Send]]) -> list[VerificationOutgoing]:
        try:
            sends = step()
        except FlowCancelled as cancel:
            return self._cancel(cancel.code, cancel.reason)
        return self._emit(sends)

    def _emit(self, sends: list[Send]) -> list[VerificationOutgoing]:
        """Wrap method messages for the transport, then send done / finish when due."""
        out = [self._out(s.event_type, s.content) for s in sends]
        flow = self.flow
        if flow is not None and not self._our_done and flow.wants_done(self._their_done):
            self._our_done = True
            out += self._send(DONE, {})
        if flow is not None and self._our_done and self._their_done:
            verified = flow.verified
            if verified is None:
                return out + self._cancel(CancelCode.KEY_MISMATCH, "nothing was verified")
            if (mismatch := self._keys_changed()) is not None:
                return out + mismatch
            self.verified = verified
            self._finish(RequestState.DONE, None)
            identity = self._env.identity
            if verified.device is not None:
                identity.mark_device_verified(verified.user_id, *verified.device)
            if verified.master_key is not None:
                identity.mark_user_verified(verified.user_id, verified.master_key)
        return out

    def _send(self, event_type: str, content: Mapping[str, Any]) -> list[VerificationOutgoing]:
        return [self._out(event_type, envelope(self.transport, self._fid, content))]

    def _out(self, event_type: str, content: dict[str, Any]) -> VerificationOutgoing:
        if isinstance(self.transport, RoomTransport):
            return room_request(self.transport.room_id, event_type, content)
        devices = [self.other_device] if self.other_device is not None else list(self.targets)
        return to_device_request(event_type, self.other_user, devices, content)

    def _unexpected(self, event_type: str) -> list[VerificationOutgoing]:
        return self._cancel(CancelCode.UNEXPECTED_MESSAGE, f"unexpected {event_type}")

    def _cancel(self, code: CancelCode, reason: str) -> list[VerificationOutgoing]:
        out: list[VerificationOutgoing] = []
        if self.flow_id is not None:
            out = self._send(CANCEL, {"code": code.value, "reason": reason})
        self._finish(RequestState.CANCELLED, Cancellation(code, reason, True))
        return out

    def _finish(self, state: RequestState, cancellation: Cancellation | None) -> None:
        self.state = state
        self.cancellation = cancellation
        self.finished_ms = self._env.clock.now_ms()
