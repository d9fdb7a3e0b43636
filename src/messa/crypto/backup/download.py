"""Incremental parsing of a ``GET /room_keys/keys`` answer.

A backup of 100k sessions is a JSON document of ~80 MB. Instead of holding
it (and its decoded tree, several times larger) in memory, the answer is fed
in chunks as it arrives and each session entry is emitted as soon as it is
complete, so memory stays flat however large the backup is.

Only the frame ``{"rooms": {ROOM: {"sessions": {SESSION: ENTRY}}}}`` is
walked by hand; each entry (and any member we do not need) is decoded with
the standard JSON decoder in one call. The parser is sans-I/O: it takes
bytes and returns entries.
"""

from __future__ import annotations

import codecs
import json
import re
from typing import Any

from messa.errors import InvalidInputError

DEFAULT_MAX_VALUE = 256 * 1024
"""Largest single entry (or skipped member) accepted; a session entry is ~1 KB."""

_WS = re.compile(r"[ \t\n\r]*")
_AFTER_VALUE = frozenset(" \t\n\r,}]")
_MEMBER = re.compile(r'[ \t\n\r]*"((?:[^"\\\x00-\x1f]|\\.)*)"[ \t\n\r]*:[ \t\n\r]*', re.DOTALL)
_SEPARATOR = re.compile(r"[ \t\n\r]*([,}])")
_STRING = re.compile(r'"(?:[^"\\\x00-\x1f]|\\.)*"', re.DOTALL)

# Frame levels: the answer, "rooms", one room, its "sessions".
_TOP, _ROOMS, _ROOM, _SESSIONS = range(4)
# What the innermost open object expects next.
_KEY_OR_END, _KEY, _COLON, _VALUE, _COMMA_OR_END = range(5)
# The member of a level that opens the next level ("rooms" opens any room id).
_CONTAINER = {_TOP: "rooms", _ROOM: "sessions"}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-JSON number {name}")


class _NeedMore(Exception):
    """The buffer ends before the next token is complete."""


Entry = tuple[str, str, object]


class RoomKeysParser:
    """Push parser of a ``/room_keys/keys`` body (also accepts a one-room body).

    Feed it bytes with :meth:`feed`, which returns the entries completed so
    far as ``(room_id, session_id, key_backup_data)``, then call :meth:`close`.
    Ids and entries are returned as sent; validating them is the restorer's job.

    Args:
        room_id: Set when parsing ``GET /room_keys/keys/{roomId}``, whose
            answer is ``{"sessions": {...}}`` for that one room.
        max_value: Largest entry accepted, in characters.

    Raises:
        InvalidInputError: (from :meth:`feed` and :meth:`close`) if the body
            is not such a JSON document.
    """

    def __init__(self, room_id: str | None = None, *, max_value: int = DEFAULT_MAX_VALUE) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._json = json.JSONDecoder(parse_constant=_reject_constant)
        self._buf = ""
        self._pos = 0
        self._max_value = max_value
        self._fixed_room = room_id
        # Stack of [level, state, pending key]; empty before "{" and after "}".
        self._stack: list[list[Any]] = []
        self._room: str | None = room_id
        self._started = False
        self._done = False
        self._eof = False

    def feed(self, data: bytes) -> list[Entry]:
        """Add bytes of the body; return the entries completed by them."""
        try:
            self._buf = self._buf[self._pos :] + self._decoder.decode(data)
        except UnicodeDecodeError:
            raise InvalidInputError("backup answer is not UTF-8") from None
        self._pos = 0
        return self._run()

    def close(self) -> list[Entry]:
        """Signal the end of the body; return the last entries.

        Raises:
            InvalidInputError: if the document is incomplete or has trailing data.
        """
        try:
            self._buf = self._buf[self._pos :] + self._decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise InvalidInputError("backup answer is not UTF-8") from None
        self._pos = 0
        self._eof = True
        out = self._run()
        if not self._done:
            raise InvalidInputError("backup answer ended early")
        return out

    # --- the frame walker ------------------------------------------------------

    def _run(self) -> list[Entry]:
        out: list[Entry] = []
        try:
            while self._step(out):
                pass
        except _NeedMore:
            if self._eof:
                raise InvalidInputError("backup answer ended early") from None
        return out

    def _skip_ws(self) -> None:
        match = _WS.match(self._buf, self._pos)
        assert match is not None  # the pattern matches the empty string
        self._pos = match.end()

    def _peek(self) -> str:
        self._skip_ws()
        if self._pos >= len(self._buf):
            raise _NeedMore
        return self._buf[self._pos]

    def _step(self, out: list[Entry]) -> bool:
        if self._done:
            self._skip_ws()
            if self._pos < len(self._buf):
                raise InvalidInputError("backup answer has data after the document")
            return False
        if not self._started:
            self._expect_object()
            self._started = True
            self._stack.append([_ROOM if self._fixed_room else _TOP, _KEY_OR_END, None])
            return True
        frame = self._stack[-1]
        level, state = frame[0], frame[1]
        if level == _SESSIONS and state in (_KEY_OR_END, _KEY) and self._entries(frame, out):
            return True
        if state == _KEY:
            frame[2] = self._string()
            frame[1] = _COLON
            return True
        if state in (_KEY_OR_END, _COMMA_OR_END):
            char = self._peek()
            if char == "}":
                self._pos += 1
                self._stack.pop()
                if not self._stack:
                    self._done = True
                else:
                    self._stack[-1][1] = _COMMA_OR_END
                return True
            if state == _COMMA_OR_END:
                if char != ",":
                    raise InvalidInputError("backup answer: expected ',' or '}'")
                self._pos += 1
                frame[1] = _KEY
                return True
            frame[2] = self._string()
            frame[1] = _COLON
            return True
        if state == _COLON:
            if self._peek() != ":":
                raise InvalidInputError("backup answer: expected ':'")
            self._pos += 1
            frame[1] = _VALUE
            return True
        self._value(frame, level, frame[2], out)
        return True

    def _entries(self, frame: list[Any], out: list[Entry]) -> bool:
        """Fast path: take every complete ``"id": {...},`` of a sessions object in a row.

        Stops (returning whether it took any) at anything else: the end of
        the object, an incomplete or odd member; the general walker then
        handles it, with the same result.
        """
        buf, pos, size, room = self._buf, self._pos, len(self._buf), self._room
        taken = False
        while room is not None:
            member = _MEMBER.match(buf, pos)
            if member is None or member.end() >= size:
                break
            key = member.group(1)
            try:
                if "\\" in key:
                    key = self._json.decode(f'"{key}"')
                value, end = self._json.raw_decode(buf, member.end())
            except (ValueError, RecursionError):
                break
            after = _SEPARATOR.match(buf, end)
            if after is None or end - member.end() > self._max_value:
                break
            out.append((room, key, value))
            taken = True
            if after.group(1) == "}":
                pos, frame[1] = after.start(1), _COMMA_OR_END
                break
            pos, frame[1] = after.end(), _KEY
        self._pos = pos
        return taken

    def _value(self, frame: list[Any], level: int, key: str, out: list[Entry]) -> None:
        if (level == _ROOMS or key == _CONTAINER.get(level)) and self._peek() == "{":
            self._pos += 1
            frame[1] = _COMMA_OR_END
            if level == _ROOMS:
                self._room = key
            self._stack.append([level + 1, _KEY_OR_END, None])
            return
        value = self._decode_value()
        frame[1] = _COMMA_OR_END
        # Anything else (unknown members, a room that is not an object) is
        # skipped: one bad part of the answer must not cost the rest.
        if level == _SESSIONS and self._room is not None:
            out.append((self._room, key, value))

    def _expect_object(self) -> None:
        if self._peek() != "{":
            raise InvalidInputError("backup answer is not a JSON object")
        self._pos += 1

    def _string(self) -> str:
        if self._peek() != '"':
            raise InvalidInputError("backup answer: expected a string key")
        match = _STRING.match(self._buf, self._pos)
        if match is None:
            self._need_or_fail("expected a string key")
        assert match is not None
        if match.end() >= len(self._buf) and not self._eof:
            raise _NeedMore  # a key is followed by ':'; wait for it
        try:
            key = json.loads(match.group())
        except ValueError:
            raise InvalidInputError("backup answer has an invalid string") from None
        self._pos = match.end()
        return str(key)

    def _decode_value(self) -> object:
        self._peek()
        start = self._pos
        try:
            value, end = self._json.raw_decode(self._buf, start)
        except (ValueError, RecursionError):
            self._need_or_fail("invalid value")
            raise  # pragma: no cover - _need_or_fail always raises
        # A value is followed by whitespace, ',' or '}'. Anything else means
        # a number cut short by the chunk boundary ("0" of "0.5") or garbage.
        if end >= len(self._buf) or self._buf[end] not in _AFTER_VALUE:
            self._need_or_fail("invalid value")
        if end - start > self._max_value:
            raise InvalidInputError("backup answer has an entry that is too large")
        self._pos = end
        return value

    def _need_or_fail(self, what: str) -> None:
        if not self._eof and len(self._buf) - self._pos <= self._max_value:
            raise _NeedMore
        raise InvalidInputError(f"backup answer: {what}")
