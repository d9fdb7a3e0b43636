"""User-interactive authentication (UIA): reading a 401 challenge, answering it.

Endpoints that need UIA raise :class:`~messa.errors.AuthRequiredError`; the
caller reads the challenge here, builds an ``auth`` dict and repeats the call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from messa.errors import AuthRequiredError, InvalidInputError

__all__ = ["UiaChallenge", "password_auth"]

PASSWORD_STAGE = "m.login.password"  # noqa: S105 - a stage name, not a secret


@dataclass(frozen=True, slots=True)
class UiaChallenge:
    """What the server asks for before it performs a protected request.

    Attributes:
        session: Session id to echo in the next ``auth`` dict, if any.
        flows: Accepted sequences of stages, e.g. ``[("m.login.password",)]``.
        completed: Stages already done in this session.
        params: Per-stage parameters (raw, untrusted).
    """

    session: str | None
    flows: tuple[tuple[str, ...], ...]
    completed: tuple[str, ...]
    params: dict[str, Any]

    @classmethod
    def from_error(cls, error: AuthRequiredError) -> UiaChallenge:
        """Read the challenge carried by an :class:`~messa.errors.AuthRequiredError`.

        Raises:
            InvalidInputError: if the body lists no usable flow.
        """
        body = error.body
        flows: list[tuple[str, ...]] = []
        for flow in body.get("flows") or []:
            stages = flow.get("stages") if isinstance(flow, dict) else None
            if isinstance(stages, list) and all(isinstance(s, str) for s in stages):
                flows.append(tuple(stages))
        if not flows:
            raise InvalidInputError("UIA challenge lists no valid flow")
        session = body.get("session")
        completed = body.get("completed")
        params = body.get("params")
        return cls(
            session=session if isinstance(session, str) and session else None,
            flows=tuple(flows),
            completed=tuple(s for s in completed if isinstance(s, str))
            if isinstance(completed, list)
            else (),
            params=params if isinstance(params, dict) else {},
        )

    def offers(self, stage: str) -> bool:
        """Return whether a single-stage flow of ``stage`` is accepted."""
        return (stage,) in self.flows


def password_auth(user: str, password: str, session: str | None) -> dict[str, Any]:
    """Build the ``auth`` dict for an ``m.login.password`` stage."""
    auth: dict[str, Any] = {
        "type": PASSWORD_STAGE,
        "identifier": {"type": "m.id.user", "user": user},
        "password": password,
    }
    if session is not None:
        auth["session"] = session
    return auth
