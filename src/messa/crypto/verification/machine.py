"""The verification machine: every request of this device, keyed by (user, flow id).

Sans-I/O: :meth:`VerificationMachine.receive_to_device` and
:meth:`~VerificationMachine.receive_room_event` take events (to-device ones
decrypted or plain, room ones decrypted from the timeline) and return the
messages to send; :meth:`~VerificationMachine.expire` applies timeouts;
:meth:`~VerificationMachine.keys_changed` cancels flows whose keys moved.
Nothing here raises on what other devices send: bad input is ignored or
answered with a cancel.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from messa._clock import Clock
from messa.crypto.verification.flow import MAX_ITEMS
from messa.crypto.verification.identity import VerificationError, VerificationIdentity
from messa.crypto.verification.request import (
    FLOW_TIMEOUT_MS,
    PROMPT_TIMEOUT_MS,
    RequestEnv,
    RequestState,
    VerificationRequest,
)
from messa.crypto.verification.transport import (
    CANCEL,
    DONE,
    READY,
    REQUEST,
    ROOM_MESSAGE,
    START,
    CancelCode,
    Incoming,
    Method,
    RoomTransport,
    ToDeviceTransport,
    VerificationOutgoing,
    envelope,
    new_id,
    parse_room_event,
    parse_to_device,
    room_request,
    to_device_request,
)
from messa.errors import InvalidInputError
from messa.types.ids import DeviceId, EventId, RoomId, UserId, device_id

#: Methods Messa offers by default.
DEFAULT_METHODS: tuple[Method, ...] = (
    Method.SAS,
    Method.QR_SHOW,
    Method.QR_SCAN,
    Method.RECIPROCATE,
)
#: Requests older than this are ignored.
MAX_REQUEST_AGE_MS = 10 * 60 * 1000
#: Requests this far in the future are ignored.
MAX_REQUEST_SKEW_MS = 5 * 60 * 1000
#: Finished requests are forgotten this long after they end.
KEEP_FINISHED_MS = FLOW_TIMEOUT_MS

_FALLBACK_BODY = (
    "is asking to verify keys with you, but your client does not support "
    "in-room verification; use another verification method."
)

Key = tuple[UserId, str]


class VerificationMachine:
    """Verification requests and flows for one device."""

    def __init__(
        self,
        identity: VerificationIdentity,
        clock: Clock,
        *,
        methods: Sequence[Method] = DEFAULT_METHODS,
    ) -> None:
        self._identity = identity
        self._clock = clock
        self._env = RequestEnv(identity=identity, clock=clock, methods=tuple(methods))
        self._requests: dict[Key, VerificationRequest] = {}
        self._unsent_room: dict[str, VerificationRequest] = {}

    # --- queries ------------------------------------------------------------------

    def get_request(self, user_id: UserId, flow_id: str) -> VerificationRequest | None:
        """The request with ``user_id`` identified by ``flow_id``, if known."""
        return self._requests.get((user_id, flow_id))

    def requests(self, user_id: UserId | None = None) -> list[VerificationRequest]:
        """Every known request (optionally only those with ``user_id``)."""
        return [r for (u, _), r in self._requests.items() if user_id is None or u == user_id]

    def incoming_requests(self) -> list[VerificationRequest]:
        """Requests waiting for our user to accept or reject."""
        return [r for r in self._requests.values() if r.state is RequestState.REQUESTED]

    # --- starting -----------------------------------------------------------------

    def request_verification(
        self,
        user_id: UserId,
        devices: Sequence[DeviceId] | None = None,
        methods: Sequence[Method] | None = None,
    ) -> tuple[VerificationRequest, list[VerificationOutgoing]]:
        """Ask ``user_id``'s devices (all of them by default) to verify, over to-device.

        This is the way to verify our own devices; other users are better
        verified in a room (:meth:`request_verification_in_room`).

        Raises:
            VerificationError: if there is no device to ask, or a listed device
                is this one or has an id equal to a cross-signing key.
        """
        me = self._identity
        forbidden = me.cross_signing_keys(user_id)
        if devices is None:
            targets = [
                d
                for d in me.user_device_ids(user_id)
                if d not in forbidden and (user_id != me.user_id or d != me.device_id)
            ]
        else:
            targets = list(dict.fromkeys(devices))
            if user_id == me.user_id and me.device_id in targets:
                raise VerificationError("a device cannot verify itself")
            if any(d in forbidden for d in targets):
                raise VerificationError("refusing a device whose id is a cross-signing key")
        if not targets:
            raise VerificationError(f"no device of {user_id} to verify")
        flow_id = new_id()
        request = self._new(user_id, flow_id, ToDeviceTransport(), targets=targets, methods=methods)
        content = {
            "from_device": me.device_id,
            "methods": list(request.our_methods),
            "timestamp": self._clock.now_ms(),
        }
        message = envelope(ToDeviceTransport(), flow_id, content)
        self._requests[(user_id, flow_id)] = request
        return request, [to_device_request(REQUEST, user_id, targets, message)]

    def request_verification_in_room(
        self, room_id: RoomId, user_id: UserId, methods: Sequence[Method] | None = None
    ) -> tuple[VerificationRequest, list[VerificationOutgoing]]:
        """Ask ``user_id`` to verify in ``room_id`` (ideally a direct chat).

        The flow id is the event id of the request: pass it to
        :meth:`room_message_sent` once the server answered.

        Raises:
            VerificationError: for our own user (own devices verify over to-device).
        """
        me = self._identity
        if user_id == me.user_id:
            raise VerificationError("own devices verify over to-device messages")
        request = self._new(user_id, None, RoomTransport(room_id), methods=methods)
        content = {
            "msgtype": REQUEST,
            "body": f"{me.user_id} {_FALLBACK_BODY}",
            "from_device": me.device_id,
            "methods": list(request.our_methods),
            "to": user_id,
        }
        message = room_request(room_id, ROOM_MESSAGE, content)
        self._unsent_room[message.txn_id] = request
        return request, [message]

    def room_message_sent(self, txn_id: str, event_id: EventId) -> None:
        """The server stored our in-room request as ``event_id`` (its flow id)."""
        request = self._unsent_room.pop(txn_id, None)
        if request is not None:
            request.flow_id = event_id
            self._requests[(request.other_user, event_id)] = request

    def _new(
        self,
        user_id: UserId,
        flow_id: str | None,
        transport: ToDeviceTransport | RoomTransport,
        *,
        targets: Sequence[DeviceId] = (),
        methods: Sequence[Method] | None = None,
    ) -> VerificationRequest:
        request = VerificationRequest(
            self._env,
            other_user=user_id,
            flow_id=flow_id,
            transport=transport,
            we_requested=True,
            targets=targets,
        )
        if methods is not None:
            request.our_methods = tuple(m for m in methods if m in self._env.methods)
        return request

    # --- incoming -----------------------------------------------------------------

    def receive_to_device(
        self, event: object, sender_device: DeviceId | None = None
    ) -> list[VerificationOutgoing]:
        """Handle a to-device verification event (decrypted or plain).

        Args:
            event: The event (``type``, ``sender``, ``content``).
            sender_device: The sending device when Olm proved it, else ``None``.
        """
        msg = parse_to_device(event, sender_device)
        if msg is None:
            return []
        out = self.expire()
        if msg.event_type == REQUEST:
            return out + self._on_request(msg)
        request = self._requests.get((msg.sender, msg.flow_id))
        if request is not None:
            return out + request.receive(msg)
        if msg.event_type == START:
            return out + self._on_bare_start(msg)
        if msg.event_type != CANCEL and msg.sender_device is not None:
            content = {"code": CancelCode.UNKNOWN_TRANSACTION, "reason": "unknown transaction"}
            reply = envelope(msg.transport, msg.flow_id, content)
            out.append(to_device_request(CANCEL, msg.sender, [msg.sender_device], reply))
        return out

    def receive_room_event(
        self, room_id: RoomId, event: object, sender_device: DeviceId | None = None
    ) -> list[VerificationOutgoing]:
        """Handle a room event (decrypted, ``m.relates_to`` merged into its content).

        Args:
            room_id: The room it arrived in.
            event: The event (``type``, ``sender``, ``event_id``, ``content``, ...).
            sender_device: The sending device when Megolm proved it, else ``None``.
        """
        msg = parse_room_event(room_id, event, sender_device)
        if msg is None:
            return []
        out = self.expire()
        me = self._identity
        if msg.sender == me.user_id:
            self._own_room_event(msg)
            return out
        if msg.event_type == REQUEST:
            if msg.content.get("to") != me.user_id:
                return out  # someone else's verification in a shared room
            return out + self._on_request(msg)
        request = self._requests.get((msg.sender, msg.flow_id))
        if request is None:
            return out  # rooms carry other people's flows too: never cancel those
        return out + request.receive(msg)

    def _own_room_event(self, msg: Incoming) -> None:
        """Our own room events: echoes of this device, or answers from our others."""
        me = self._identity
        if msg.event_type == REQUEST:
            unsent = self._unsent_room.get(msg.unsigned_txn_id or "")
            if unsent is not None and msg.unsigned_txn_id is not None:
                self.room_message_sent(msg.unsigned_txn_id, EventId(msg.flow_id))
            return
        if msg.sender_device == me.device_id or msg.content.get("from_device") == me.device_id:
            return
        for request in self._requests.values():
            if (
                request.flow_id == msg.flow_id
                and isinstance(request.transport, RoomTransport)
                and not request.we_requested
                and request.state is RequestState.REQUESTED
                and msg.event_type in (READY, START, CANCEL, DONE)
            ):
                code = CancelCode.USER if msg.event_type == CANCEL else CancelCode.ACCEPTED
                request.accepted_elsewhere(code)

    def _on_request(self, msg: Incoming) -> list[VerificationOutgoing]:
        me = self._identity
        content = msg.content
        try:
            from_device = device_id(content.get("from_device"))
        except InvalidInputError:
            return []
        methods = content.get("methods")
        if (
            not isinstance(methods, list)
            or len(methods) > MAX_ITEMS
            or not all(isinstance(m, str) for m in methods)
        ):
            return []
        now = self._clock.now_ms()
        ts = msg.timestamp_ms
        if ts is None or now - ts > MAX_REQUEST_AGE_MS or ts - now > MAX_REQUEST_SKEW_MS:
            return []
        if msg.sender == me.user_id and from_device == me.device_id:
            return []
        key = (msg.sender, msg.flow_id)
        if key in self._requests:
            return []
        if from_device in me.cross_signing_keys(msg.sender):
            reason = "the device id is a cross-signing key"
            return self._refuse(msg, from_device, CancelCode.KEY_MISMATCH, reason)
        request = VerificationRequest(
            self._env,
            other_user=msg.sender,
            flow_id=msg.flow_id,
            transport=msg.transport,
            we_requested=False,
            other_device=from_device,
            their_methods=methods,
            prompt_deadline_ms=min(ts + MAX_REQUEST_AGE_MS, now + PROMPT_TIMEOUT_MS),
        )
        self._requests[key] = request
        return self._one_attempt_per_device(request)

    def _on_bare_start(self, msg: Incoming) -> list[VerificationOutgoing]:
        """A to-device start without a request (deprecated, still to be handled)."""
        content = msg.content
        try:
            from_device = device_id(content.get("from_device"))
        except InvalidInputError:
            return []
        if content.get("method") != Method.SAS or Method.SAS not in self._env.methods:
            reason = "only SAS can start without a request"
            return self._refuse(msg, from_device, CancelCode.UNKNOWN_METHOD, reason)
        if from_device in self._identity.cross_signing_keys(msg.sender):
            reason = "the device id is a cross-signing key"
            return self._refuse(msg, from_device, CancelCode.KEY_MISMATCH, reason)
        now = self._clock.now_ms()
        request = VerificationRequest(
            self._env,
            other_user=msg.sender,
            flow_id=msg.flow_id,
            transport=msg.transport,
            we_requested=False,
            other_device=from_device,
            their_methods=[Method.SAS],
            prompt_deadline_ms=now + PROMPT_TIMEOUT_MS,
        )
        request.set_pending_start(dict(content))
        self._requests[(msg.sender, msg.flow_id)] = request
        return self._one_attempt_per_device(request)

    def _one_attempt_per_device(self, new: VerificationRequest) -> list[VerificationOutgoing]:
        """Spec: a device that starts several attempts gets all of them cancelled."""
        same = [
            r
            for r in self._requests.values()
            if r is not new
            and not r.is_final
            and not r.we_requested
            and r.other_user == new.other_user
            and r.other_device == new.other_device
        ]
        if not same:
            return []
        out: list[VerificationOutgoing] = []
        reason = "several verification attempts from one device"
        for request in [*same, new]:
            out += request.cancel(CancelCode.UNEXPECTED_MESSAGE, reason)
        return out

    def _refuse(
        self, msg: Incoming, device: DeviceId, code: CancelCode, reason: str
    ) -> list[VerificationOutgoing]:
        content = envelope(msg.transport, msg.flow_id, {"code": code.value, "reason": reason})
        if isinstance(msg.transport, RoomTransport):
            return [room_request(msg.transport.room_id, CANCEL, content)]
        return [to_device_request(CANCEL, msg.sender, [device], content)]

    # --- upkeep -------------------------------------------------------------------

    def keys_changed(self, user_ids: Iterable[UserId]) -> list[VerificationOutgoing]:
        """Device or cross-signing keys of these users changed: recheck running flows."""
        users = set(user_ids)
        own_changed = self._identity.user_id in users
        out: list[VerificationOutgoing] = []
        for request in list(self._requests.values()):
            if own_changed or request.other_user in users:
                out += request.recheck_keys()
        return out

    def expire(self) -> list[VerificationOutgoing]:
        """Apply timeouts and forget long-finished requests."""
        now = self._clock.now_ms()
        out: list[VerificationOutgoing] = []
        for key, request in list(self._requests.items()):
            out += request.expire(now)
            if request.finished_ms is not None and now - request.finished_ms >= KEEP_FINISHED_MS:
                del self._requests[key]
        for txn_id, request in list(self._unsent_room.items()):
            request.expire(now)
            if request.is_final:
                del self._unsent_room[txn_id]
        return out
