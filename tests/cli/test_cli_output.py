"""Rendering: JSON lines, error lines, event records, hostile text."""

from __future__ import annotations

import io
import json

from rich.console import Console

from messa.cli.exitcodes import ExitCode
from messa.cli.output import Output, event_json, safe
from messa.types.events import EncryptionInfo, TimelineEvent, UnableToDecrypt, UtdReason
from messa.types.ids import Curve25519Key, DeviceId, Ed25519Key, EventId, RoomId, UserId
from messa.types.keys import TrustState

ROOM = RoomId("!room:example.org")
ALICE = UserId("@alice:example.org")


def _info(trust: TrustState, authenticated: bool = True) -> EncryptionInfo:
    return EncryptionInfo(
        sender=ALICE,
        sender_curve25519=Curve25519Key("c" * 43),
        sender_ed25519=Ed25519Key("e" * 43),
        sender_device_id=DeviceId("DEV"),
        session_id="s" * 43,
        authenticated=authenticated,
        trust=trust,
    )


def _event(body: str | None = "hello", **kw: object) -> TimelineEvent:
    fields: dict[str, object] = {
        "room_id": ROOM,
        "event_id": EventId("$e1"),
        "sender": ALICE,
        "ts": 1_700_000_000_000,
        "event_type": "m.room.message",
        "content": {"msgtype": "m.text", "body": body} if body is not None else {},
        "encrypted": True,
        "info": _info(TrustState.UNVERIFIED),
    }
    fields.update(kw)
    return TimelineEvent(**fields)  # type: ignore[arg-type]


def _output(json_mode: bool) -> tuple[Output, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return Output(json_mode, stdout=out, stderr=err), out, err


def test_event_json_has_exactly_the_promised_keys() -> None:
    doc = event_json(_event())
    assert doc == {
        "room_id": ROOM,
        "event_id": "$e1",
        "sender": ALICE,
        "body": "hello",
        "encrypted": True,
        "verified": False,
        "ts": 1_700_000_000_000,
    }


def test_verified_needs_trust_and_an_authenticated_session() -> None:
    assert event_json(_event(info=_info(TrustState.CROSS_SIGNED)))["verified"] is True
    assert event_json(_event(info=_info(TrustState.VERIFIED, False)))["verified"] is False


def test_undecryptable_events_carry_the_reason() -> None:
    utd = UnableToDecrypt(UtdReason.MISSING_SESSION, session_id="s")
    doc = event_json(_event(None, event_type="m.room.encrypted", info=None, utd=utd))
    assert doc["utd"] == "missing_session"
    assert doc["body"] is None
    assert set(doc) == {
        "room_id",
        "event_id",
        "sender",
        "body",
        "encrypted",
        "verified",
        "ts",
        "utd",
    }


def test_json_mode_prints_one_ascii_line_per_object() -> None:
    output, out, err = _output(True)
    output.json({"body": "héllo\x1b[2J\u009b"})
    output.json({"n": 2})
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].isascii() and "\x1b" not in lines[0]
    assert json.loads(lines[0]) == {"body": "héllo\x1b[2J\u009b"}
    assert err.getvalue() == ""


def test_result_prints_data_or_the_human_text() -> None:
    output, out, _ = _output(True)
    output.result({"room_id": "!r:x"}, "!r:x")
    assert json.loads(out.getvalue()) == {"room_id": "!r:x"}
    output, out, _ = _output(False)
    output.result({"room_id": "!r:x"}, "!r:x")
    assert out.getvalue() == "!r:x\n"


def test_errors_are_one_line_in_both_modes() -> None:
    output, out, err = _output(False)
    output.error(ExitCode.UNKNOWN_ROOM, "not found: !x:y\nsecond line")
    assert err.getvalue() == "messa: error: not found: !x:y\n"
    assert out.getvalue() == ""
    output, out, err = _output(True)
    output.error(ExitCode.UNKNOWN_ROOM, "not found: !x:y")
    assert json.loads(err.getvalue()) == {
        "error": {"code": 8, "name": "unknown_room", "message": "not found: !x:y"}
    }


def test_notes_are_for_people_only() -> None:
    output, out, err = _output(True)
    output.note("offline")
    assert out.getvalue() == err.getvalue() == ""
    output, out, err = _output(False)
    output.note("offline")
    assert "offline" in err.getvalue() and out.getvalue() == ""


def test_status_spinner_is_silent_off_a_terminal() -> None:
    output, out, err = _output(False)
    with output.status("working"):
        pass
    assert out.getvalue() == err.getvalue() == ""


def test_hostile_message_text_cannot_drive_the_terminal_or_rich() -> None:
    body = "[bold red]fake[/bold red] \x1b]0;title\x07 \x1b[2J\u202eevil"
    line = Output.event_text(_event(body))
    plain = line.plain
    assert "[bold red]fake[/bold red]" in plain  # shown literally, not interpreted
    assert "\x1b" not in plain and "\x07" not in plain and "\u202e" not in plain
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(line)
    assert "[bold red]fake" in console.file.getvalue()  # type: ignore[attr-defined]


def test_event_text_marks_encryption_and_utds() -> None:
    assert "🔒" in Output.event_text(_event()).plain
    assert "🔒✓" in Output.event_text(_event(info=_info(TrustState.VERIFIED))).plain
    clear = Output.event_text(_event(encrypted=False, info=None)).plain
    assert "[not encrypted]" in clear
    utd = UnableToDecrypt(UtdReason.WITHHELD)
    assert "unable to decrypt: withheld" in Output.event_text(_event(None, utd=utd)).plain


def test_safe_escapes_markup_and_controls() -> None:
    assert safe("[b]x[/b]") == "\\[b]x\\[/b]"
    assert "\x1b" not in safe("a\x1b[31mb")
    assert safe(None) == ""
