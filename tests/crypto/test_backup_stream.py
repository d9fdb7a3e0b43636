"""The incremental parser of ``GET /room_keys/keys`` answers (untrusted server input)."""

from __future__ import annotations

import contextlib
import json
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from messa.crypto.backup import RoomKeysParser
from messa.errors import InvalidInputError

ENTRY = {
    "first_message_index": 0,
    "forwarded_count": 0,
    "is_verified": False,
    "session_data": {"ephemeral": "e" * 43, "ciphertext": "c" * 600, "mac": "m" * 11},
}


def parse(body: bytes, sizes: Iterator[int] | None = None, room: str | None = None) -> list:
    parser = RoomKeysParser(room)
    out = []
    i = 0
    while i < len(body):
        n = next(sizes) if sizes is not None else len(body)
        out += parser.feed(body[i : i + max(1, n)])
        i += max(1, n)
    return out + parser.close()


def expected(doc: dict[str, Any]) -> list:
    return [
        (room, sid, data)
        for room, value in doc["rooms"].items()
        if isinstance(value, dict) and isinstance(value.get("sessions"), dict)
        for sid, data in value["sessions"].items()
    ]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
sessions = st.dictionaries(st.text(min_size=1), json_values, max_size=4)
rooms = st.dictionaries(
    st.text(min_size=1),
    st.one_of(
        st.fixed_dictionaries({"sessions": sessions}),
        st.fixed_dictionaries({"sessions": sessions}, optional={"other": json_values}),
        json_values,  # a room that is not an object is skipped
    ),
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(
    doc=st.fixed_dictionaries({"rooms": rooms}, optional={"etag": json_values}),
    sizes=st.lists(st.integers(1, 40), min_size=1),
    indent=st.sampled_from([None, 0, 2]),
    ascii_only=st.booleans(),
)
def test_any_split_of_a_valid_answer_gives_every_entry(
    doc: dict[str, Any], sizes: list[int], indent: int | None, ascii_only: bool
) -> None:
    body = json.dumps(doc, indent=indent, ensure_ascii=ascii_only).encode()
    cycle = (sizes[i % len(sizes)] for i in range(10**9))
    assert parse(body, cycle) == expected(doc)


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=300), size=st.integers(1, 50))
def test_garbage_raises_only_invalid_input(body: bytes, size: int) -> None:
    with contextlib.suppress(InvalidInputError):
        parse(body, iter(lambda: size, None))


@settings(max_examples=200, deadline=None)
@given(doc=st.fixed_dictionaries({"rooms": rooms}), cut=st.integers(0, 10**6))
def test_truncated_answer_is_refused(doc: dict[str, Any], cut: int) -> None:
    body = json.dumps(doc).encode()
    cut = cut % len(body)
    with pytest.raises(InvalidInputError):
        parse(body[:cut])


def test_one_room_answer() -> None:
    body = json.dumps({"sessions": {"a": ENTRY, "b": 1}}).encode()
    assert parse(body, iter(lambda: 7, None), room="!r:x") == [
        ("!r:x", "a", ENTRY),
        ("!r:x", "b", 1),
    ]


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b'{"rooms": {}} x',
        b'{"rooms": {}}{}',
        b'{"rooms": {"!a:x": {"sessions": {"s": 1,}}}}',
        b'{"rooms": {"!a:x": {"sessions": {"s" 1}}}}',
        b'{"rooms": {"!a:x": {"sessions": {5: 1}}}}',
        b'{"rooms": {"!a:x": {"sessions": {"s": NaN}}}}',
        b'{"rooms": {"!a:x": {"sessions": {"s": [' + b"[" * 100_000 + b"}}}}",
        b'{"rooms": {"\xff": {}}}',
    ],
)
def test_malformed_answers(body: bytes) -> None:
    with pytest.raises(InvalidInputError):
        parse(body)
    with pytest.raises(InvalidInputError):
        parse(body, iter(lambda: 3, None))


def test_unicode_split_across_chunks() -> None:
    doc = {"rooms": {"!é:x": {"sessions": {"sé€𝄞": {"k": "€"}}}}}
    body = json.dumps(doc, ensure_ascii=False).encode()
    assert parse(body, iter(lambda: 1, None)) == [("!é:x", "sé€𝄞", {"k": "€"})]


def test_an_oversized_entry_is_refused_without_buffering_everything() -> None:
    parser = RoomKeysParser(max_value=1000)
    parser.feed(b'{"rooms": {"!a:x": {"sessions": {"s": "')
    with pytest.raises(InvalidInputError):
        for _ in range(100):
            parser.feed(b"x" * 100)
    complete = json.dumps({"rooms": {"!a:x": {"sessions": {"s": "y" * 5000}}}}).encode()
    with pytest.raises(InvalidInputError):
        RoomKeysParser(max_value=1000).feed(complete)


def test_memory_stays_flat_for_a_large_answer() -> None:
    """A 20k-entry answer (~16 MB) is parsed in 64 KB chunks with a small peak."""
    count = 20_000
    entry = json.dumps(ENTRY).encode()
    head, tail = b'{"rooms": {"!big:x": {"sessions": {', b"}}}}"

    def chunks() -> Iterator[bytes]:
        buf = bytearray(head)
        for i in range(count):
            buf += b'"s%d": %s%s' % (i, entry, b"," if i < count - 1 else b"")
            if len(buf) >= 65536:
                yield bytes(buf)
                buf.clear()
        yield bytes(buf + tail)

    parser = RoomKeysParser()
    seen = 0
    tracemalloc.start()
    try:
        for chunk in chunks():
            seen += len(parser.feed(chunk))  # entries dropped at once, as a restore does
        seen += len(parser.close())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == count
    assert peak < 2 * 1024 * 1024, peak  # the whole body is ~16 MB


@pytest.mark.parametrize(
    "body",
    [
        b'{"rooms": {"!a:x": {"sessions": {"bad\\x": 1}}}}',
        b'{"rooms": {"!a:x": {"sessions": {"a": 1, "bad\\x": 1}}}}',
        b'{"rooms": {"!a:x": {"sessions": {"ctl\x01": 1}}}}',
        b'{"rooms": {"!a:x": {"sessions": {"a": 1 "b": 2}}}}',
        b'{"rooms": {"!a:x": {"sessions": {"a": 0.}}}}',
    ],
)
def test_malformed_members_in_a_run_of_entries(body: bytes) -> None:
    with pytest.raises(InvalidInputError):
        parse(body)


def test_escaped_ids_in_a_run_of_entries() -> None:
    doc = {"rooms": {"!a:x": {"sessions": {'q"uote': 1, "back\\slash": 2, "tab\t": 3}}}}
    body = json.dumps(doc).encode()
    assert parse(body) == [("!a:x", 'q"uote', 1), ("!a:x", "back\\slash", 2), ("!a:x", "tab\t", 3)]
